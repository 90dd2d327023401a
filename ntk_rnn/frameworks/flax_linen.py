"""(being written)"""


def from_flax(*args, **kwargs):
    raise NotImplementedError
