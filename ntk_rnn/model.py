"""The RNN itself: parameter init, the forward pass, and checks on what users pass in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.config import PARAM_NAMES, RNNConfig

Params = dict[str, jax.Array]


def param_shapes(cfg: RNNConfig) -> dict[str, tuple[int, int]]:
    """Shapes of W (m, m), A (m, d_x) and B (d, m)."""
    m, dx, d = cfg.width, cfg.input_dim, cfg.output_dim
    return {"W": (m, m), "A": (m, dx), "B": (d, m)}


def init_params(cfg: RNNConfig, key: jax.Array) -> Params:
    """Draw W ~ N(0, sigma_w2/m), A ~ N(0, sigma_u2/m), B ~ N(0, sigma_v2/d) in float64."""
    kw, ka, kb = jax.random.split(key, 3)
    shapes = param_shapes(cfg)
    m, d = cfg.width, cfg.output_dim
    draw = partial(jax.random.normal, dtype=jnp.float64)
    return {
        "W": draw(kw, shapes["W"]) * jnp.sqrt(cfg.sigma_w2 / m),
        "A": draw(ka, shapes["A"]) * jnp.sqrt(cfg.sigma_u2 / m),
        "B": draw(kb, shapes["B"]) * jnp.sqrt(cfg.sigma_v2 / d),
    }


def check_params(cfg: RNNConfig, params: Mapping[str, jax.Array]) -> Params:
    """Validate a user's parameter dict against cfg and return it as float64 jax arrays."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict with keys {PARAM_NAMES}, got {type(params).__name__}")
    missing = [k for k in PARAM_NAMES if k not in params]
    extra = [k for k in params if k not in PARAM_NAMES]
    if missing or extra:
        raise ValueError(f"params must have exactly the keys {PARAM_NAMES}; missing {missing}, unexpected {extra}")
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


@partial(jax.jit, static_argnums=0)
def hidden_states(cfg: RNNConfig, params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pre-activations g and hidden states h, each (n, L, m), for inputs x (n, L, d_x)."""
    W, A = params["W"], params["A"]
    phi = cfg.phi

    def step(h, x_t):
        g = h @ W.T + x_t @ A.T
        h = phi(g)
        return h, (g, h)

    h0 = jnp.zeros((x.shape[0], cfg.width), dtype=x.dtype)
    _, (g, h) = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(g, 0, 1), jnp.swapaxes(h, 0, 1)


def _apply(cfg: RNNConfig, params: Params, x: jax.Array) -> jax.Array:
    _, h = hidden_states(cfg, params, x)
    return h @ params["B"].T


def apply(cfg: RNNConfig, params: Mapping[str, jax.Array], x) -> jax.Array:
    """Outputs y_l = B h_l at every step: x (n, L, d_x) -> y (n, L, d)."""
    return _apply(cfg, check_params(cfg, params), check_inputs(cfg, x))
