"""The exact empirical NTK of the RNN: a structured fast path (docs/theory.md §2) and two autodiff references.

Rows and columns of every kernel are ordered by (sample, position, output unit) in C order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ntk_rnn.cell_kernel import cell_ntk
from ntk_rnn.checks import InputPair, Params, check_pair, check_params
from ntk_rnn.config import RNNConfig
from ntk_rnn.distributed import distribute
from ntk_rnn.model import activation_derivative, full_lengths, hidden_states, output_fn, real_rows, trainable

METHODS = ("structured", "jacobian", "ntvp")
DEFAULT_MAX_BYTES = 2 * 2**30


def empirical_ntk(
    cfg: RNNConfig,
    params: Mapping[str, jax.Array],
    x1,
    x2=None,
    positions: Sequence[int] | None = None,
    method: str = "structured",
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    lengths1=None,
    lengths2=None,
    output: str = "numpy",
    path=None,
) -> np.ndarray | jax.Array:
    """Exact empirical NTK  K = J(x1) J(x2)^T  over the trainable parameters, in float64.

    Args:
      cfg, params: the model (any cell, layers and directions).
      x1: (n1, L1, d_x) sequences; x2: (n2, L2, d_x), or None for x2 = x1.
      positions: 0-based output positions kept on both sides; None means the paper's loss
        positions 1..L-1 of each input.
      method: "structured" (fast: docs/theory.md §2 for one Elman layer, readout "all", full lengths;
        §8 otherwise), "jacobian" (contracts autodiff Jacobians) or "ntvp" (kernel columns from vjp/jvp
        products). The last two are references.
      lengths1, lengths2: (n1,), (n2,) lengths of right-padded sequences (ints in [1, L]); None means
        full length. With readout "all" only the rows of real positions are kept.
      max_bytes: peak working-memory budget of the structured path (per device); it works in sample
        chunks sized to fit, and several devices compute max_bytes // 4 of output at a time.
      output: "numpy" (the whole kernel on this host), "sharded" (a global jax.Array split by rows over
        every device of every process) or "npy" (written to the .npy file `path`, returned memory-mapped
        read-only). With several devices or processes, each device computes the rows of its share of
        the samples of x1 (ntk_rnn.distributed; docs/theory.md §12).

    Returns:
      (n1 * P1 * d, n2 * P2 * d) float64 kernel, rows ordered (sample, position, unit); with readout
      "last" or "mean", (n1 * d, n2 * d), rows ordered (sample, unit), and positions must be None.
      With lengths, the rows of padded positions are left out.
    """
    params = check_params(cfg, params)
    pair = check_pair(cfg, x1, x2, positions, lengths1, lengths2)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    def panel(rows: slice, cols: slice | None, device: jax.Device) -> np.ndarray:
        return _kernel(cfg, jax.device_put(params, device), pair.block(rows, cols), method, max_bytes)

    return distribute(cfg, pair, lambda: _kernel(cfg, params, pair, method, max_bytes), panel, output, path,
                      max_bytes // 4)  # fmt: skip


def _kernel(cfg: RNNConfig, params: Params, pair: InputPair, method: str, max_bytes: int) -> np.ndarray:
    x1, x2, pos1, pos2, symmetric, len1, len2 = pair
    if method == "structured" and cfg.is_elman and cfg.readout == "all" and len1 is None and len2 is None:
        return _structured_ntk(cfg, params, x1, x2, pos1, pos2, symmetric, max_bytes)
    full1, full2 = full_lengths(x1, len1), full_lengths(x2, len2)
    if method == "structured":
        K = cell_ntk(cfg, params, x1, x2, full1, full2, pos1, pos2, symmetric, max_bytes)
    elif method == "jacobian":
        K = np.asarray(_jacobian_ntk(cfg, params, x1, x2, pos1, pos2, full1, full2))
    else:
        K = np.asarray(_ntvp_ntk(cfg, params, x1, x2, pos1, pos2, full1, full2))
    keep1 = real_rows(cfg, pos1, len1, x1.shape[0])
    keep2 = real_rows(cfg, pos2, len2, x2.shape[0])
    return K[np.ix_(keep1, keep2)] if not (keep1.all() and keep2.all()) else K


# ----------------------------------------------------------------------------- references


@partial(jax.jit, static_argnums=(0, 4, 5))
def _jacobian_ntk(cfg, params, x1, x2, pos1, pos2, lengths1, lengths2):
    theta = trainable(cfg, params)

    def flat_jacobian(x, pos, lengths):
        jac = jax.jacrev(output_fn(cfg, params, x, pos, lengths))(theta)
        return jnp.concatenate([j.reshape(j.shape[0], -1) for j in jax.tree.leaves(jac)], axis=1)

    return flat_jacobian(x1, pos1, lengths1) @ flat_jacobian(x2, pos2, lengths2).T


@partial(jax.jit, static_argnums=(0, 4, 5))
def _ntvp_ntk(cfg, params, x1, x2, pos1, pos2, lengths1, lengths2):
    theta = trainable(cfg, params)
    f1 = output_fn(cfg, params, x1, pos1, lengths1)
    f2, vjp2 = jax.vjp(output_fn(cfg, params, x2, pos2, lengths2), theta)

    def column(e):
        (cotangent,) = vjp2(e)
        return jax.jvp(f1, (theta,), (cotangent,))[1]

    eye = jnp.eye(f2.shape[0], dtype=f2.dtype)
    return jax.lax.map(column, eye, batch_size=min(64, f2.shape[0])).T


# ----------------------------------------------------------------------------- structured path


@dataclasses.dataclass(frozen=True)
class BackwardPlan:
    """Which backward vectors delta_{l,a} one input side needs (0-based l, a).

    The vectors are stored by distance s = l - a, and within a distance by sorted position, keeping
    only a <= l (causality) and a >= first: first = 1 when only W (and B) is trained, since the
    input to W at a = 0 is h_{-1} = 0, and first = 0 when A or b is.
    """

    positions: tuple[int, ...]  # sorted
    first: int
    starts: tuple[int, ...]  # starts[s]: first sorted position with l - s >= first

    @classmethod
    def build(cls, positions: tuple[int, ...], first: int) -> BackwardPlan:
        pos = tuple(sorted(positions))
        span = max(pos) - first + 1
        starts = tuple(next(i for i, p in enumerate(pos) if p - s >= first) for s in range(max(span, 0)))
        return cls(pos, first, starts)

    @property
    def position_of(self) -> np.ndarray:
        """Index into `positions` of each stored vector, shape (T,)."""
        return np.concatenate([np.arange(k, len(self.positions)) for k in self.starts] or [np.zeros(0, int)])

    @property
    def time_of(self) -> np.ndarray:
        """The step a of each stored vector, shape (T,)."""
        pos = np.asarray(self.positions)
        return np.concatenate([pos[k:] - s for s, k in enumerate(self.starts)] or [np.zeros(0, int)])

    @property
    def size(self) -> int:
        return sum(len(self.positions) - k for k in self.starts)


def _take(a: jax.Array, index: np.ndarray) -> jax.Array:
    """a[:, index] for a static index; a slice (no gather) when the index is a contiguous range."""
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return jax.lax.slice_in_dim(a, int(index[0]), int(index[0]) + index.size, axis=1)
    return a[:, index]


@partial(jax.jit, static_argnums=(0, 1))
def _backward_vectors(cfg: RNNConfig, plan: BackwardPlan, params: Params, x: jax.Array):
    """For the chunk x (c, L, d_x): the backward vectors delta_{i,l,a,k} = dy_{i,l,k}/dg_{i,a} of the
    plan's (l, a) pairs, (c, T, d, m); the features u_{i,a} whose inner products weight them,
    (c, L, F): [c_W h_{a-1}, c_A x_a, c_b] restricted to the trainable W, A, b; and h (c, L, m)."""
    g, h = hidden_states(cfg, params, x)
    dphi = activation_derivative(cfg, g)
    c = cfg.multipliers
    W, B = c["W"] * params["W"], c["B"] * params["B"]
    pos = np.asarray(plan.positions)
    blocks = []
    for s, start in enumerate(plan.starts):
        if s == 0:
            delta = _take(dphi, pos[start:])[:, :, None, :] * B[None, None, :, :]
        else:
            delta = delta[:, start - plan.starts[s - 1] :]
            delta = _take(dphi, pos[start:] - s)[:, :, None, :] * (delta @ W)
        blocks.append(delta)
    n, length, m = h.shape
    delta = jnp.concatenate(blocks, axis=1) if blocks else jnp.zeros((n, 0, cfg.output_dim, m), h.dtype)
    features = []
    if "W" in cfg.trainable:
        features.append(c["W"] * jnp.concatenate([jnp.zeros_like(h[:, :1]), h[:, :-1]], axis=1))
    if "A" in cfg.trainable:
        features.append(c["A"] * x)
    if "b" in cfg.trainable:
        features.append(jnp.full((n, length, 1), c["b"], h.dtype))
    features = jnp.concatenate(features, axis=2) if features else jnp.zeros((n, length, 0), h.dtype)
    return delta, features, h


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _pair_kernel(cfg: RNNConfig, plan1: BackwardPlan, plan2: BackwardPlan, c: int, factors1, start1, factors2, start2):
    """Kernel block between the c samples from start1 and the c samples from start2, (c, P1, d, c, P2, d),
    positions in sorted order:

    K[(i,l,k),(j,l',k')] = sum_{a,b} (delta_{i,l,a,k} . delta_{j,l',b,k'}) (u_{i,a} . u_{j,b})
                           + [B trained] [k = k'] c_B^2 (h_{i,l} . h_{j,l'}).
    """
    delta1, u1, h1 = (jax.lax.dynamic_slice_in_dim(a, start1, c) for a in factors1)
    delta2, u2, h2 = (jax.lax.dynamic_slice_in_dim(a, start2, c) for a in factors2)
    d = cfg.output_dim
    p1, p2 = len(plan1.positions), len(plan2.positions)
    out = jnp.zeros((c, p1, d, c, p2, d), h1.dtype)
    if plan1.size and plan2.size:
        t1, t2, m = plan1.size, plan2.size, delta1.shape[-1]
        gram = (delta1.reshape(-1, m) @ delta2.reshape(-1, m).T).reshape(c, t1, d, c, t2, d)
        uu = jnp.einsum("iaf,jbf->iajb", u1, u2)
        uu = uu[:, plan1.time_of][:, :, :, plan2.time_of]
        weighted = gram * uu[:, :, None, :, :, None]
        s1 = jax.nn.one_hot(plan1.position_of, p1, dtype=gram.dtype)
        s2 = jax.nn.one_hot(plan2.position_of, p2, dtype=gram.dtype)
        out = jnp.einsum("up,iukjvl,vq->ipkjql", s1, weighted, s2)
    if "B" in cfg.trainable:
        hh = jnp.einsum("ilm,jqm->iljq", h1[:, np.asarray(plan1.positions)], h2[:, np.asarray(plan2.positions)])
        out = out + cfg.multipliers["B"] ** 2 * jnp.einsum("iljq,kr->ilkjqr", hh, jnp.eye(d, dtype=hh.dtype))
    return out


GRAM_ROWS = 1024  # rows of backward vectors per chunk: big enough for efficient matrix products


def _chunk_size(n: int, t1: int, t2: int, d: int, m: int, length: int, max_bytes: int) -> int:
    """Samples per chunk: about GRAM_ROWS backward vectors (which also lets the symmetric case skip
    most lower blocks), halved until the pair working set fits in half of max_bytes."""

    def working_set(c: int) -> int:
        vectors = c * (t1 + t2) * d * m
        gram = 3 * (c * t1 * d) * (c * t2 * d)
        states = 6 * c * length * m
        return 8 * (vectors + gram + states)

    c = min(n, max(1, round(GRAM_ROWS / (max(t1, t2, 1) * d))))
    while c > 1 and working_set(c) > max_bytes // 2:
        c = math.ceil(c / 2)
    if working_set(c) > max_bytes // 2:
        raise ValueError(
            f"max_bytes={max_bytes} is too small: one sample needs about {working_set(1) * 2} bytes "
            f"(m={m}, {max(t1, t2)} backward vectors per sample); raise max_bytes"
        )
    return c


def _pad(x: jax.Array, c: int) -> jax.Array:
    """Zero-pad (n, L, d_x) along samples to a multiple of c (padded rows are computed, then dropped)."""
    pad = (-x.shape[0]) % c
    return jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x


def _factor_source(cfg: RNNConfig, plan: BackwardPlan, params: Params, x: jax.Array, c: int, keep: bool):
    """chunk index -> ((delta, u, h), offset of the chunk in them).

    With keep, the backward vectors of all samples are computed once, in one call (large matrix
    products); otherwise each chunk's are recomputed whenever a block needs them.
    """
    x = _pad(x, c)
    if keep:
        factors = _backward_vectors(cfg, plan, params, x)
        return lambda i: (factors, i * c)
    return lambda i: (_backward_vectors(cfg, plan, params, x[i * c : (i + 1) * c]), 0)


def _structured_ntk(cfg, params, x1, x2, pos1, pos2, symmetric, max_bytes) -> np.ndarray:
    n1, n2, d, m = x1.shape[0], x2.shape[0], cfg.output_dim, cfg.width
    first = 0 if {"A", "b"} & set(cfg.trainable) else 1
    plan1, plan2 = BackwardPlan.build(pos1, first), BackwardPlan.build(pos2, first)
    out = np.zeros((n1, len(pos1), d, n2, len(pos2), d))
    length = max(x1.shape[1], x2.shape[1])
    c = _chunk_size(max(n1, n2), plan1.size, plan2.size, d, m, length, max_bytes)
    keep = 8 * (n1 * plan1.size + n2 * plan2.size) * d * m + 8 * 3 * (n1 + n2) * length * m <= max_bytes // 2
    blocks1, blocks2 = math.ceil(n1 / c), math.ceil(n2 / c)
    pairs = [(bi, bj) for bi in range(blocks1) for bj in range(bi if symmetric else 0, blocks2)]
    factors1 = _factor_source(cfg, plan1, params, x1, c, keep)
    factors2 = factors1 if symmetric else _factor_source(cfg, plan2, params, x2, c, keep)
    blocks = ((bi, bj, np.asarray(_pair_kernel(cfg, plan1, plan2, c, *factors1(bi), *factors2(bj))))
              for bi, bj in pairs)  # fmt: skip
    for bi, bj, block in tqdm(blocks, total=len(pairs), desc="kernel blocks", delay=3.0, leave=False):
        r1, r2 = slice(bi * c, min((bi + 1) * c, n1)), slice(bj * c, min((bj + 1) * c, n2))
        block = block[: r1.stop - r1.start, :, :, : r2.stop - r2.start]
        out[r1, :, :, r2] = block
        if symmetric and bi != bj:
            out[r2, :, :, r1] = block.transpose(3, 4, 5, 0, 1, 2)
    # undo the sorting of positions
    rank1 = np.argsort(np.argsort(pos1))
    rank2 = np.argsort(np.argsort(pos2))
    out = out[:, rank1][:, :, :, :, rank2]
    return out.reshape(n1 * len(pos1) * d, n2 * len(pos2) * d)


def structured_flops(
    n1: int, n2: int, length: int, positions: tuple[int, ...], m: int, d: int, d_x: int, symmetric: bool
) -> float:
    """Floating-point operations of the structured path for the paper's kernel (W trained, readout "all"),
    equal-length inputs and no chunk padding.

    Counts the forward pass, the backward vectors (one m x m product per (l, a) pair with
    1 <= a < l), the Gram matrix of the vectors (its upper half only when x2 is x1), and the
    hidden-state Gram. The final contraction over (a, b) is O(T^2 P) and left out.
    """
    plan = BackwardPlan.build(positions, first=1)
    t = plan.size
    steps = sum(len(positions) - k for k in plan.starts[1:])
    forward = 2 * (n1 + (0 if symmetric else n2)) * length * (m * m + m * d_x)
    backward = 2 * (n1 + (0 if symmetric else n2)) * steps * d * m * m
    pairs = (n1 * t * d) * (n2 * t * d)
    gram = 2 * m * (pairs / 2 if symmetric else pairs)
    states = 2 * m * (n1 * length) * (n2 * length)
    return float(forward + backward + gram + states)
