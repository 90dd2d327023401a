"""Sequence data: the container of inputs and per-step targets, random splits, and .npz files."""

from __future__ import annotations

import dataclasses
import numbers
import os

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.network.checks import check_float_array, check_lengths, numpy_rng
from ntk_rnn.storage import atomic_write


class SequenceShape:
    """The sizes of a container of right-padded sequences whose `x` is (n, L, d_x)."""

    x: np.ndarray | jax.Array

    @property
    def n(self) -> int:
        """Number of sequences."""
        return self.x.shape[0]

    @property
    def length(self) -> int:
        """The padded sequence length L."""
        return self.x.shape[1]

    @property
    def input_dim(self) -> int:
        """Token dimension d_x."""
        return self.x.shape[2]


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceData(SequenceShape):
    """x: (n, L, d_x) float64 tokens; y: (n, L, d) float64 targets at every step; name: str; lengths: (n,)
    int32 lengths of right-padded sequences, ints in [1, L], or None when every sequence has length L.

    Compared by identity (the fields are arrays); compare ``x`` and ``y`` explicitly.
    """

    x: jax.Array
    y: jax.Array
    name: str = "data"
    lengths: jax.Array | None = None

    def __post_init__(self) -> None:
        x = check_float_array(self.x, "SequenceData.x", "(n, L, d_x)")
        if x.ndim != 3 or min(x.shape) < 1:
            raise ValueError(f"SequenceData.x must have shape (n, L, d_x) with every size >= 1, got shape {x.shape}")
        n, length = x.shape[:2]
        expected_y = f"(n, L, d) = ({n}, {length}, d)"
        y = check_float_array(self.y, "SequenceData.y", expected_y)
        if y.ndim != 3 or y.shape[:2] != (n, length) or y.shape[2] < 1:
            raise ValueError(f"SequenceData.y must have shape {expected_y} with d >= 1, got shape {y.shape}")
        if not isinstance(self.name, str):
            raise ValueError(f"SequenceData.name must be a str, got {self.name!r}")
        object.__setattr__(self, "lengths", check_lengths(self.lengths, x, "SequenceData.lengths"))
        object.__setattr__(self, "x", jnp.asarray(x, dtype=jnp.float64))
        object.__setattr__(self, "y", jnp.asarray(y, dtype=jnp.float64))

    @property
    def output_dim(self) -> int:
        """Target dimension d."""
        return self.y.shape[2]

    def take(self, idx) -> SequenceData:
        """The samples at idx: a non-empty 1-D integer index array in [0, n), or a boolean mask of shape (n,)."""
        arr = np.asarray(idx)
        if arr.ndim != 1:
            raise ValueError(f"idx must be a 1-D index array or a boolean mask of shape ({self.n},), got {arr.shape}")
        if arr.dtype == bool:
            if arr.shape != (self.n,):
                raise ValueError(f"boolean idx must have shape ({self.n},), got {arr.shape}")
            arr = np.flatnonzero(arr)
        elif arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"idx must hold integers in [0, {self.n}), got dtype {arr.dtype}")
        if arr.size == 0:
            raise ValueError("idx must select at least one sample")
        if arr.min() < 0 or arr.max() >= self.n:
            raise ValueError(f"idx must lie in [0, n) = [0, {self.n}), got values in [{arr.min()}, {arr.max()}]")
        lengths = None if self.lengths is None else self.lengths[arr]
        return SequenceData(self.x[arr], self.y[arr], self.name, lengths)

    def __repr__(self) -> str:
        return (
            f"SequenceData(name={self.name!r}, n={self.n}, length={self.length}, "
            f"input_dim={self.input_dim}, output_dim={self.output_dim}, "
            f"lengths={'all L' if self.lengths is None else 'variable'})"
        )


# --------------------------------------------------------------------------- splitting and files


def train_test_split(data: SequenceData, n_test: int, *, key: jax.Array) -> tuple[SequenceData, SequenceData]:
    """A random disjoint split (train, test) with n - n_test and n_test samples, each kept in dataset order."""
    if not isinstance(data, SequenceData):
        raise TypeError(f"data must be a SequenceData, got {type(data).__name__}")
    if isinstance(n_test, bool) or not isinstance(n_test, numbers.Integral) or not 1 <= n_test <= data.n - 1:
        raise ValueError(f"n_test must be an int in [1, n - 1] = [1, {data.n - 1}], got {n_test!r}")
    perm = numpy_rng(key).permutation(data.n)
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return data.take(train_idx), data.take(test_idx)


def load_npz(path: str | os.PathLike, name: str | None = None) -> SequenceData:
    """Read a SequenceData from an .npz with arrays "x" (n, L, d_x), "y" (n, L, d) and optionally "lengths" (n,).

    name: None for the name stored by save_npz, else the file's stem.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path!r} is not a readable .npz file: {e}") from e
    if "x" not in arrays:
        raise ValueError(f"{path!r} has no array 'x'; expected x of shape (n, L, d_x) and y of shape (n, L, d)")
    x = arrays["x"]
    if "y" not in arrays:
        n_l = f"({x.shape[0]}, {x.shape[1]}, d)" if x.ndim == 3 else "(n, L, d)"
        raise ValueError(f"{path!r} has no array 'y'; expected targets y of shape {n_l} next to x {x.shape}")
    if name is None:
        stored = arrays.get("name")
        is_str = stored is not None and stored.ndim == 0 and stored.dtype.kind == "U"
        name = str(stored) if is_str else os.path.splitext(os.path.basename(path))[0]
    try:
        return SequenceData(x, arrays["y"], name, arrays.get("lengths"))
    except ValueError as e:
        raise ValueError(f"{path!r}: {e}") from e


def save_npz(path: str | os.PathLike, data: SequenceData) -> None:
    """Write data to path exactly (no suffix added) as arrays x, y, name (and lengths); atomically
    (ntk_rnn.storage.atomic_write)."""
    if not isinstance(data, SequenceData):
        raise TypeError(f"data must be a SequenceData, got {type(data).__name__}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"directory of {path!r} does not exist")
    arrays = {"x": np.asarray(data.x), "y": np.asarray(data.y), "name": np.asarray(data.name)}
    if data.lengths is not None:
        arrays["lengths"] = np.asarray(data.lengths)
    atomic_write(path, lambda handle: np.savez(handle, **arrays), binary=True)
