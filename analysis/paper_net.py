"""The paper's model in numpy, for studies that visit many widths: the relu Elman RNN in the paper's
parameterization (RNNConfig defaults: W ~ N(0, 2/m), A ~ N(0, 2/m), B ~ N(0, 1/d), no bias, an output at
every step, d = 1, only W trained), its exact empirical kernel K_0 at the loss positions 1..L-1 and
full-batch GD on 1/2 ||f - y||^2.

Why numpy: a jitted kernel or training step is compiled once per width (seconds each), and a bisection
over widths visits dozens of them. The kernel here equals ntk_rnn.empirical_ntk on the same parameters
(tests/analysis/test_width.py checks it), and the GD step equals ntk_rnn.run_steps'.

Widths are nested (nested_params): one draw at the largest width per seed, and the network of width m
is its leading m x m block rescaled to the paper's variance at m. Every width then has exactly the
paper's initial distribution, and the widths of one seed share their random numbers (common random
numbers: a criterion measured on them varies smoothly with m, which bisection over m relies on).
"""

from __future__ import annotations

import math
from functools import lru_cache

import jax
import numpy as np

import ntk_rnn
from ntk_rnn.linearized import KernelGD

Params = dict[str, np.ndarray]


@lru_cache(maxsize=64)
def _draw(cap: int, input_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cfg = ntk_rnn.RNNConfig(width=cap, input_dim=input_dim)
    params = ntk_rnn.init_params(cfg, key=jax.random.key(seed))
    return tuple(np.asarray(params[k], dtype=np.float64) for k in ("W", "A", "B"))


def nested_params(width: int, cap: int, input_dim: int, seed: int) -> Params:
    """Parameters of the width-m paper model (m = width <= cap): the leading block of
    ntk_rnn.init_params(RNNConfig(width=cap, input_dim), key=jax.random.key(seed)), W (m, m) and A (m, d_x)
    times sqrt(cap/m) (variance 2/m), B (1, m) as drawn (variance 1/d). width == cap gives init_params'
    own numbers. Read-only arrays, float64."""
    if not 1 <= width <= cap:
        raise ValueError(f"width must lie in [1, cap={cap}], got {width}")
    W, A, B = _draw(int(cap), int(input_dim), int(seed))
    scale = math.sqrt(cap / width)
    return {"W": W[:width, :width] * scale, "A": A[:width] * scale, "B": B[:, :width].copy()}


def forward(params: Params, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pre-activations g and hidden states h, each (n, L, m), for x (n, L, d_x)."""
    W, A = params["W"], params["A"]
    x = np.asarray(x, dtype=np.float64)
    n, length, _ = x.shape
    g = np.empty((n, length, W.shape[0]))
    h = np.empty_like(g)
    state = np.zeros((n, W.shape[0]))
    for t in range(length):
        g[:, t] = state @ W.T + x[:, t] @ A.T
        state = h[:, t] = np.maximum(g[:, t], 0.0)
    return g, h


def outputs(params: Params, x: np.ndarray) -> np.ndarray:
    """The outputs at the loss positions 1..L-1, flattened (sample, position): (n (L-1),)."""
    _, h = forward(params, x)
    return (h[:, 1:] @ params["B"][0]).reshape(-1)


def kernel(params: Params, x: np.ndarray) -> np.ndarray:
    """K_0 = J J^T over W at the loss positions 1..L-1, (n (L-1), n (L-1)), rows (sample, position): the
    same matrix as ntk_rnn.empirical_ntk(RNNConfig(width=m, input_dim=d_x), params, x). Not divided by m.

    dy_p/dW = sum_a v_{p,a} h_{a-1}^T with v_{p,a} = dy_p/dg_a, so
    K[(i,p),(j,q)] = sum_{a,b} (v_{i,p,a} . v_{j,q,b}) (h_{i,a-1} . h_{j,b-1}), summed per pair (i, j)."""
    W, B = params["W"], params["B"][0]
    g, h = forward(params, x)
    n, length, m = h.shape
    mask = g > 0
    positions = length - 1
    pairs = [(p, a) for p in range(1, length) for a in range(1, p + 1)]  # a = 0 meets h_{-1} = 0: left out
    row = {pair: r for r, pair in enumerate(pairs)}
    v = np.empty((n, len(pairs), m))  # v[i, row(p, a)] = dy_{i,p}/dg_{i,a}
    outs = np.arange(1, length)
    adjoint = B * mask[:, outs]  # (n, P, m): dy_{i,p}/dg_{i,p-s} at distance s, every output p at once
    for s in range(length - 1):
        live = outs - s >= 1
        if s:
            adjoint = (adjoint[:, 1:] @ W) * mask[:, outs[live] - s]  # output p = s leaves
        v[:, [row[p, p - s] for p in outs[live]]] = adjoint
    out_of = np.zeros((positions, len(pairs)))  # sums the rows of each output position
    out_of[[p - 1 for p, _ in pairs], np.arange(len(pairs))] = 1.0
    step = np.array([a for _, a in pairs])
    K = np.empty((n, positions, n, positions))
    for i in range(n):
        for j in range(i, n):
            gram_h = h[i, step - 1] @ h[j, step - 1].T  # h_{i,a-1} . h_{j,b-1}
            block = out_of @ ((v[i] @ v[j].T) * gram_h) @ out_of.T
            K[i, :, j] = block
            K[j, :, i] = block.T
    return K.reshape(n * positions, n * positions)


def gd(params: Params, x: np.ndarray, y: np.ndarray, lr: float, steps: int, until: float = 0.0) -> tuple[Params, int]:
    """Full-batch GD on W at step size lr for `steps` steps, or fewer: it stops before the first step at which
    the loss 1/2 ||f - y||^2 is already <= until times the initial loss. y: targets at the loss positions,
    (n (L-1),). Returns the parameters and the number of steps taken."""
    W, A, B = params["W"].copy(), params["A"], params["B"][0]
    x = np.asarray(x, dtype=np.float64)
    n, length, _ = x.shape
    r = np.asarray(y, dtype=np.float64).reshape(n, length - 1)
    inputs = np.einsum("nld,md->lnm", x, A)  # A x_l, (L, n, m)
    initial = None
    for taken in range(int(steps) + 1):
        states, masks = [np.zeros((n, W.shape[0]))], []
        for t in range(length):
            g = states[-1] @ W.T + inputs[t]
            masks.append(g > 0)
            states.append(np.maximum(g, 0.0))
        residual = np.stack([states[t + 1] @ B for t in range(1, length)], axis=1) - r  # (n, L-1)
        loss = 0.5 * float(np.sum(residual**2))
        initial = loss if initial is None else initial
        if taken == int(steps) or loss <= until * initial:
            return {**params, "W": W}, taken
        grad = np.zeros_like(W)
        adjoint = np.zeros((n, W.shape[0]))
        for a in range(length - 1, 0, -1):
            adjoint = (adjoint @ W + residual[:, a - 1, None] * B) * masks[a]
            grad += adjoint.T @ states[a]  # states[a] = h_{a-1}
        W -= lr * grad
    raise AssertionError("unreachable: the loop returns at taken == steps")


def linearized_loss(eigenvalues: np.ndarray, coefficients: np.ndarray, lr: float, steps) -> np.ndarray:
    """Loss 1/2 sum_k (1 - lr lam_k)^(2t) c_k^2 of GD on the linearized model after each t in steps, where
    c = V^T (f_0 - y) in K_0's eigenbasis (docs/theory.md §4)."""
    t = np.asarray(steps, float)[..., None]
    return 0.5 * np.sum(np.abs(1.0 - lr * eigenvalues) ** (2 * t) * coefficients**2, axis=-1)


def linearized_steps(K: np.ndarray, f0: np.ndarray, y: np.ndarray, lr: float, eps: float, max_steps: int) -> int | None:
    """The fewest GD steps T at step size lr after which the linearized model's loss is <= eps times its
    initial loss, from K_0's eigendecomposition (no training); None when more than max_steps are needed or
    the step is unstable (lr lam_max >= 2). The loss falls monotonically for lr < 2 / lam_max, so T is
    found by bisection on t."""
    gd_ = KernelGD.from_kernel(K, f0, y, lr)
    lam, coeff = gd_.eigenvalues, gd_.eigenvectors.T @ (gd_.f0 - gd_.y)
    if lr * lam[-1] >= 2.0:
        return None
    target = eps * linearized_loss(lam, coeff, lr, 0)
    if linearized_loss(lam, coeff, lr, max_steps) > target:
        return None
    lo, hi = 0, int(max_steps)  # loss(lo) > target >= loss(hi)
    if linearized_loss(lam, coeff, lr, lo) <= target:
        return 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if linearized_loss(lam, coeff, lr, mid) <= target else (mid, hi)
    return hi
