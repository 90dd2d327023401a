"""Validation at the library's boundary: what users pass in, checked once, with errors that name the
argument and the expected form. The pure functions (ntk_rnn.network.model.apply and those built on it) check only
structure, which JAX knows while tracing; these checks also look at values (finite, numeric).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.network.config import RNNConfig

Params = dict[str, jax.Array]


def check_structure(cfg: RNNConfig, params: Mapping[str, jax.Array], x=None, name: str = "x") -> None:
    """Keys and shapes of params, and the shape of x (n, L, d_x) when given. Works on tracers (it reads
    only shapes), so jitted, vmapped and differentiated code can call it."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict with keys {cfg.param_names}, got {type(params).__name__}")
    names = cfg.param_names
    missing = [k for k in names if k not in params]
    extra = [k for k in params if k not in names]
    if missing or extra:
        raise ValueError(f"params must have exactly the keys {names}; missing {missing}, unexpected {extra}")
    for key, shape in cfg.param_shapes.items():
        if np.shape(params[key]) != shape:
            raise ValueError(f"params[{key!r}] must have shape {shape} for {cfg}, got {np.shape(params[key])}")
    if x is not None:
        check_input_shape(cfg, np.shape(x), name)


def check_input_shape(cfg: RNNConfig, shape: tuple[int, ...], name: str = "x") -> None:
    """x must have shape (n, L, d_x) with n, L >= 1 and d_x = cfg.input_dim."""
    if len(shape) != 3:
        raise ValueError(f"{name} must have shape (n, L, d_x) = (n, L, {cfg.input_dim}), got shape {shape}")
    if shape[2] != cfg.input_dim:
        raise ValueError(
            f"{name} has token dimension {shape[2]} but the config's input_dim is {cfg.input_dim}; "
            f"expected shape (n, L, {cfg.input_dim})"
        )
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{name} must hold at least one sequence of length >= 1, got shape {shape}")


def check_params(cfg: RNNConfig, params: Mapping[str, jax.Array]) -> Params:
    """A user's parameter dict checked against cfg (keys, shapes, finite) and returned as float64 jax arrays."""
    check_structure(cfg, params)
    out = {key: jnp.asarray(params[key], dtype=jnp.float64) for key in cfg.param_names}
    finite = _all_finite(out)  # one program per shape set, on the device; only the flags come back
    for key in cfg.param_names:
        if not bool(finite[key]):
            raise ValueError(f"params[{key!r}] contains NaN or inf")
    return out


@jax.jit
def _all_finite(params: Params) -> dict[str, jax.Array]:
    """{name: whether the array is finite}."""
    return {key: jnp.all(jnp.isfinite(value)) for key, value in params.items()}


def check_inputs(cfg: RNNConfig, x, name: str = "x") -> jax.Array:
    """A batch of sequences checked (shape (n, L, d_x), numeric, finite) and returned as a float64 jax array."""
    arr = np.asarray(x)
    check_input_shape(cfg, arr.shape, name)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return jnp.asarray(arr, dtype=jnp.float64)


def check_targets(cfg: RNNConfig, x: jax.Array, y, name: str = "y") -> jax.Array:
    """Per-step targets y (n, L, d) matching the inputs x (n, L, d_x) and cfg.output_dim, as float64."""
    arr = jnp.asarray(y, dtype=jnp.float64)
    expected = (*x.shape[:2], cfg.output_dim)
    if arr.shape != expected:
        raise ValueError(f"{name} must have shape (n, L, d) = {expected} to match the inputs and the config, "
                         f"got {arr.shape}")  # fmt: skip
    return arr


def check_positions(positions: Sequence[int] | None, length: int, name: str = "positions") -> tuple[int, ...]:
    """Output positions (0-based) for sequences of length L; None means the paper's loss positions
    l = 2..L, i.e. (1, ..., L-1) 0-based."""
    if positions is None:
        if length < 2:
            raise ValueError(f"{name}=None means positions 1..L-1, which is empty for L={length}; pass positions")
        return tuple(range(1, length))
    if isinstance(positions, (int, np.integer)):
        positions = (int(positions),)
    out = []
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
            raise ValueError(f"{name} must be a sequence of ints in [0, {length}), got element {p!r}")
        p = int(p)
        if not 0 <= p < length:
            raise ValueError(f"{name} must lie in [0, L) = [0, {length}), got {p}")
        out.append(p)
    if not out:
        raise ValueError(f"{name} must not be empty")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a position, got {tuple(out)}")
    return tuple(out)


def loss_positions(cfg: RNNConfig, positions: Sequence[int] | None, length: int, name: str) -> tuple[int, ...] | None:
    """The output positions a loss or kernel uses: resolved positions for readout "all", and None for
    "last" and "mean", which have one output per sequence (positions must then be None)."""
    if cfg.readout == "all":
        return check_positions(positions, length, name)
    if positions is not None:
        raise ValueError(f"{name} does not apply to readout={cfg.readout!r} (one output per sequence)")
    return None


def check_lengths(lengths, x: jax.Array, name: str = "lengths") -> jax.Array | None:
    """Sequence lengths (n,) for right-padded x (n, L, d_x): ints in [1, L], as an int32 jax array; None stays
    None (every sequence has length L)."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    n, length = x.shape[:2]
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape (n,) = ({n},), one length per sequence, got shape {arr.shape}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must hold integers in [1, L] = [1, {length}], got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} must hold integers in [1, L] = [1, {length}], got {arr[arr != np.round(arr)][:3]}")
    bad = (arr < 1) | (arr > length)
    if bad.any():
        raise ValueError(f"{name} must lie in [1, L] = [1, {length}], got {arr[bad][:3].astype(int).tolist()} "
                         f"at sequences {np.flatnonzero(bad)[:3].tolist()}")  # fmt: skip
    return jnp.asarray(arr.astype(np.int32))


class InputPair(NamedTuple):
    """Validated kernel inputs: x1 (n1, L1, d_x), x2 (x1 itself when symmetric), their output positions,
    and their lengths ((n,) int32, or None for full-length sequences)."""

    x1: jax.Array
    x2: jax.Array
    pos1: tuple[int, ...] | None
    pos2: tuple[int, ...] | None
    symmetric: bool
    lengths1: jax.Array | None = None
    lengths2: jax.Array | None = None

    def block(self, rows: slice, cols: slice | None = None) -> InputPair:
        """The inputs of the kernel block of samples `rows` of x1 against samples `cols` of x2 (None: all);
        symmetric when the pair is and rows == cols."""

        def cut(x, lengths, part):
            return (x, lengths) if part is None else (x[part], None if lengths is None else lengths[part])

        x1, lengths1 = cut(self.x1, self.lengths1, rows)
        x2, lengths2 = cut(self.x2, self.lengths2, cols)
        symmetric = self.symmetric and rows == cols
        return self._replace(x1=x1, x2=x1 if symmetric else x2, lengths1=lengths1, lengths2=lengths2,
                             symmetric=symmetric)  # fmt: skip


def check_pair(cfg: RNNConfig, x1, x2=None, positions: Sequence[int] | None = None, lengths1=None,
               lengths2=None) -> InputPair:  # fmt: skip
    """The inputs of a kernel K(x1, x2): x2 None means x2 = x1 (symmetric, and lengths2 must be None);
    positions apply to both sides."""
    x1 = check_inputs(cfg, x1, "x1")
    symmetric = x2 is None
    if symmetric and lengths2 is not None:
        raise ValueError("lengths2 needs x2; with x2=None the kernel is K(x1, x1) and lengths1 applies to both")
    x2 = x1 if symmetric else check_inputs(cfg, x2, "x2")
    lengths1 = check_lengths(lengths1, x1, "lengths1")
    lengths2 = lengths1 if symmetric else check_lengths(lengths2, x2, "lengths2")
    pos1 = loss_positions(cfg, positions, x1.shape[1], "positions")
    pos2 = pos1 if symmetric else loss_positions(cfg, positions, x2.shape[1], "positions")
    return InputPair(x1, x2, pos1, pos2, symmetric, lengths1, lengths2)


class NTKInputs(NamedTuple):
    """The inputs of one NTK K(x, x), validated: params (float64 jax arrays), x (n, L, d_x) float64, the
    resolved output positions (None for a per-sequence readout) and lengths ((n,) int32, or None)."""

    params: Params
    x: jax.Array
    positions: tuple[int, ...] | None
    lengths: jax.Array | None


def check_ntk_inputs(cfg: RNNConfig, params: Mapping[str, jax.Array], x, positions: Sequence[int] | None = None,
                     lengths=None) -> NTKInputs:  # fmt: skip
    """params, x, positions and lengths of K(x, x) checked once (check_params, check_inputs, check_lengths,
    loss_positions)."""
    x = check_inputs(cfg, x, "x")
    return NTKInputs(check_params(cfg, params), x, loss_positions(cfg, positions, x.shape[1], "positions"),
                     check_lengths(lengths, x, "lengths"))  # fmt: skip


def check_key(key, name: str = "key") -> jax.Array:
    """A single typed JAX PRNG key, as jax.random.key(seed) makes."""
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()):
        raise ValueError(f"{name} must be a single jax.random.key (a typed PRNG key, e.g. jax.random.key(0)), "
                         f"got {key!r}")  # fmt: skip
    return key


def check_int(value, name: str, minimum: int = 1) -> int:
    """value as an int >= minimum (bool refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_float_array(value, name: str, expected: str) -> np.ndarray:
    """value as a finite float64 numpy array; errors name `name` and the expected shape `expected`."""
    try:
        arr = np.asarray(value)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"{name} must be a numeric array of shape {expected}: {e}") from e
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must be a real numeric array of shape {expected}, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; expected finite values of shape {expected}")
    return arr


def numpy_rng(key: jax.Array, name: str = "key") -> np.random.Generator:
    """A NumPy generator seeded by 128 bits drawn from a JAX PRNG key: deterministic in the key, and one
    fixed-shape JAX call, so new array shapes cost no XLA compilation."""
    try:
        seed = np.asarray(jax.random.bits(key, (4,), dtype=jnp.uint32))
    except Exception as e:
        raise ValueError(f"{name} must be a JAX PRNG key such as jax.random.key(0), got {key!r}") from e
    return np.random.default_rng(seed)
