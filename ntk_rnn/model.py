"""The RNN itself: parameter init, the forward pass, and checks on what users pass in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.config import RNNConfig

Params = dict[str, jax.Array]


def param_shapes(cfg: RNNConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of W (m, m), A (m, d_x), b (m,) (only when sigma_b2 > 0) and B (d, m)."""
    m, dx, d = cfg.width, cfg.input_dim, cfg.output_dim
    shapes = {"W": (m, m), "A": (m, dx), "b": (m,), "B": (d, m)}
    return {k: shapes[k] for k in cfg.param_names}


def init_params(cfg: RNNConfig, key: jax.Array) -> Params:
    """Draw every parameter from N(0, std^2) in float64, std from cfg.parameterization (RNNConfig)."""
    kw, ka, kb = jax.random.split(key, 3)
    keys = {"W": kw, "A": ka, "B": kb, "b": jax.random.fold_in(key, 3)}
    std = cfg.init_std
    return {
        name: jax.random.normal(keys[name], shape, dtype=jnp.float64) * std[name]
        for name, shape in param_shapes(cfg).items()
    }


def check_params(cfg: RNNConfig, params: Mapping[str, jax.Array]) -> Params:
    """Validate a user's parameter dict against cfg and return it as float64 jax arrays."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict with keys {cfg.param_names}, got {type(params).__name__}")
    names = cfg.param_names
    missing = [k for k in names if k not in params]
    extra = [k for k in params if k not in names]
    if missing or extra:
        raise ValueError(f"params must have exactly the keys {names}; missing {missing}, unexpected {extra}")
    out = {}
    for name, shape in param_shapes(cfg).items():
        arr = jnp.asarray(params[name], dtype=jnp.float64)
        if arr.shape != shape:
            raise ValueError(f"params[{name!r}] must have shape {shape} for {cfg}, got {arr.shape}")
        if not bool(jnp.all(jnp.isfinite(arr))):
            raise ValueError(f"params[{name!r}] contains NaN or inf")
        out[name] = arr
    return out


def check_inputs(cfg: RNNConfig, x, name: str = "x") -> jax.Array:
    """Validate a batch of sequences: shape (n, L, d_x), finite. Returns a float64 jax array."""
    arr = np.asarray(x)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (n, L, d_x) = (n, L, {cfg.input_dim}), got shape {arr.shape}")
    if arr.shape[2] != cfg.input_dim:
        raise ValueError(
            f"{name} has token dimension {arr.shape[2]} but the config's input_dim is {cfg.input_dim}; "
            f"expected shape (n, L, {cfg.input_dim})"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one sequence of length >= 1, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return jnp.asarray(arr, dtype=jnp.float64)


def check_positions(positions: Sequence[int] | None, length: int, name: str = "positions") -> tuple[int, ...]:
    """Resolve output positions (0-based) for sequences of length L.

    None means the paper's loss positions l = 2..L, i.e. (1, ..., L-1) 0-based.
    """
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


def select_outputs(y_pred: jax.Array, positions: tuple[int, ...] | None) -> jax.Array:
    """Outputs at the loss positions, (n, P, d), or the per-sequence outputs (n, d) when positions is None."""
    return y_pred if positions is None else y_pred[:, np.asarray(positions)]


def select_targets(y: jax.Array, positions: tuple[int, ...] | None) -> jax.Array:
    """Targets (n, L, d) at the loss positions, or at the last step for a per-sequence readout."""
    return y[:, -1] if positions is None else y[:, np.asarray(positions)]


@partial(jax.jit, static_argnums=0)
def hidden_states(cfg: RNNConfig, params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pre-activations g and hidden states h, each (n, L, m), for inputs x (n, L, d_x)."""
    c = cfg.multipliers
    W, A = c["W"] * params["W"], c["A"] * params["A"]
    bias = c["b"] * params["b"] if "b" in params else 0.0
    phi = cfg.phi

    def step(h, x_t):
        g = h @ W.T + x_t @ A.T + bias
        h = phi(g)
        return h, (g, h)

    h0 = jnp.zeros((x.shape[0], cfg.width), dtype=x.dtype)
    _, (g, h) = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(g, 0, 1), jnp.swapaxes(h, 0, 1)


def _apply(cfg: RNNConfig, params: Params, x: jax.Array) -> jax.Array:
    _, h = hidden_states(cfg, params, x)
    B = cfg.multipliers["B"] * params["B"]
    if cfg.readout == "last":
        return h[:, -1] @ B.T
    if cfg.readout == "mean":
        return h.mean(axis=1) @ B.T
    return h @ B.T


def apply(cfg: RNNConfig, params: Mapping[str, jax.Array], x) -> jax.Array:
    """The outputs for inputs x (n, L, d_x): readout "all" gives y_l = c_B B h_l at every step,
    (n, L, d); "last" gives c_B B h_L and "mean" c_B B mean_l h_l, (n, d)."""
    return _apply(cfg, check_params(cfg, params), check_inputs(cfg, x))
