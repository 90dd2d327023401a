"""Perturbation probes: the lemmas of the paper's proof (docs/theory.md §6), measured on one network.

- forward stability: ||h_l|| against l (forward_norms, and the infinite-width limit_forward_norms);
- backward stability: ||B D_l W ... D_a W||_2 against l - a (backward_norms, limit_backward_norms),
  and the intermediate-layer products ||D_l W ... D_a W||_2 (product_norms, matrix-free Lanczos);
- perturbation theory: W -> W + Delta with ||Delta||_2 = omega / sqrt(m) in a random, gradient,
  adversarial or sign-flip-maximising direction (perturbation_direction), and what moves
  (perturbation_response): hidden states, ReLU signs, backward products, and the first-order Taylor
  error of the outputs.

Perturbations act on the effective recurrent matrix c_W W (c_W = 1 except in the "ntk"
parameterization), so omega means the same in every parameterization: the paper's omega.
Steps are 0-based: l = 0 is the paper's first step. The gradient lower bound and sign flips along
training come from ntk_rnn.training.train's history (grad_sq_norm, lambda_min, pattern_flip_fraction, omega).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg

from ntk_rnn.kernels.limit import forward_kernels
from ntk_rnn.network.checks import Params, check_inputs, check_params, check_targets, loss_positions
from ntk_rnn.network.config import RNNConfig
from ntk_rnn.network.model import activation_derivative, flat_outputs, hidden_states, select_targets

KINDS = ("random", "gradient", "adversarial", "flip")
"""The kinds of perturbation_direction."""


def check_elman(cfg: RNNConfig) -> None:
    """The probes measure the paper's lemmas, which are about one forward Elman layer (D_l, W)."""
    if not cfg.is_elman:
        raise ValueError(f"ntk_rnn.apps.probes measure the paper's lemmas on the one-layer Elman RNN; this config has "
                         f"cell={cfg.cell_name!r}, num_layers={cfg.num_layers}, "
                         f"bidirectional={cfg.bidirectional}")  # fmt: skip


def forward_norms(cfg: RNNConfig, params: Mapping[str, jax.Array], x) -> np.ndarray:
    """||h_{i,l}||, (n, L), for inputs x (n, L, d_x)."""
    check_elman(cfg)
    params, x = check_params(cfg, params), check_inputs(cfg, x)
    return np.asarray(jnp.linalg.norm(hidden_states(cfg, params, x)[1], axis=-1))


def _limit_diagonal(a: np.ndarray) -> np.ndarray:
    """a[i, l, i, l] of a (n, L, n, L) covariance, (n, L)."""
    n, length = a.shape[:2]
    return a.reshape(n * length, n * length).diagonal().reshape(n, length)


def limit_forward_norms(cfg: RNNConfig, x) -> np.ndarray:
    """Infinite-width ||h_{i,l}|| ("paper") or ||h_{i,l}|| / sqrt(m) ("standard", "ntk"), (n, L).

    For relu in the paper's parameterization with unit tokens, ||h_l||^2 -> l + 1 (0-based l).
    """
    check_elman(cfg)
    return np.sqrt(_limit_diagonal(forward_kernels(cfg, x).S))


@jax.jit
def _backward_rows(cfg: RNNConfig, params: Params, x: jax.Array) -> jax.Array:
    """R[s, i, l] = B D_l W D_{l-1} W ... D_{l-s} W, (L, n, L, d, m); zero where s > l."""
    g, _ = hidden_states(cfg, params, x)
    dphi = activation_derivative(cfg, g)  # (n, L, m)
    c = cfg.multipliers
    W, B = c["W"] * params["W"], c["B"] * params["B"]
    length = x.shape[1]
    rows = (B[None, None] * dphi[:, :, None, :]) @ W  # s = 0: B D_l W, (n, L, d, m)
    out = [rows]
    for s in range(1, length):
        shifted = jnp.concatenate([jnp.zeros_like(dphi[:, :s]), dphi[:, : length - s]], axis=1)  # D_{l-s}
        rows = (rows * shifted[:, :, None, :]) @ W
        out.append(rows)
    return jnp.stack(out)


def backward_norms(cfg: RNNConfig, params: Mapping[str, jax.Array], x) -> np.ndarray:
    """Spectral norms ||B D_l W D_{l-1} W ... D_a W||_2 of the (d, m) backward products, (n, L, L)
    indexed [i, l, a], NaN where a > l. Effective weights (c_B B, c_W W); exact (d x d Gram eigenvalue).

    The paper bounds them by O(sqrt(m/d)) poly(L) (backward stability); see limit_backward_norms.
    """
    check_elman(cfg)
    params, x = check_params(cfg, params), check_inputs(cfg, x)
    return _row_norms(_backward_rows(cfg, params, x))


def _row_norms(rows: jax.Array) -> np.ndarray:
    """Spectral norms of (d, m) blocks rows[s, i, l] (L, n, L, d, m) as (n, L, L) [i, l, a = l - s], NaN
    where a > l; exact, from the top eigenvalue of the d x d Gram matrix."""
    gram = rows @ jnp.swapaxes(rows, -1, -2)  # (L, n, L, d, d)
    by_distance = np.sqrt(np.maximum(np.asarray(jnp.linalg.eigvalsh(gram)[..., -1]), 0.0))  # [s, i, l]
    length, n = rows.shape[:2]
    out = np.full((n, length, length), np.nan)
    for s in range(length):
        ls = np.arange(s, length)
        out[:, ls, ls - s] = by_distance[s][:, ls]
    return out


def limit_backward_norms(cfg: RNNConfig, x) -> np.ndarray:
    """Infinite-width `||B D_l W ... D_a W||_2 / sqrt(m/d)` ("paper") or `||.||_2` ("standard", "ntk"),
    (n, L, L) indexed [i, l, a], NaN where a > l: `sqrt(sigma_v2 prod_{j=a..l} sigma_w2 k_j)`, with k_j the
    limit mean of phi'(g_j)^2 (d rows of equal norm, orthogonal as m -> infinity).

    relu at sigma_w2 = 2 (k = 1/2): a flat line at sigma_v; linear: sqrt(sigma_v2 2^(l-a+1)).
    """
    check_elman(cfg)
    k = _limit_diagonal(forward_kernels(cfg, x).k)  # (n, L)
    log_step = np.log(np.maximum(cfg.sigma_w2 * k, 1e-300))
    cumulative = np.concatenate([np.zeros((k.shape[0], 1)), np.cumsum(log_step, axis=1)], axis=1)
    length = x.shape[1]
    l_idx, a_idx = np.meshgrid(np.arange(length), np.arange(length), indexing="ij")
    log_prod = cumulative[:, l_idx + 1] - cumulative[:, a_idx]  # sum_{j=a..l} log(sigma_w2 k_j)
    out = np.sqrt(cfg.sigma_v2 * np.exp(log_prod))
    return np.where(a_idx <= l_idx, out, np.nan)


def product_norms(
    cfg: RNNConfig,
    params: Mapping[str, jax.Array],
    x,
    start: int = 1,
    sample: int = 0,
    tol: float = 1e-10,
    distances: Sequence[int] | None = None,
) -> np.ndarray:
    """||D_l W D_{l-1} W ... D_start W||_2 (m x m intermediate-layer products) for l = 0..L-1, (L,), NaN
    for l < start and for l - start not in `distances` (default: every l >= start), on one sample.
    Matrix-free: ARPACK Lanczos (scipy svds) on v -> M v and u -> M^T u, each a chain of matrix-vector
    products; the products are never formed. The paper bounds them by O(L^3) (Lemma B.11) and
    conjectures O(1) (Remark 4.1), independently of m."""
    check_elman(cfg)
    params, x = check_params(cfg, params), check_inputs(cfg, x)
    length = x.shape[1]
    if not 0 <= sample < x.shape[0]:
        raise ValueError(f"sample must be in 0..{x.shape[0] - 1}, got {sample}")
    if not 1 <= start < length:
        raise ValueError(f"start must be in 1..{length - 1} (step 0 has no W factor: h_0 = 0), got {start}")
    if distances is None:
        stops = list(range(start, length))
    else:
        given = list(distances)
        if not given or not all(isinstance(s, int | np.integer) and 0 <= s < length - start for s in given):
            raise ValueError(f"distances must be a non-empty sequence of ints l - start in 0..{length - 1 - start}"
                             f", got {distances!r}")  # fmt: skip
        stops = sorted({start + int(s) for s in given})
    g, _ = hidden_states(cfg, params, x[sample : sample + 1])
    dphi = activation_derivative(cfg, g[0])  # (L, m)
    W = cfg.multipliers["W"] * params["W"]

    @jax.jit
    def matvec(stop: jax.Array, v: jax.Array) -> jax.Array:  # D_stop W ... D_start W v
        return jax.lax.fori_loop(start, stop + 1, lambda j, v: dphi[j] * (W @ v), v)

    @jax.jit
    def rmatvec(stop: jax.Array, u: jax.Array) -> jax.Array:  # W^T D_start ... W^T D_stop u
        return jax.lax.fori_loop(start, stop + 1, lambda j, u: W.T @ (dphi[stop + start - j] * u), u)

    out = np.full(length, np.nan)
    m = cfg.width
    v0 = np.ones(m) / math.sqrt(m)
    for stop in stops:
        op = scipy.sparse.linalg.LinearOperator(
            (m, m),
            matvec=lambda v, s=stop: np.asarray(matvec(s, jnp.asarray(v.ravel()))),
            rmatvec=lambda u, s=stop: np.asarray(rmatvec(s, jnp.asarray(u.ravel()))),
            dtype=np.float64,
        )
        out[stop] = scipy.sparse.linalg.svds(op, k=1, v0=v0, tol=tol, return_singular_vectors=False)[0]
    return out


def _with_w(cfg: RNNConfig, params: Params, delta: jax.Array) -> Params:
    """params with the effective recurrent matrix c_W W moved by delta (m, m)."""
    return {**params, "W": params["W"] + delta / cfg.multipliers["W"]}


@jax.jit
def _onto_sphere(delta: jax.Array, radius: float) -> jax.Array:
    """Projection onto the spectral ball {||Delta||_2 <= radius} (singular values clipped at radius),
    rescaled to ||Delta||_2 = radius if it fell inside."""
    u, s, vt = jnp.linalg.svd(delta, full_matrices=False)
    clipped = jnp.minimum(s, radius)
    return (u * (clipped * radius / clipped[0])) @ vt


def _spectral_norm(d: np.ndarray) -> float:
    """||d||_2 of an (m, m) matrix: a full SVD for m <= 64, else Lanczos (ARPACK svds to machine precision,
    deterministic start), far cheaper at large m."""
    if min(d.shape) <= 64 or not np.any(d):
        return float(np.linalg.norm(d, 2))
    v0 = np.ones(d.shape[1]) / math.sqrt(d.shape[1])
    return float(scipy.sparse.linalg.svds(d, k=1, tol=0, v0=v0, return_singular_vectors=False)[0])


def _check_omega(omega: float) -> float:
    if not (isinstance(omega, int | float | np.floating) and math.isfinite(omega) and omega > 0):
        raise ValueError(
            f"omega must be a finite number > 0 (the perturbation radius sqrt(m) ||Delta||_2), got {omega!r}"
        )
    return float(omega)


def perturbation_direction(
    cfg: RNNConfig,
    params: Mapping[str, jax.Array],
    x,
    kind: str,
    omega: float,
    *,
    key: jax.Array,
    y=None,
    positions: Sequence[int] | None = None,
    ascent_steps: int = 5,
    flip_candidates: int = 8,
) -> jax.Array:
    """A perturbation Delta (m, m) of c_W W with ||Delta||_2 = omega / sqrt(m).

    kind: "random" (a Gaussian matrix, rescaled), "gradient" (-grad_W f for the loss f with targets
    y (n, L, d), rescaled: the direction a GD step takes), "adversarial" (from a random start,
    `ascent_steps` steps of projected gradient ascent on ||F(W + Delta) - F(W)||^2 over the spectral
    ball, F the outputs at `positions`; it ends on the sphere), or "flip" (the rank-one direction that
    flips the most signs at one (sample, step), from the units nearest to a sign change; the `flip_candidates`
    most promising (sample, step) are tried).
    """
    check_elman(cfg)
    params, x = check_params(cfg, params), check_inputs(cfg, x)
    omega = _check_omega(omega)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    pos = loss_positions(cfg, positions, x.shape[1], "positions")
    m = cfg.width
    radius = omega / math.sqrt(m)

    def rescale(d: jax.Array) -> jax.Array:
        norm = _spectral_norm(np.asarray(d))
        if norm == 0.0:
            raise ValueError(f"the {kind} direction is zero; it cannot be rescaled to omega={omega}")
        return d * (radius / norm)

    if kind == "random":
        return rescale(jax.random.normal(key, (m, m), dtype=jnp.float64))
    if kind == "flip":
        if not (isinstance(flip_candidates, int) and flip_candidates >= 1):
            raise ValueError(f"flip_candidates must be an int >= 1, got {flip_candidates!r}")
        return _flip_direction(cfg, params, x, radius, flip_candidates)
    if kind == "gradient":
        if y is None:
            raise ValueError("kind='gradient' needs the targets y (n, L, d) of the loss f")
        target = select_targets(check_targets(cfg, x, y, "y"), pos).reshape(-1)
        return rescale(-_square_and_grad(cfg, params, x, pos, target, jnp.zeros((m, m)))[1])
    if ascent_steps < 1:
        raise ValueError(f"ascent_steps must be >= 1, got {ascent_steps}")
    f0 = flat_outputs(cfg, params, x, pos)
    delta = rescale(jax.random.normal(key, (m, m), dtype=jnp.float64))
    best, best_value = delta, -math.inf
    for step in range(ascent_steps + 1):
        value, grad = _square_and_grad(cfg, params, x, pos, f0, delta)  # ||F(W + delta) - F(W)||^2
        if float(value) > best_value:
            best, best_value = delta, float(value)
        if step < ascent_steps:  # the change grows with the radius: ascend, then back onto the sphere
            delta = _onto_sphere(delta + radius * grad / jnp.linalg.norm(grad), radius)
    return best


@partial(jax.jit, static_argnums=3)
def _square_and_grad(
    cfg: RNNConfig, params: Params, x: jax.Array, pos: tuple[int, ...] | None, ref: jax.Array, delta: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """||F(c_W W + delta) - ref||^2 and its gradient in delta (m, m); F the flat outputs at pos. Compiled once
    per (cfg, shapes, pos), shared by every call."""

    def square(d: jax.Array) -> jax.Array:
        return jnp.sum((flat_outputs(cfg, _with_w(cfg, params, d), x, pos) - ref) ** 2)

    return jax.value_and_grad(square)(delta)


FLIP_MARGIN = 0.05  # the greedy prefix uses at most (1 - FLIP_MARGIN) of the radius: every selected unit crosses


@jax.jit
def _flip_counts(cfg: RNNConfig, params: Params, x: jax.Array, delta: jax.Array) -> jax.Array:
    """||D'_{i,l} - D_{i,l}||_0: units whose pre-activation sign changed under c_W W + delta, (n, L) ints."""
    g0, _ = hidden_states(cfg, params, x)
    g1, _ = hidden_states(cfg, _with_w(cfg, params, delta), x)
    return jnp.sum((g0 > 0) != (g1 > 0), axis=-1)


def _flip_direction(cfg: RNNConfig, params: Params, x: jax.Array, radius: float, candidates: int) -> jax.Array:
    """The rank-one Delta = u v^T (m, m), ||Delta||_2 = ||u|| ||v|| = radius, that flips the most signs at one
    (sample i, step l >= 1), with v = h / ||h||, h = h_{i,l-1} (m,) the input of c_W W at step l.

    To first order Delta moves g_{i,l} (m,) by u ||h||. u lives on the units of smallest |g_k|: the longest
    prefix of them (sorted by |g_k|) with sum g_k^2 / ||h||^2 <= ((1 - FLIP_MARGIN) radius)^2 gets
    u_k = -g_k / ||h|| (just reaching 0), then u is scaled up to ||u|| = radius, pushing each past 0. The
    `candidates` (i, l) with the largest prefixes are evaluated by their actual flip count at their own
    (i, l) (a forward pass with W + Delta, the earlier steps' changes included); the best is returned.
    """
    g, h = (np.asarray(a) for a in hidden_states(cfg, params, x))
    n, length, m = g.shape
    built = []
    for i in range(n):
        for step in range(1, length):
            norm = float(np.linalg.norm(h[i, step - 1]))
            if norm == 0.0:
                continue
            order = np.argsort(np.abs(g[i, step]), kind="stable")
            cost = np.sqrt(np.cumsum(g[i, step, order] ** 2)) / norm  # ||u|| of each prefix
            size = int(np.searchsorted(cost, (1 - FLIP_MARGIN) * radius, side="right"))
            u = np.zeros(m)
            units = order[: max(size, 1)]
            u[units] = -g[i, step, units] / norm
            if not np.any(u):
                u[order[0]] = 1.0  # g_k = 0 exactly: any positive push flips it
            built.append((size, i, step, u * (radius / np.linalg.norm(u)), h[i, step - 1] / norm))
    if not built:
        raise ValueError("kind='flip' needs a step l >= 1 whose previous hidden state is nonzero (L >= 2)")
    built.sort(key=lambda c: -c[0])  # stable: ties keep (i, l) order
    best_count, best = -1, None
    for _, i, step, u, v in built[:candidates]:
        delta = jnp.asarray(np.outer(u, v) * (radius / (np.linalg.norm(u) * np.linalg.norm(v))))
        count = int(_flip_counts(cfg, params, x[i : i + 1], delta)[0, step])
        if count > best_count:
            best_count, best = count, delta
    return best


class PerturbationResponse(NamedTuple):
    """What moves when c_W W -> c_W W + Delta, on inputs (n, L, d_x).

    `hidden_change`: `||h'_{i,l} - h_{i,l}||`, (n, L). `flip_fraction`: fraction of the n m units at step l
    whose pre-activation sign changed, `||D'_l - D_l||_0 / (n m)` for relu, (L,). `first_order`: `||J Delta||`,
    the first-order change of the outputs F at the positions; `first_order_error`:
    `||F(W + Delta) - F(W) - J Delta|| / ||J Delta||` (NaN when J Delta = 0). `flip_count`:
    `||D'_{i,l} - D_{i,l}||_0` per sample and step, (n, L) ints (Lemma C.2's quantity). `backward_change`:
    `||R'_{i,l,a} - R_{i,l,a}||_2 / ||c_B B||_2` for the backward products R = B D_l W ... D_a W (d, m)
    (effective weights, D' and W + Delta in R'), (n, L, L) indexed [i, l, a], NaN where a > l (Lemma C.9's
    quantity relative to ||B||).
    """

    hidden_change: np.ndarray
    flip_fraction: np.ndarray
    first_order: float
    first_order_error: float
    flip_count: np.ndarray
    backward_change: np.ndarray


def perturbation_response(
    cfg: RNNConfig, params: Mapping[str, jax.Array], x, delta, positions: Sequence[int] | None = None
) -> PerturbationResponse:
    """Measure a perturbation Delta (m, m) of c_W W (see PerturbationResponse)."""
    check_elman(cfg)
    params, x = check_params(cfg, params), check_inputs(cfg, x)
    delta = jnp.asarray(delta, dtype=jnp.float64)
    m = cfg.width
    if delta.shape != (m, m) or not bool(jnp.all(jnp.isfinite(delta))):
        raise ValueError(f"delta must be a finite (m, m) = ({m}, {m}) array, got shape {delta.shape}")
    pos = loss_positions(cfg, positions, x.shape[1], "positions")
    moved = _with_w(cfg, params, delta)
    _, h0 = hidden_states(cfg, params, x)
    _, h1 = hidden_states(cfg, moved, x)
    counts = np.asarray(_flip_counts(cfg, params, x, delta))
    rows = _backward_rows(cfg, moved, x) - _backward_rows(cfg, params, x)
    b_norm = float(np.linalg.norm(np.asarray(cfg.multipliers["B"] * params["B"]), 2))

    def outputs(d: jax.Array) -> jax.Array:
        return flat_outputs(cfg, _with_w(cfg, params, d), x, pos)

    f0, linear = jax.jvp(outputs, (jnp.zeros_like(delta),), (delta,))
    first_order = float(jnp.linalg.norm(linear))
    error = float(jnp.linalg.norm(outputs(delta) - f0 - linear))
    return PerturbationResponse(
        hidden_change=np.asarray(jnp.linalg.norm(h1 - h0, axis=-1)),
        flip_fraction=counts.sum(axis=0) / (x.shape[0] * m),
        first_order=first_order,
        first_order_error=error / first_order if first_order > 0 else math.nan,
        flip_count=counts,
        backward_change=_row_norms(rows) / b_norm,
    )
