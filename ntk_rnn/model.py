"""The RNN as pure functions of (cfg, params, x): initialization, the forward pass, and the outputs at the
loss positions (docs/theory.md §1).

Every function here composes with jax.jit (cfg static), jax.vmap and jax.grad. They check structure only
(keys and shapes, known while tracing); ntk_rnn.checks validates values at the boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.checks import Params, check_structure
from ntk_rnn.config import RNNConfig

Positions = tuple[int, ...] | None


def init_params(cfg: RNNConfig, *, key: jax.Array) -> Params:
    """Draw every parameter from N(0, std^2) in float64, std from cfg.parameterization (RNNConfig)."""
    kw, ka, kb = jax.random.split(key, 3)
    keys = {"W": kw, "A": ka, "B": kb, "b": jax.random.fold_in(key, 3)}
    std = cfg.init_std
    return {
        name: jax.random.normal(keys[name], shape, dtype=jnp.float64) * std[name]
        for name, shape in cfg.param_shapes.items()
    }


@partial(jax.jit, static_argnums=0)
def hidden_states(cfg: RNNConfig, params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pre-activations g and hidden states h, each (n, L, m), for inputs x (n, L, d_x)."""
    check_structure(cfg, params, x)
    c = cfg.multipliers
    W, A = c["W"] * params["W"], c["A"] * params["A"]
    bias = c["b"] * params["b"] if "b" in params else 0.0
    phi = cfg.phi

    def step(h, x_t):
        g = h @ W.T + x_t @ A.T + bias
        h = phi(g)
        return h, (g, h)

    h0 = jnp.zeros((x.shape[0], cfg.width), dtype=jnp.result_type(x, W))
    _, (g, h) = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(g, 0, 1), jnp.swapaxes(h, 0, 1)


def apply(cfg: RNNConfig, params: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
    """The outputs for inputs x (n, L, d_x): readout "all" gives y_l = c_B B h_l at every step, (n, L, d);
    "last" gives c_B B h_L and "mean" c_B B mean_l h_l, (n, d). Pure: jit it with cfg static."""
    _, h = hidden_states(cfg, params, x)
    B = cfg.multipliers["B"] * params["B"]
    if cfg.readout == "last":
        return h[:, -1] @ B.T
    if cfg.readout == "mean":
        return h.mean(axis=1) @ B.T
    return h @ B.T


def activation_derivative(cfg: RNNConfig, g: jax.Array) -> jax.Array:
    """phi'(g), elementwise, for any activation (by a jvp)."""
    return jax.jvp(cfg.phi, (g,), (jnp.ones_like(g),))[1]


def select_outputs(y_pred: jax.Array, positions: Positions) -> jax.Array:
    """Outputs at the loss positions, (n, P, d), or the per-sequence outputs (n, d) when positions is None."""
    return y_pred if positions is None else y_pred[:, np.asarray(positions)]


def select_targets(y: jax.Array, positions: Positions) -> jax.Array:
    """Targets (n, L, d) at the loss positions, or at the last step for a per-sequence readout."""
    return y[:, -1] if positions is None else y[:, np.asarray(positions)]


def flat_outputs(cfg: RNNConfig, params: Mapping[str, jax.Array], x: jax.Array, positions: Positions) -> jax.Array:
    """The outputs at the positions as one vector in the kernels' row order (sample, position, unit):
    (n * P * d,), or (n * d,) for readout "last"/"mean" (positions None)."""
    return select_outputs(apply(cfg, params, x), positions).reshape(-1)


def trainable(cfg: RNNConfig, params: Mapping[str, jax.Array]) -> Params:
    """theta: the trainable parameters of cfg, {name: array} for name in cfg.trainable."""
    return {k: params[k] for k in cfg.trainable}


def merge(params: Mapping[str, jax.Array], theta: Mapping[str, jax.Array]) -> Params:
    """params with the entries of theta replaced (the inverse of trainable)."""
    return {**params, **theta}


def output_fn(
    cfg: RNNConfig, params: Mapping[str, jax.Array], x: jax.Array, positions: Positions
) -> Callable[[Params], jax.Array]:
    """theta -> flat_outputs with the trainable parameters theta and the others from params: the function
    whose Jacobian the empirical NTK contracts."""
    return lambda theta: flat_outputs(cfg, merge(params, theta), x, positions)
