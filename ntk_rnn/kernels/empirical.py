"""The exact empirical NTK of the RNN as a pure kernel function (empirical_ntk_fn) and its batched form
(empirical_ntk): a structured fast path (docs/theory.md §2, §8) and two autodiff references.

Rows and columns of every kernel are ordered by (sample, position, output unit) in C order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.batching.batch import Call, KernelFn, batch, bind_inputs
from ntk_rnn.kernels.structured import cell_block, cell_chunk, cell_factor_bytes, cell_factors, row_plan
from ntk_rnn.network.checks import Params, check_pair, check_params, check_positions, check_structure
from ntk_rnn.network.config import RNNConfig, base_name
from ntk_rnn.network.model import activation_derivative, full_lengths, hidden_states, output_fn, trainable

METHODS = ("structured", "jacobian", "ntvp")
"""The methods of empirical_ntk and empirical_ntk_fn: the structured path and two autodiff references."""


def bucket_width(m: int) -> int:
    """The width a kernel of width m is computed at: the next power of two (docs/theory.md §14)."""
    return 1 << (m - 1).bit_length()


def pads_exactly(cfg: RNNConfig) -> bool:
    """Whether zero-padding cfg to a wider network leaves every kernel unchanged: the padded units must stay 0
    (a built-in GRU or LSTM, or an Elman phi with phi(0) = 0), and in the "ntk" parameterization the
    multipliers that depend on m must be recoverable from the variances (one layer)."""
    if isinstance(cfg.cell, str) and cfg.cell != "elman":
        zero = True
    elif cfg.cell == "elman":
        zero = float(cfg.phi(jnp.zeros((), jnp.float64))) == 0.0
    else:
        zero = False
    return zero and not (cfg.parameterization == "ntk" and cfg.num_layers > 1)


def padded_config(cfg: RNNConfig, width: int) -> RNNConfig:
    """cfg at a larger width with the same multipliers: in "ntk", sigma_w2 and sigma_v2 (which enter as
    sigma^2 / m) scale by width / m."""
    if cfg.parameterization != "ntk":
        return cfg.replace(width=width)
    ratio = width / cfg.width
    return cfg.replace(width=width, sigma_w2=cfg.sigma_w2 * ratio, sigma_v2=cfg.sigma_v2 * ratio)


@partial(jax.jit, static_argnames="width")
def pad_params(cfg: RNNConfig, params: Mapping[str, jax.Array], width: int) -> Params:
    """params of cfg zero-padded to `width` units: each gate block of W, A, b, bh gets width - m zero rows, and
    each m-column block of W, B and the A of upper layers zero columns (bo is unchanged). One program per
    (width of cfg, width), on the device."""
    m, extra = cfg.width, width - cfg.width

    def pad_columns(value: jax.Array) -> jax.Array:  # (rows, j m) -> (rows, j width)
        blocks = value.reshape(value.shape[0], -1, m)
        return jnp.pad(blocks, ((0, 0), (0, 0), (0, extra))).reshape(value.shape[0], -1)

    out = {}
    for name, value in params.items():
        base = base_name(name)
        if base in ("B", "bo"):
            out[name] = pad_columns(value) if base == "B" else value
            continue
        if base == "W" or (base == "A" and name not in ("A", "A_reverse")):  # reads states
            value = pad_columns(value)
        padded = jnp.pad(value.reshape(-1, m, *value.shape[1:]), [(0, 0), (0, extra)] + [(0, 0)] * (value.ndim - 1))
        out[name] = padded.reshape(-1, *padded.shape[2:])
    return out


class ElmanFactors(NamedTuple):
    """One batch's factors on the one-layer Elman path (_backward_vectors)."""

    delta: jax.Array
    u: jax.Array
    h: jax.Array


class CellFactors(NamedTuple):
    """One batch's factors on the any-cell path (ntk_rnn.kernels.structured.cell_factors)."""

    kept: dict
    features: dict
    readin: dict
    real: jax.Array


class Inputs(NamedTuple):
    """One batch as it is, for the reference methods: x (n, L, d_x) and lengths (n,)."""

    x: jax.Array
    lengths: jax.Array


@dataclasses.dataclass(frozen=True)
class EmpiricalNTK(KernelFn):
    """The exact empirical NTK of cfg as a pure function (empirical_ntk_fn); `inner` is the config the
    kernel is computed at (cfg zero-padded to a bucket width where that is exact)."""

    cfg: RNNConfig
    positions: tuple[int, ...] | None
    method: str
    inner: RNNConfig

    def __call__(self, params: Mapping[str, jax.Array], x1, x2=None, *, lengths1=None, lengths2=None) -> jax.Array:
        """K = J(x1) J(x2)^T, (n1 R1, n2 R2) float64 (empirical_ntk_fn)."""
        return super().__call__(params, x1, x2, lengths1=lengths1, lengths2=lengths2)

    def bind(self, params, x1, x2=None, *, lengths1=None, lengths2=None) -> Call:
        check_structure(self.cfg, params)
        x1, x2, lengths1, lengths2 = bind_inputs(self.cfg, x1, x2, lengths1, lengths2)
        params = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        if self.inner.width != self.cfg.width:
            params = pad_params(self.cfg, params, width=self.inner.width)
        return Call(params, x1, x2, lengths1, lengths2)

    def features(self, params, x, lengths, positions, grid) -> ElmanFactors | CellFactors | Inputs:
        cfg = self.inner
        if self.method != "structured":
            return Inputs(x, full_lengths(x, lengths))
        if cfg.is_elman and cfg.readout == "all" and lengths is None:
            return ElmanFactors(*_backward_vectors(cfg, _elman_plan(cfg, positions), params, x))
        plan = row_plan(cfg, positions, x.shape[1], grid)
        return CellFactors(*cell_factors(cfg, plan, params, x, full_lengths(x, lengths)))

    def pair(self, params, f1, f2, pos1, pos2, grid) -> jax.Array:
        cfg = self.inner
        if isinstance(f1, ElmanFactors):
            return _pair_kernel(cfg, _elman_plan(cfg, pos1), _elman_plan(cfg, pos2), pos1, pos2, f1, f2)
        if isinstance(f1, CellFactors):
            return cell_block(cfg, row_plan(cfg, pos1, grid[0], grid), row_plan(cfg, pos2, grid[1], grid), f1, f2)
        reference = _jacobian_ntk if self.method == "jacobian" else _ntvp_ntk
        K = reference(cfg, params, f1.x, f2.x, pos1, pos2, f1.lengths, f2.lengths)
        return K.reshape(f1.x.shape[0], self.rows(pos1), f2.x.shape[0], self.rows(pos2))

    def feature_bytes(self, length: int, positions) -> int:
        cfg = self.inner
        if self.method != "structured":
            return super().feature_bytes(length, positions)
        if cfg.is_elman and cfg.readout == "all":
            plan = _elman_plan(cfg, positions)
            return 8 * (plan.size * cfg.output_dim * cfg.width + 3 * length * cfg.width)
        return cell_factor_bytes(cfg, row_plan(cfg, positions, length, (length, length)))

    def chunk_size(self, n: int, length1: int, length2: int, pos1, pos2, max_bytes: int) -> int:
        cfg = self.inner
        if self.method != "structured":
            return n  # the references compute in one piece
        if cfg.is_elman and cfg.readout == "all":
            t1, t2 = _elman_plan(cfg, pos1).size, _elman_plan(cfg, pos2).size
            return _chunk_size(n, t1, t2, cfg.output_dim, cfg.width, max(length1, length2), max_bytes)
        grid = (length1, length2)
        plan1, plan2 = row_plan(cfg, pos1, length1, grid), row_plan(cfg, pos2, length2, grid)
        return cell_chunk(n, plan1, plan2, cfg, max_bytes)


def empirical_ntk_fn(cfg: RNNConfig, *, positions: Sequence[int] | None = None,
                     method: str = "structured") -> EmpiricalNTK:  # fmt: skip
    """The exact empirical NTK of cfg as a pure function

        ntk(params, x1, x2=None, *, lengths1=None, lengths2=None) -> jax.Array,

    K = J(x1) J(x2)^T over the trainable parameters, (n1 P1 d, n2 P2 d) float64 with rows ordered (sample,
    position, unit), or (n1 d, n2 d) for readout "last" and "mean". x1: (n1, L1, d_x); x2: (n2, L2, d_x), or
    None for x2 = x1; lengths: (n,) ints in [1, L] of right-padded sequences, None for full length: the rows
    of padded positions are there and are zero. It composes with jax.jit, jax.vmap (over parameter sets or
    inputs) and jax.grad; the variances are data and the widths compile at a few bucket widths (docs/theory.md
    §14). It checks shapes only: values (finite, lengths in range) are the caller's to check, as
    ntk_rnn.empirical_ntk does before batching this function (ntk_rnn.batch).

    Args:
      cfg: the model (any cell, layers, directions and readout).
      positions: 0-based output positions kept on both sides; None means 1..L-1 of each input (readout "all");
        must be None for "last" and "mean".
      method: "structured" (docs/theory.md §2 and §8), or the references "jacobian" (contracted autodiff
        Jacobians) and "ntvp" (columns from vjp/jvp products).
    """
    if not isinstance(cfg, RNNConfig):
        raise TypeError(f"cfg must be an ntk_rnn.RNNConfig, got {type(cfg).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if positions is not None:
        if cfg.readout != "all":
            raise ValueError(f"positions does not apply to readout={cfg.readout!r} (one output per sequence)")
        positions = check_positions(positions, 2**62)
    inner = padded_config(cfg, bucket_width(cfg.width)) if pads_exactly(cfg) else cfg
    return EmpiricalNTK(cfg, positions, method, inner)


def empirical_ntk(
    cfg: RNNConfig,
    params: Mapping[str, jax.Array],
    x1,
    x2=None,
    positions: Sequence[int] | None = None,
    method: str = "structured",
    max_bytes: int | None = None,
    *,
    lengths1=None,
    lengths2=None,
    output: str = "numpy",
    path=None,
) -> np.ndarray | jax.Array:
    """Exact empirical NTK  K = J(x1) J(x2)^T  over the trainable parameters, in float64: the inputs checked
    once, then batch(empirical_ntk_fn(cfg, positions=positions, method=method)).

    Args:
      cfg: the model (any cell, layers and directions).
      params: its parameters, {name: array} as init_params returns.
      x1 (ArrayLike): (n1, L1, d_x) sequences.
      x2 (ArrayLike | None): (n2, L2, d_x) sequences, or None for x2 = x1.
      positions: 0-based output positions kept on both sides; None means the paper's loss
        positions 1..L-1 of each input.
      method: "structured", "jacobian" or "ntvp" (empirical_ntk_fn).
      max_bytes: working memory per device in bytes, as in ntk_rnn.batch; None derives it from the device.
      lengths1 (ArrayLike | None): (n1,) lengths of right-padded sequences (ints in [1, L1]); None means
        full length. With readout "all" only the rows of real positions are kept.
      lengths2 (ArrayLike | None): (n2,) lengths of x2's sequences, likewise.
      output: "numpy", "sharded" or "npy", as in ntk_rnn.batch.
      path (str | None): the .npy file of output "npy".

    Returns:
      The (n1 * P1 * d, n2 * P2 * d) float64 kernel, rows ordered (sample, position, unit); with readout
        "last" or "mean", (n1 * d, n2 * d), rows ordered (sample, unit), and positions must be None.
        With lengths, the rows of padded positions are left out.
    """
    params = check_params(cfg, params)
    pair = check_pair(cfg, x1, x2, positions, lengths1, lengths2)
    kernel = batch(empirical_ntk_fn(cfg, positions=positions, method=method), max_bytes=max_bytes, output=output,
                   path=path)  # fmt: skip
    if pair.symmetric:
        return kernel(params, pair.x1, lengths1=pair.lengths1)
    return kernel(params, pair.x1, pair.x2, lengths1=pair.lengths1, lengths2=pair.lengths2)


# ----------------------------------------------------------------------------- references


@partial(jax.jit, static_argnums=(4, 5))
def _jacobian_ntk(cfg, params, x1, x2, pos1, pos2, lengths1, lengths2):
    theta = trainable(cfg, params)

    def flat_jacobian(x, pos, lengths):
        jac = jax.jacrev(output_fn(cfg, params, x, pos, lengths))(theta)
        return jnp.concatenate([j.reshape(j.shape[0], -1) for j in jax.tree.leaves(jac)], axis=1)

    return flat_jacobian(x1, pos1, lengths1) @ flat_jacobian(x2, pos2, lengths2).T


@partial(jax.jit, static_argnums=(4, 5))
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


@partial(jax.jit, static_argnums=1)
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


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _pair_kernel(cfg: RNNConfig, plan1: BackwardPlan, plan2: BackwardPlan, pos1: tuple[int, ...],
                 pos2: tuple[int, ...], factors1, factors2) -> jax.Array:  # fmt: skip
    """Kernel block between two batches of factors, (c1, P1 d, c2, P2 d), rows in the order of pos1, pos2:

    K[(i,l,k),(j,l',k')] = sum_{a,b} (delta_{i,l,a,k} . delta_{j,l',b,k'}) (u_{i,a} . u_{j,b})
                           + [B trained] [k = k'] c_B^2 (h_{i,l} . h_{j,l'}).
    """
    delta1, u1, h1 = factors1
    delta2, u2, h2 = factors2
    c1, c2 = h1.shape[0], h2.shape[0]
    d = cfg.output_dim
    p1, p2 = len(plan1.positions), len(plan2.positions)
    out = jnp.zeros((c1, p1, d, c2, p2, d), h1.dtype)
    if plan1.size and plan2.size:
        t1, t2, m = plan1.size, plan2.size, delta1.shape[-1]
        gram = (delta1.reshape(-1, m) @ delta2.reshape(-1, m).T).reshape(c1, t1, d, c2, t2, d)
        uu = jnp.einsum("iaf,jbf->iajb", u1, u2)
        uu = uu[:, plan1.time_of][:, :, :, plan2.time_of]
        weighted = gram * uu[:, :, None, :, :, None]
        s1 = jax.nn.one_hot(plan1.position_of, p1, dtype=gram.dtype)
        s2 = jax.nn.one_hot(plan2.position_of, p2, dtype=gram.dtype)
        out = jnp.einsum("up,iukjvl,vq->ipkjql", s1, weighted, s2)
    if "B" in cfg.trainable:
        hh = jnp.einsum("ilm,jqm->iljq", h1[:, np.asarray(plan1.positions)], h2[:, np.asarray(plan2.positions)])
        out = out + cfg.multipliers["B"] ** 2 * jnp.einsum("iljq,kr->ilkjqr", hh, jnp.eye(d, dtype=hh.dtype))
    rank1, rank2 = np.argsort(np.argsort(pos1)), np.argsort(np.argsort(pos2))  # undo the sorting
    if not np.array_equal(rank1, np.arange(p1)):
        out = out[:, rank1]
    if not np.array_equal(rank2, np.arange(p2)):
        out = out[:, :, :, :, rank2]
    return out.reshape(c1, p1 * d, c2, p2 * d)


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


def _elman_plan(cfg: RNNConfig, positions: tuple[int, ...]) -> BackwardPlan:
    """The backward vectors one side needs: from step 0 when A or b is trained, else from step 1."""
    return BackwardPlan.build(positions, 0 if {"A", "b"} & set(cfg.trainable) else 1)


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
