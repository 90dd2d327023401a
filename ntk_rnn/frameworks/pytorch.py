"""(being written)"""


def from_torch(*args, **kwargs):
    raise NotImplementedError


def to_torch(*args, **kwargs):
    raise NotImplementedError
