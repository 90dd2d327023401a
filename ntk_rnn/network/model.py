"""The RNN as pure functions of (cfg, params, x): initialization, the forward pass, and the outputs at the
loss positions (docs/theory.md §1).

Every function here composes with jax.jit (cfg static), jax.vmap and jax.grad. They check structure only
(keys and shapes, known while tracing); ntk_rnn.network.checks validates values at the boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.network.cells import CELL_WEIGHTS, TiedUse
from ntk_rnn.network.checks import Params, check_structure
from ntk_rnn.network.config import RNNConfig, base_name

Positions = tuple[int, ...] | None


def init_params(cfg: RNNConfig, *, key: jax.Array) -> Params:
    """Draw every parameter from N(0, std^2) in float64, std from cfg.parameterization (RNNConfig)."""
    kw, ka, kb = jax.random.split(key, 3)
    keys = {"W": kw, "A": ka, "B": kb, "b": jax.random.fold_in(key, 3)}
    for index, name in enumerate(cfg.param_names):
        keys.setdefault(name, jax.random.fold_in(key, 4 + index))
    std = cfg.init_std
    return {
        name: jax.random.normal(keys[name], shape, dtype=jnp.float64) * std[name]
        for name, shape in cfg.param_shapes.items()
    }


@jax.jit
def hidden_states(cfg: RNNConfig, params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pre-activations g and hidden states h, each (n, L, m), for inputs x (n, L, d_x), of a one-layer
    Elman RNN (cfg.is_elman) on equal-length sequences."""
    if not cfg.is_elman:
        raise ValueError(f"hidden_states is the one-layer Elman RNN's (pre-activations g); cfg has "
                         f"cell={cfg.cell_name!r}, num_layers={cfg.num_layers}, "
                         f"bidirectional={cfg.bidirectional}")  # fmt: skip
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


def apply(cfg: RNNConfig, params: Mapping[str, jax.Array], x: jax.Array, lengths: jax.Array | None = None):
    """The outputs for inputs x (n, L, d_x): readout "all" gives y_l = c_B B h_l at every step, (n, L, d);
    "last" gives c_B B h_L and "mean" c_B B mean_l h_l, (n, d). With several directions the readouts are summed;
    an output bias bo is added. lengths (n,) ints in [1, L]: right-padded sequences, whose padded steps
    leave the state unchanged and output 0; "last" and "mean" use each sequence's own steps. Pure: jit it
    with cfg static."""
    if not cfg.is_elman or lengths is not None:
        check_structure(cfg, params, x)
        return jax.vmap(lambda xi, li: sequence_outputs(cfg, params, xi, li)[0])(x, full_lengths(x, lengths))
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


def select_targets(y: jax.Array, positions: Positions, lengths: jax.Array | None = None) -> jax.Array:
    """Targets (n, L, d) at the loss positions, or at the last (real) step for a per-sequence readout."""
    if positions is not None:
        return y[:, np.asarray(positions)]
    return y[:, -1] if lengths is None else y[jnp.arange(y.shape[0]), jnp.asarray(lengths) - 1]


def position_mask(positions: Positions, lengths: jax.Array | None, n: int) -> jax.Array:
    """1.0 at the real (sample, position) pairs (position < length), 0.0 at padded ones: (n, P), or (n,) for
    a per-sequence readout (positions None), where every sequence counts."""
    if positions is None:
        return jnp.ones(n)
    if lengths is None:
        return jnp.ones((n, len(positions)))
    return (jnp.asarray(positions)[None, :] < jnp.asarray(lengths)[:, None]).astype(jnp.float64)


def flat_outputs(cfg: RNNConfig, params: Mapping[str, jax.Array], x: jax.Array, positions: Positions,
                 lengths: jax.Array | None = None) -> jax.Array:  # fmt: skip
    """The outputs at the positions as one vector in the kernels' row order (sample, position, unit):
    (n * P * d,), or (n * d,) for readout "last"/"mean" (positions None). With lengths, the rows of padded
    positions are there too (zero); real_rows says which are kept."""
    return select_outputs(apply(cfg, params, x, lengths), positions).reshape(-1)


def real_rows(cfg: RNNConfig, positions: Positions, lengths, n: int) -> np.ndarray:
    """Boolean mask (n * P * d,) of the flat_outputs rows at real positions (position < the sequence's
    length); all True without lengths or for a per-sequence readout (n * d,)."""
    per_sample = cfg.output_dim * (1 if positions is None else len(positions))
    if lengths is None or positions is None:
        return np.ones(n * per_sample, bool)
    real = np.asarray(positions)[None, :] < np.asarray(lengths)[:, None]  # (n, P)
    return np.repeat(real, cfg.output_dim, axis=1).reshape(-1)


def trainable(cfg: RNNConfig, params: Mapping[str, jax.Array]) -> Params:
    """theta: the trainable parameters of cfg, {name: array} for name in cfg.trainable_names."""
    return {k: params[k] for k in cfg.trainable_names}


def merge(params: Mapping[str, jax.Array], theta: Mapping[str, jax.Array]) -> Params:
    """params with the entries of theta replaced (the inverse of trainable)."""
    return {**params, **theta}


def output_fn(
    cfg: RNNConfig, params: Mapping[str, jax.Array], x: jax.Array, positions: Positions, lengths=None
) -> Callable[[Params], jax.Array]:
    """theta -> flat_outputs with the trainable parameters theta and the others from params: the function
    whose Jacobian the empirical NTK contracts."""
    return lambda theta: flat_outputs(cfg, merge(params, theta), x, positions, lengths)


# ----------------------------------------------------------------------------- any cell, layer, direction


def full_lengths(x: jax.Array, lengths: jax.Array | None) -> jax.Array:
    """lengths (n,) for x (n, L, d_x), or L for every sequence when lengths is None."""
    return jnp.full(x.shape[0], x.shape[1], jnp.int32) if lengths is None else jnp.asarray(lengths)


def step_order(length: jax.Array, steps: int, reverse: bool) -> jax.Array:
    """The step each scan step reads, (L,): t itself, or for the reverse direction the real steps backwards,
    len-1-t for t < len, then the padding as it is. An involution, so it also maps states back. A length of
    shape (n, 1) gives the orders of n sequences, (n, L)."""
    t = jnp.arange(steps)
    return jnp.where(t < length, length - 1 - t, t) if reverse else t


def _run_layer(cfg: RNNConfig, weights: dict, scales: dict, inputs: jax.Array, length: jax.Array, taps: dict | None):
    """One layer of one direction over one sequence, in scan order: states (L, s) and the features
    {name: (L, f)} that the weights with taps ({name: (L, k m)}, zeros; a subset of the weights, or
    None) recorded (docs/theory.md §8)."""
    cell, m = cfg.cell_spec, cfg.width
    size = cell.state_factor * m

    def body(state, step_inputs):
        t, x_t, tap_t = step_inputs
        tapped = {k: TiedUse(k, weights[k], scales[k], tap) for k, tap in (tap_t or {}).items()}
        new = cell.step({**weights, **tapped}, state, x_t)
        if jnp.shape(new) != (size,):
            raise ValueError(f"cell {cell.name!r}: step(params, s, x) must return the new state of shape "
                             f"({size},) (state_factor * width), got {jnp.shape(new)}")  # fmt: skip
        unused = [k for k, v in tapped.items() if v.feature is None]
        if unused:
            raise ValueError(f"cell {cell.name!r}: the step never uses params{unused}; every weight must "
                             f"enter once, as params[name] @ v or + params['b']")  # fmt: skip
        features = {k: v.feature for k, v in tapped.items()}
        new = jnp.where(t < length, new, state)
        return new, (new, features)

    s0 = jnp.zeros(size, inputs.dtype)
    _, (states, features) = jax.lax.scan(body, s0, (jnp.arange(inputs.shape[0]), inputs, taps))
    return states, features


def sequence_outputs(cfg: RNNConfig, params: Mapping[str, jax.Array], x: jax.Array, length: jax.Array,
                     taps: dict | None = None):  # fmt: skip
    """One sequence x (L, d_x) of `length` real steps through every layer and direction.

    Returns (y, readout_inputs, features): y as in apply ((L, d) or (d,)); readout_inputs {direction:
    r} with r (L, m) or (m,), the vectors each readout B multiplies (zero at padded steps); and, with
    taps {param name: (L, k m)} (zeros) for some cell weights, the features {param name: (L, f)} of
    the tapped pass, indexed by scan step (docs/theory.md §8). Layer j reads the states of layer j - 1 of
    its own direction (stacking "separate") or of both, [forward; reverse] (stacking "concat"). Pure."""
    c = cfg.multipliers
    steps = x.shape[0]
    real = jnp.arange(steps) < length
    orders = {d: step_order(length, steps, d == "_reverse") for d in cfg.directions}
    below = dict.fromkeys(cfg.directions, x)  # each direction's input, in time order
    features = {}
    for index, layer in enumerate(cfg.layers):
        joint = jnp.concatenate([below[d] for d in cfg.directions], axis=-1) if index else x
        current = {}
        for direction in cfg.directions:
            order = orders[direction]
            inputs = joint if cfg.stacking == "concat" else below[direction]
            names = [k + layer + direction for k in CELL_WEIGHTS if k + layer + direction in params]
            weights = {base_name(k): c[k] * params[k] for k in names}
            scales = {base_name(k): c[k] for k in names}
            layer_taps = {base_name(k): taps[k] for k in names if k in (taps or {})}
            states, feats = _run_layer(cfg, weights, scales, inputs[order], length, layer_taps or None)
            current[direction] = states[order, : cfg.width]
            features |= {k: feats[base_name(k)] for k in names if base_name(k) in feats}
        below = current
    y, readout_inputs = 0.0, {}
    for direction in cfg.directions:
        h = jnp.where(real[:, None], below[direction], 0.0)
        if cfg.readout == "last":
            r = h[length - 1] if direction == "" else h[0]
        elif cfg.readout == "mean":
            r = h.sum(axis=0) / length
        else:
            r = h
        readout_inputs[direction] = r
        y = y + r @ (c["B" + direction] * params["B" + direction]).T
    if "bo" in params:
        bias = c["bo"] * params["bo"]
        y = y + (jnp.where(real[:, None], bias, 0.0) if cfg.readout == "all" else bias)
    return y, readout_inputs, features
