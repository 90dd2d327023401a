"""Dotted names as the documentation writes them (ntk_rnn.kernels.limit.limit_ntk), resolved to objects."""

from __future__ import annotations

import importlib
from types import ModuleType


def resolve(dotted: str):
    """The object a dotted name names: the longest importable module prefix, then attributes; None if none."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name, None)
            if obj is None:
                return None
        return obj
    return None


def module_of(dotted: str) -> str | None:
    """The module a dotted name is, or the module that defines the object it names; None if it names nothing."""
    obj = resolve(dotted)
    if obj is None:
        return None
    return obj.__name__ if isinstance(obj, ModuleType) else getattr(obj, "__module__", None)
