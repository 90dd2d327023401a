"""The paper's loss as pure functions (docs/theory.md §1, §4):

    f(theta) = 1/2 sum_i sum_{l in positions} ||y_{i,l} - y*_{i,l}||^2,

a sum and not a mean, so that full-batch GD on the linearized model reads f_{t+1} - y = (I - eta K)(f_t - y).
With readout "last" or "mean" (positions None) it is 1/2 sum_i ||y_i - y*_{i,L}||^2, against the last
step's targets. Everything here composes with jax.jit (cfg and positions static), jax.vmap and jax.grad.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import jax
import jax.numpy as jnp

from ntk_rnn.network.config import RNNConfig
from ntk_rnn.network.model import Positions, apply, merge, position_mask, select_outputs, select_targets, trainable


def masked_residuals(outputs: jax.Array, y: jax.Array, positions: Positions, lengths: jax.Array | None):
    """outputs (n, L, d) or (n, d) minus the targets y (n, L, d) at the loss positions, 0 at padded positions."""
    r = select_outputs(outputs, positions) - select_targets(y, positions, lengths)
    return r if lengths is None else r * position_mask(positions, lengths, y.shape[0])[..., None]


def residuals(cfg: RNNConfig, params: Mapping[str, jax.Array], x: jax.Array, y: jax.Array, positions: Positions,
              lengths: jax.Array | None = None):  # fmt: skip
    """y_pred - y* at the loss positions, (n, P, d), 0 at positions past a sequence's length; for readout
    "last"/"mean" (positions None) the per-sequence outputs against the last real step's targets, (n, d).
    x (n, L, d_x), y (n, L, d), lengths (n,) or None."""
    return masked_residuals(apply(cfg, params, x, lengths), y, positions, lengths)


def per_sample_losses(cfg: RNNConfig, params: Mapping[str, jax.Array], x: jax.Array, y: jax.Array,
                      positions: Positions, lengths: jax.Array | None = None) -> jax.Array:  # fmt: skip
    """Each sequence's share of the loss, 1/2 sum_{l in positions} ||y_{i,l} - y*_{i,l}||^2, (n,)."""
    r = residuals(cfg, params, x, y, positions, lengths)
    return 0.5 * jnp.sum(r.reshape(r.shape[0], -1) ** 2, axis=1)


def loss(cfg: RNNConfig, params: Mapping[str, jax.Array], x: jax.Array, y: jax.Array, positions: Positions,
         lengths: jax.Array | None = None):  # fmt: skip
    """The paper's loss f, a scalar (the sum of per_sample_losses)."""
    return 0.5 * jnp.sum(residuals(cfg, params, x, y, positions, lengths) ** 2)


@partial(jax.jit, static_argnums=4)
def gradient_sq_norm(cfg: RNNConfig, params: Mapping[str, jax.Array], x: jax.Array, y: jax.Array,
                     positions: Positions, lengths: jax.Array | None = None) -> jax.Array:  # fmt: skip
    """||grad f||^2 over the trainable parameters of cfg, by autodiff (independent of the kernel)."""
    grads = jax.grad(lambda theta: loss(cfg, merge(params, theta), x, y, positions, lengths))(trainable(cfg, params))
    return sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))
