"""The infinite-width NTK and NNGP kernels of the RNN as pure functions of the inputs and the variances
(limit_ntk_fn, nngp_fn), their batched forms (limit_ntk, nngp_kernel) and the forward covariances
(forward_kernels). The recursion they evaluate is ntk_rnn.kernels.recursion (docs/theory.md §3, §9, §14); gated
cells go through the per-unit process of ntk_rnn.kernels.unit_process (docs/theory.md §15)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.batching.batch import Call, KernelFn, batch, bind_inputs, check_max_bytes
from ntk_rnn.kernels.bidirectional import stacked_forward, stacked_kernel
from ntk_rnn.kernels.dual import DEFAULT_NODES, DEFAULT_RULE
from ntk_rnn.kernels.recursion import ForwardKernels, Laws, Recursion, check_limit, grid, recursion, scalar_kernel
from ntk_rnn.kernels.unit_process import DEFAULT_REPLICATES, DEFAULT_SAMPLES, Estimate, gated_limits
from ntk_rnn.network.checks import check_inputs, check_pair, check_positions
from ntk_rnn.network.config import VARIANCES, RNNConfig
from ntk_rnn.network.model import position_mask, real_rows


@dataclasses.dataclass(frozen=True)
class LimitKernel(KernelFn):
    """The infinite-width NTK or NNGP of cfg as a pure function of the inputs and the variances (limit_ntk_fn,
    nngp_fn); `kind` is "ntk" or "nngp", `nodes` and `rule` the quadrature (ntk_rnn.kernels.dual)."""

    cfg: RNNConfig
    positions: tuple[int, ...] | None
    kind: str
    nodes: int
    rule: str

    def __call__(self, x1, x2=None, *, lengths1=None, lengths2=None, sigma_w2=None, sigma_u2=None, sigma_b2=None,
                 sigma_v2=None) -> jax.Array:  # fmt: skip
        """The kernel, shaped like empirical_ntk_fn's (rows of padded positions zero); a variance left None is
        cfg's."""
        return super().__call__(x1, x2, lengths1=lengths1, lengths2=lengths2, sigma_w2=sigma_w2, sigma_u2=sigma_u2,
                                sigma_b2=sigma_b2, sigma_v2=sigma_v2)  # fmt: skip

    def bind(self, x1, x2=None, *, lengths1=None, lengths2=None, **variances) -> Call:
        x1, x2, lengths1, lengths2 = bind_inputs(self.cfg, x1, x2, lengths1, lengths2)
        if variances.get("sigma_b2") is not None and not self.cfg.has_bias:
            raise ValueError("sigma_b2 needs a model with biases: cfg.sigma_b2 = 0 means none")
        unknown = set(variances) - set(VARIANCES)
        if unknown:
            raise TypeError(f"unexpected arguments {sorted(unknown)}; the variances are {VARIANCES}")
        operands = {}
        for k in VARIANCES:
            value = variances.get(k)
            operands[k] = jnp.asarray(getattr(self.cfg, k) if value is None else value, jnp.float64)
        return Call(operands, x1, x2, lengths1, lengths2)

    def features(self, variances, x, lengths, positions, grid) -> tuple:
        return x, lengths

    def pair(self, variances, f1, f2, pos1, pos2, grid) -> jax.Array:
        # the program depends on the activation, quadrature, layers, directions, stacking, readout and output units:
        # the trainable set, parameterization, biases and width are constants of the recursion (data)
        cfg = jax.tree.unflatten(jax.tree.structure(self.cfg), [variances[k] for k in VARIANCES])
        rec = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), recursion(cfg, self.nodes, self.rule, self.kind))
        shape = (cfg.readout, cfg.bidirectional, _concat(cfg), cfg.output_dim)
        return _limit_block(rec, shape, *f1, *f2, pos1, pos2)

    def chunk_size(self, n, length1, length2, pos1, pos2, max_bytes) -> int:
        # the recursion's state per pair of sequences: (L1, L2) grids for readout "all", a row of L2 steps for
        # "mean", the diagonal for "last"; a few copies of each per layer
        steps = {"all": length1 * length2, "mean": length2, "last": min(length1, length2)}[self.cfg.readout]
        if _concat(self.cfg):  # the whole grid of every layer and direction (two diagonals for "last")
            steps = 2 * min(length1, length2) if self.cfg.readout == "last" else 2 * length1 * length2
        per_pair = 8 * 6 * self.cfg.num_layers * steps * (2 if self.cfg.bidirectional else 1)
        if per_pair > max_bytes // 2:
            raise ValueError(f"max_bytes={max_bytes} is too small: one pair of samples needs about {per_pair} bytes")
        return max(1, min(n, math.isqrt(max_bytes // 2 // per_pair)))


@partial(jax.jit, static_argnames=("shape", "pos1", "pos2"))
def _limit_block(rec: Recursion, shape: tuple[str, bool, bool, int], x1, len1, x2, len2, pos1, pos2) -> jax.Array:
    """The kernel between two batches, (n1, R1, n2, R2): the scalar kernel of both directions plus the output
    bias's term, rows of padded positions zeroed, expanded over output units ([k = k']). shape: (readout,
    bidirectional, stacking "concat" with several layers, output units)."""
    readout, bidirectional, concat, d = shape
    if concat:
        theta = stacked_kernel(rec, readout, x1, x2, pos1, pos2, len1, len2)
    else:
        theta = scalar_kernel(rec, readout, bidirectional, x1, x2, pos1, pos2, len1, len2)
    return _expand(theta + rec.omega_bo, readout, d, pos1, len1, pos2, len2)


def _expand(theta, readout: str, d: int, pos1, len1, pos2, len2) -> jax.Array:
    """A scalar kernel (n1, P1, n2, P2) ("all") or (n1, n2) as the kernel over output rows (n1, R1 d, n2, R2 d):
    rows of padded positions zeroed, [k = k'] between output units."""
    if readout != "all":
        theta = theta[:, None, :, None]
    else:
        real1 = position_mask(pos1, len1, theta.shape[0])
        real2 = position_mask(pos2, len2, theta.shape[2])
        theta = theta * real1[:, :, None, None] * real2[None, None]
    K = theta[:, :, None, :, :, None] * jnp.eye(d)[None, None, :, None, None, :]
    return K.reshape(K.shape[0], K.shape[1] * d, K.shape[3], K.shape[4] * d)


def _concat(cfg: RNNConfig) -> bool:
    """Upper layers read both directions (with one layer, "concat" is "separate")."""
    return cfg.stacking == "concat" and cfg.num_layers > 1


def limit_ntk_fn(cfg: RNNConfig, *, positions: Sequence[int] | None = None, nodes: int = DEFAULT_NODES,
                 rule: str = DEFAULT_RULE) -> LimitKernel:  # fmt: skip
    """The infinite-width NTK of cfg (limit_ntk) as a pure function

        kernel(x1, x2=None, *, lengths1=None, lengths2=None, sigma_w2=None, sigma_u2=None, sigma_b2=None,
               sigma_v2=None) -> jax.Array,

    shaped like empirical_ntk_fn(cfg)'s (rows of padded positions zero). The variances are arguments (None:
    cfg's): vmap it over a grid of them or differentiate it with respect to them; nothing is compiled anew
    when they change (docs/theory.md §14). positions, nodes, rule: as in limit_ntk.
    """
    return _limit_fn(cfg, positions, nodes, rule, "ntk")


def nngp_fn(cfg: RNNConfig, *, positions: Sequence[int] | None = None, nodes: int = DEFAULT_NODES,
            rule: str = DEFAULT_RULE) -> LimitKernel:  # fmt: skip
    """The infinite-width output covariance of cfg (nngp_kernel) as a pure function, called like
    limit_ntk_fn's."""
    return _limit_fn(cfg, positions, nodes, rule, "nngp")


def _limit_fn(cfg: RNNConfig, positions, nodes: int, rule: str, kind: str) -> LimitKernel:
    if not isinstance(cfg, RNNConfig):
        raise TypeError(f"cfg must be an ntk_rnn.RNNConfig, got {type(cfg).__name__}")
    check_limit(cfg, nodes, rule, kind)
    if positions is not None:
        if cfg.readout != "all":
            raise ValueError(f"positions does not apply to readout={cfg.readout!r} (one output per sequence)")
        positions = check_positions(positions, 2**62)
    return LimitKernel(cfg, positions, kind, nodes, rule)


def limit_ntk(cfg: RNNConfig, x1, x2=None, positions: Sequence[int] | None = None, *, lengths1=None, lengths2=None,
              nodes: int = DEFAULT_NODES, rule: str = DEFAULT_RULE, key: jax.Array | None = None,
              samples: int = DEFAULT_SAMPLES, replicates: int = DEFAULT_REPLICATES, max_bytes: int | None = None,
              output: str = "numpy", path=None) -> np.ndarray | jax.Array | Estimate:  # fmt: skip
    """Infinite-width NTK, shaped and ordered exactly like empirical_ntk(cfg, params, x1, x2, positions,
    lengths1=lengths1, lengths2=lengths2): for the Elman cell with any layers, directions and stacking and
    the biases bh, bo exactly, by a recursion (the inputs checked once, then batch(limit_ntk_fn(cfg, ...)));
    for the GRU and LSTM (and any cell whose W reads h_{t-1} and A reads x_t) as a Monte Carlo Estimate.

    Returns lim K/m for the "paper" and "standard" parameterizations (their kernels grow like m) and
    lim K for "ntk"; cfg.width plays no role. A trainable output bias bo adds [k = k'] (1 per pair of real
    rows of one unit) to lim K in "ntk"; in lim K/m it is 1/m -> 0. Readout "all": (n1 * P1 * d, n2 * P2 * d), rows
    (sample, position, unit), positions None meaning 1..L-1, only real positions kept with lengths;
    "last"/"mean": (n1 * d, n2 * d) with positions None. lengths1, lengths2: (n1,), (n2,) lengths of
    right-padded sequences, None for full length. Float64. `nodes` (per dimension) and `rule`
    ("trapezoid", "hermite"): the quadrature for activations without a closed form (accuracy table in
    ntk_rnn.kernels.dual). max_bytes, output, path: as in ntk_rnn.batch. The recursion and its constants: see the
    module docstring.

    Gated cells have no closed form: their limit is estimated over the per-unit Gaussian process
    (ntk_rnn.kernels.unit_process, docs/theory.md §15) and returned as Estimate(mean, stderr, samples,
    replicates), both arrays shaped as above. key (a jax.random key) is required; `samples` units in all, in
    `replicates` independent runs, buy accuracy: the standard error falls like samples^-1/2. In "paper" the unit
    is linear and the result exact (stderr 0, samples 0) wherever that run fits in max_bytes. max_bytes bounds
    the memory of one run (refused before any work); output and path do not apply.
    """
    if isinstance(cfg, RNNConfig) and cfg.cell != "elman":
        return _gated(cfg, "ntk", x1, x2, positions, lengths1, lengths2, key, samples, replicates, max_bytes,
                      output, path)  # fmt: skip
    _exact(key)
    return _batched(limit_ntk_fn(cfg, positions=positions, nodes=nodes, rule=rule), x1, x2, lengths1, lengths2,
                    max_bytes, output, path)  # fmt: skip


def nngp_kernel(cfg: RNNConfig, x1, x2=None, positions: Sequence[int] | None = None, *, lengths1=None,
                lengths2=None, nodes: int = DEFAULT_NODES, rule: str = DEFAULT_RULE, key: jax.Array | None = None,
                samples: int = DEFAULT_SAMPLES, replicates: int = DEFAULT_REPLICATES, max_bytes: int | None = None,
                output: str = "numpy", path=None) -> np.ndarray | jax.Array | Estimate:  # fmt: skip
    """Infinite-width output covariance at initialization, lim E[y(x1) y(x2)^T], shaped like limit_ntk.

    It is finite in every parameterization and is NOT divided by m: "paper" gives sigma_v2/d S
    (S = lim h.h' of the top layer), "standard" and "ntk" give sigma_v2 S (S = lim h.h'/m), summed over
    the directions; readouts, lengths and outputs as in limit_ntk. Gated cells: a Monte Carlo Estimate, with
    key, samples and replicates as in limit_ntk.
    """
    if isinstance(cfg, RNNConfig) and cfg.cell != "elman":
        return _gated(cfg, "nngp", x1, x2, positions, lengths1, lengths2, key, samples, replicates, max_bytes,
                      output, path)  # fmt: skip
    _exact(key)
    return _batched(nngp_fn(cfg, positions=positions, nodes=nodes, rule=rule), x1, x2, lengths1, lengths2,
                    max_bytes, output, path)  # fmt: skip


def _exact(key) -> None:
    if key is not None:
        raise ValueError("key applies to gated cells (a Monte Carlo limit); the Elman limit is exact: pass key=None")


def _gated(cfg: RNNConfig, kind: str, x1, x2, positions, lengths1, lengths2, key, samples, replicates, max_bytes,
           output, path) -> Estimate:  # fmt: skip
    """limit_ntk / nngp_kernel of a gated cell: the per-unit process's estimate, shaped like the exact kernels."""
    if key is None:
        raise ValueError(
            f"cell={cfg.cell_name!r} has no closed-form limit: it is estimated by Monte Carlo over the per-unit "
            "Gaussian process (docs/theory.md §15), so it needs key=jax.random.key(seed) (and optionally samples=)"
        )
    if output != "numpy" or path is not None:
        raise ValueError("output and path apply to the exact Elman limit; a gated cell's Estimate is NumPy arrays")
    pair = check_pair(cfg, x1, x2, positions, lengths1, lengths2)
    x2_in = None if pair.symmetric else np.asarray(pair.x2)
    len1, len2 = pair.lengths1, pair.lengths2
    lengths = (None if a is None else np.asarray(a) for a in (len1, len2))
    limits = gated_limits(cfg, np.asarray(pair.x1), x2_in, pair.pos1, pair.pos2, *lengths, key=key, samples=samples,
                          replicates=replicates, max_bytes=check_max_bytes(max_bytes))  # fmt: skip
    est = limits.ntk if kind == "ntk" else limits.nngp
    shift = Laws.of(cfg).omega_bo if kind == "ntk" else 0.0

    def shaped(theta: np.ndarray) -> np.ndarray:
        K = np.asarray(_expand(jnp.asarray(theta), cfg.readout, cfg.output_dim, pair.pos1, len1, pair.pos2, len2))
        n1, r1, n2, r2 = K.shape
        rows1, rows2 = real_rows(cfg, pair.pos1, len1, n1), real_rows(cfg, pair.pos2, len2, n2)
        return K.reshape(n1 * r1, n2 * r2)[rows1][:, rows2]

    return Estimate(shaped(est.mean + shift), shaped(est.stderr), est.samples, est.replicates)


def _batched(kernel: LimitKernel, x1, x2, lengths1, lengths2, max_bytes, output, path) -> np.ndarray | jax.Array:
    pair = check_pair(kernel.cfg, x1, x2, kernel.positions, lengths1, lengths2)
    batched = batch(kernel, max_bytes=max_bytes, output=output, path=path)
    if pair.symmetric:
        return batched(pair.x1, lengths1=pair.lengths1)
    return batched(pair.x1, pair.x2, lengths1=pair.lengths1, lengths2=pair.lengths2)


def forward_kernels(
    cfg: RNNConfig, x1, x2=None, *, layer: int = -1, nodes: int = DEFAULT_NODES, rule: str = DEFAULT_RULE
) -> ForwardKernels:
    """Limit covariances q (pre-activations), S (hidden states), k (derivatives) of one layer (0-based,
    default the top) of the forward direction, each (n1, L1, n2, L2), on full-length sequences.

    Normalization: lim of dot products for "paper", of dot products / m for "standard" and "ntk"
    (k is always a mean over units); see ForwardKernels.
    """
    if not -cfg.num_layers <= layer < cfg.num_layers:
        raise ValueError(f"layer must lie in [-{cfg.num_layers}, {cfg.num_layers}) for {cfg.num_layers} layers, "
                         f"got {layer}")  # fmt: skip
    x1 = check_inputs(cfg, x1, "x1")
    x2 = x1 if x2 is None else check_inputs(cfg, x2, "x2")
    rec = recursion(cfg, nodes, rule, "nngp")
    if _concat(cfg):
        return ForwardKernels(*(np.asarray(a) for a in stacked_forward(rec, x1, x2, layer % cfg.num_layers)))
    return ForwardKernels(*(np.asarray(a) for a in grid(rec, "forward", x1, x2, layer=layer % cfg.num_layers)))
