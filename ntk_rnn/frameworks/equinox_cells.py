"""(being written)"""


def from_equinox(*args, **kwargs):
    raise NotImplementedError
