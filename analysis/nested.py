"""The paper's model on nested widths, for studies that visit many widths (analysis.width): parameters that share
their random numbers across widths, the kernel and outputs at the loss positions, full-batch GD to a loss
target on the core (ntk_rnn.run_steps), and the linearized model's step count in closed form."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import ntk_rnn
from ntk_rnn import KernelGD

Params = dict[str, jax.Array]


_GD = ntk_rnn.TrainConfig(optimizer="sgd")  # full-batch GD: run_steps reads only the optimizer and batch_size


def paper_model(width: int, input_dim: int) -> ntk_rnn.RNNConfig:
    """The relu paper model at width m: RNNConfig defaults, W, A ~ N(0, 2/m), B ~ N(0, 1/d), only W trained."""
    return ntk_rnn.RNNConfig(width=width, input_dim=input_dim)


def nested_params(cfg: ntk_rnn.RNNConfig, cap: int, *, key: jax.Array) -> Params:
    """Parameters of the one-layer Elman model cfg (width m <= cap) nested in one draw at the cap: each the
    leading block, of its shape in cfg.param_shapes, of ntk_rnn.init_params(cfg at width cap, key=key), times
    cfg's init std over the cap's (the paper model: W (m, m) and A (m, d_x) times sqrt(cap/m), B (d, m) as
    drawn). Every width has init_params' distribution and the widths of one key share their random numbers
    (a criterion then varies smoothly with m, which bisection over m relies on); width == cap gives
    init_params' own numbers. float64 jax arrays."""
    if not cfg.is_elman:
        raise ValueError(f"nested_params needs a one-layer Elman model, got cell={cfg.cell_name!r}, "
                         f"num_layers={cfg.num_layers}, bidirectional={cfg.bidirectional}")  # fmt: skip
    if not 1 <= cfg.width <= cap:
        raise ValueError(f"width must lie in [1, cap={cap}], got {cfg.width}")
    full = dataclasses.replace(cfg, width=cap)
    drawn = ntk_rnn.init_params(full, key=key)
    std, full_std = cfg.init_std, full.init_std
    return {name: drawn[name][tuple(slice(k) for k in shape)] * (std[name] / full_std[name])
            for name, shape in cfg.param_shapes.items()}  # fmt: skip


def paper_positions(x) -> tuple[int, ...]:
    """The paper's loss positions 1..L-1 of x (n, L, d_x)."""
    return tuple(range(1, np.shape(x)[1]))


def paper_kernel(cfg: ntk_rnn.RNNConfig, params: Params, x: np.ndarray) -> np.ndarray:
    """K_0 over the trainable parameters at the loss positions 1..L-1, (n (L-1) d, n (L-1) d). Not divided by m."""
    return np.asarray(ntk_rnn.empirical_ntk(cfg, params, x))


def paper_outputs(cfg: ntk_rnn.RNNConfig, params: Params, x: np.ndarray) -> np.ndarray:
    """The outputs at the loss positions 1..L-1 in the kernel's row order, (n (L-1) d,)."""
    return np.asarray(ntk_rnn.flat_outputs(cfg, params, jnp.asarray(x), paper_positions(x)))


def gd_until(
    cfg: ntk_rnn.RNNConfig,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    lr: float,
    steps: int,
    until: float = 0.0,
    chunk: int = 64,
) -> tuple[Params, int]:
    """Full-batch GD (ntk_rnn.run_steps) on cfg's trainable parameters at step size lr on 1/2 ||f - y||^2 at the
    loss positions 1..L-1, for `steps` steps or fewer: it stops before the first step at which the loss is
    already <= until times the initial loss. x (n, L, d_x); y (n (L-1) d,) in flat_outputs' order. Returns
    the parameters and the number of steps taken. Runs of `chunk` steps, then single steps (two compilations
    per model and shape)."""
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    x = jnp.asarray(x, dtype=jnp.float64)
    n, length, _ = x.shape
    targets = jnp.zeros((n, length, cfg.output_dim), dtype=jnp.float64)
    targets = targets.at[:, 1:].set(jnp.asarray(y, dtype=jnp.float64).reshape(n, length - 1, cfg.output_dim))
    theta = {name: params[name] for name in cfg.trainable_names}
    state = _GD.make_optimizer(lr).init(theta)
    key = jax.random.key(0)  # full-batch GD draws no batches

    def advance(theta, state, taken: int, count: int):
        return ntk_rnn.run_steps(cfg, _GD, params, theta, state, x, targets, lr, key=key, step0=taken,
                                 num_steps=count, positions=paper_positions(x))  # fmt: skip

    taken, initial = 0, None
    while taken < steps:
        count = chunk if steps - taken >= chunk else 1
        ahead, ahead_state, losses = advance(theta, state, taken, count)
        losses = np.asarray(losses)  # losses[i]: the loss after taken + i steps
        initial = losses[0] if initial is None else initial
        hit = np.flatnonzero(losses <= until * initial)
        if hit.size:
            for _ in range(int(hit[0])):
                theta, state, _ = advance(theta, state, taken, 1)
                taken += 1
            return {**params, **theta}, taken
        theta, state, taken = ahead, ahead_state, taken + count
    return {**params, **theta}, taken


def _linearized_loss(eigenvalues: np.ndarray, coefficients: np.ndarray, lr: float, steps) -> np.ndarray:
    """Loss 1/2 sum_k (1 - lr lam_k)^(2t) c_k^2 of GD on the linearized model after each t in steps, where
    c = V^T (f_0 - y) in K_0's eigenbasis (docs/theory.md §4)."""
    t = np.asarray(steps, float)[..., None]
    return 0.5 * np.sum(np.abs(1.0 - lr * eigenvalues) ** (2 * t) * coefficients**2, axis=-1)


def linearized_steps(K: np.ndarray, f0: np.ndarray, y: np.ndarray, lr: float, eps: float, max_steps: int
                     ) -> int | None:  # fmt: skip
    """The fewest GD steps T at step size lr after which the linearized model's loss is <= eps times its
    initial loss, from K_0's eigendecomposition (K (N, N), f0 and y (N,); no training); None when more than
    max_steps are needed or the step is unstable (lr lam_max >= 2). The loss falls monotonically for
    lr < 2 / lam_max, so T is found by bisection on t."""
    gd = KernelGD.from_kernel(K, f0, y, lr)
    lam, coeff = gd.eigenvalues, gd.eigenvectors.T @ (gd.f0 - gd.y)
    if lr * lam[-1] >= 2.0:
        return None
    target = eps * _linearized_loss(lam, coeff, lr, 0)
    if _linearized_loss(lam, coeff, lr, max_steps) > target:
        return None
    if _linearized_loss(lam, coeff, lr, 0) <= target:
        return 0
    lo, hi = 0, int(max_steps)  # loss(lo) > target >= loss(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _linearized_loss(lam, coeff, lr, mid) <= target else (mid, hi)
    return hi
