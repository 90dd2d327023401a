"""The structured empirical NTK of any cell, layer count and direction, on sequences of any lengths
(docs/theory.md §8).

Every tied weight V enters step t once, as z = c_V V v_t, so dy_o/dV = sum_t delta_{o,t} (c_V v_t)^T with
delta_{o,t} = dy_o/dz_t, and

    K[o, o'] = sum_V sum_{t,t'} (delta_{o,t} . delta_{o',t'}) c_V^2 (v_t . v'_t') + [B] [k = k'] c_B^2 r_o . r'_o'
               + [bo] [k = k'] c_bo^2,

r_o the vector the readout multiplies, k and k' the output units of rows o and o'. All delta_{o,t} of one output row
o come from one reverse pass with zero taps eps_t added to z_t (jax.vjp, vmapped over the rows). For the forward
direction and readout "all", causality (delta_{o,t} = 0 for t after o's position) drops more than half of the (o, t)
pairs (not below the top layer of a "concat" stack, whose reverse direction reads every step).

The double sum over (t, t') costs L1 L2 (k m + f) per pair of rows (f = the features' width). For a
per-sequence readout ("last", "mean") there are few rows, and where it is cheaper the per-row Jacobian
G_o = sum_t delta_{o,t} (c_V v_t)^T (k m, f) is formed once per row and contracted, k m f per pair: on
long sequences this is what keeps the kernel linear in L.

Rows are ordered (sample, position, unit) over every position of the padded sequences (rows of padded
positions are zero). ntk_rnn.kernels.empirical builds its kernel function on cell_factors and cell_block;
ntk_rnn.batching.batch chunks it.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.network.cells import CELL_WEIGHTS
from ntk_rnn.network.checks import Params
from ntk_rnn.network.config import RNNConfig, base_name
from ntk_rnn.network.model import position_mask, sequence_outputs

GRAM_ROWS = 2048  # (sample, row, step) triples per chunk side: large, efficient matrix products


@dataclasses.dataclass(frozen=True)
class RowPlan:
    """The output rows of one input side and the (row, step) pairs that can be nonzero.

    positions: 0-based output positions (readout "all") or None (one output per sequence); rows are
    (position, unit) pairs in C order, R = P d (or d). For a weight of the forward direction with
    readout "all", only steps t <= the row's position are kept; otherwise every step.
    """

    positions: tuple[int, ...] | None
    output_dim: int
    length: int
    summed: tuple[str, ...] = ()  # the groups whose per-row Jacobian is formed (see _summed_groups)

    @property
    def rows(self) -> int:
        return (1 if self.positions is None else len(self.positions)) * self.output_dim

    def pairs(self, causal: bool) -> tuple[np.ndarray, np.ndarray]:
        """(row index, step) of the kept pairs, each (T,)."""
        rows, steps = np.meshgrid(np.arange(self.rows), np.arange(self.length), indexing="ij")
        if causal and self.positions is not None:
            position = np.repeat(np.asarray(self.positions), self.output_dim)
            keep = steps <= position[:, None]
            return rows[keep], steps[keep]
        return rows.ravel(), steps.ravel()


def _causal(cfg: RNNConfig, name: str) -> bool:
    """Whether output rows at position p see the weight only at steps t <= p: a forward weight with readout
    "all", except below the top layer with stacking "concat", whose reverse direction reads every step."""
    if cfg.readout != "all" or name.endswith("_reverse"):
        return False
    return cfg.stacking == "separate" or name[len(base_name(name)) :] == cfg.layers[-1]


def _tapped_names(cfg: RNNConfig) -> tuple[str, ...]:
    return tuple(k for k in cfg.trainable_names if base_name(k) in CELL_WEIGHTS)


def _groups(cfg: RNNConfig) -> dict[str, tuple[str, ...]]:
    """{owner: trained members}: the trained cell weights of each layer and direction grouped by the cell's
    shared pre-activations (Cell.shared); the owner's tap carries the group's backward vectors."""
    trained, groups = _tapped_names(cfg), {}
    for name in trained:
        base = base_name(name)
        suffix = name[len(base) :]
        members = tuple(k + suffix for k in cfg.cell_spec.group_of(base) if k + suffix in trained)
        groups.setdefault(members[0], members)
    return groups


def row_plan(cfg: RNNConfig, positions, length: int, grid: tuple[int, int]) -> RowPlan:
    """The RowPlan of one side of a kernel over the (L1, L2) grid of padded lengths."""
    return RowPlan(positions, cfg.output_dim, length, _summed_groups(cfg, *grid))


@partial(jax.jit, static_argnums=1)
def cell_factors(cfg: RNNConfig, plan: RowPlan, params: Params, x: jax.Array, lengths: jax.Array):
    """For a chunk x (c, L, d_x) with lengths (c,): the backward vectors of the kept (row, step) pairs
    {owner: (c, T, k m)}, the features of each group's members side by side {owner: (c, L, f)}, and the
    readout inputs {direction: (c, R', m)} (R' = P, or 1 for a per-sequence readout), and the mask of real
    positions (c, R')."""
    groups = _groups(cfg)
    shapes = cfg.param_shapes
    n, length = x.shape[:2]
    taps = {k: jnp.zeros((n, length, shapes[k][0]), x.dtype) for k in _tapped_names(cfg)}
    owned = {k: taps.pop(k) for k in groups}  # the others only record their features

    def outputs(owned):
        y, readin, features = jax.vmap(partial(sequence_outputs, cfg, params))(x, lengths, {**taps, **owned})
        if plan.positions is not None:
            y = y[:, np.asarray(plan.positions)]
        return y.reshape(n, -1), (readin, features)

    y, pullback, (readin, features) = jax.vjp(outputs, owned, has_aux=True)
    eye = jnp.eye(plan.rows, dtype=x.dtype)
    deltas = jax.vmap(lambda e: pullback(jnp.broadcast_to(e, y.shape))[0])(eye)  # {owner: (R, c, L, k m)}
    features = {k: jnp.concatenate([features[member] for member in members], axis=-1) for k, members in groups.items()}
    kept = {}
    for k in groups:
        if k in plan.summed:  # G (c, R, k m, f)
            kept[k] = jnp.einsum("rilk,ilf->irkf", deltas[k], features.pop(k))
        else:
            rows, steps = plan.pairs(_causal(cfg, k))
            kept[k] = jnp.moveaxis(deltas[k], 1, 0)[:, rows, steps]
    if plan.positions is not None:
        readin = {d: r[:, np.asarray(plan.positions)] for d, r in readin.items()}
    else:
        readin = {d: r[:, None] for d, r in readin.items()}
    real = position_mask(plan.positions, lengths, n).reshape(n, -1)
    return kept, features, readin, real


@partial(jax.jit, static_argnums=(1, 2))
def cell_block(cfg: RNNConfig, plan1: RowPlan, plan2: RowPlan, factors1, factors2) -> jax.Array:
    """The kernel between two chunks, (c1, R1, c2, R2)."""
    kept1, feats1, readin1, real1 = factors1
    kept2, feats2, readin2, real2 = factors2
    c1, c2 = next(iter(readin1.values())).shape[0], next(iter(readin2.values())).shape[0]
    out = jnp.zeros((c1, plan1.rows, c2, plan2.rows), jnp.float64)
    for k in kept1:
        if k in plan1.summed:
            out = out + jnp.einsum("irkf,jskf->irjs", kept1[k], kept2[k])
            continue
        rows1, steps1 = plan1.pairs(_causal(cfg, k))
        rows2, steps2 = plan2.pairs(_causal(cfg, k))
        d1, d2 = kept1[k], kept2[k]
        gram = (d1.reshape(-1, d1.shape[-1]) @ d2.reshape(-1, d2.shape[-1]).T).reshape(c1, rows1.size, c2, rows2.size)
        uu = jnp.einsum("itf,juf->itju", feats1[k], feats2[k])[:, steps1][:, :, :, steps2]
        s1 = jax.nn.one_hot(rows1, plan1.rows, dtype=gram.dtype)
        s2 = jax.nn.one_hot(rows2, plan2.rows, dtype=gram.dtype)
        out = out + jnp.einsum("ur,iujv,vs->irjs", s1, gram * uu, s2)
    if "B" in cfg.trainable:
        d = cfg.output_dim
        eye = jnp.eye(d, dtype=out.dtype)
        for direction in cfg.directions:
            c_b = cfg.multipliers["B" + direction]
            rr = jnp.einsum("ipm,jqm->ipjq", readin1[direction], readin2[direction])
            rr = jnp.einsum("ipjq,kl->ipkjql", rr, eye).reshape(out.shape)
            out = out + c_b**2 * rr
    if "bo" in cfg.trainable:  # dy/dbo = c_bo I at real positions
        eye = jnp.eye(cfg.output_dim, dtype=out.dtype)
        ones = jnp.einsum("ip,jq,kl->ipkjql", real1, real2, eye).reshape(out.shape)
        out = out + cfg.multipliers["bo"] ** 2 * ones
    return out


def _summed_groups(cfg: RNNConfig, length1: int, length2: int) -> tuple[str, ...]:
    """The groups whose per-row Jacobian is formed: with a per-sequence readout, those where contracting
    it (k m f per pair of rows) costs less than the step-by-step Gram (L1 L2 (k m + f))."""
    if cfg.readout == "all":
        return ()
    shapes = cfg.param_shapes
    summed = []
    for owner, members in _groups(cfg).items():
        km, f = shapes[owner][0], sum(map(cfg.fan_in, members))
        if length1 * length2 * (km + f) > km * f:
            summed.append(owner)
    return tuple(summed)


def cell_chunk(n: int, plan1: RowPlan, plan2: RowPlan, cfg: RNNConfig, max_bytes: int) -> int:
    """Samples per chunk: about GRAM_ROWS Gram rows ((sample, row, step) triples, or (sample, row) pairs
    when every group's Jacobian is summed), halved until the working set of the backward vectors (all
    rows, every step), the per-row Jacobians and the Gram fits in half of max_bytes."""
    widths = sum(cfg.param_shapes[k][0] for k in _groups(cfg))
    triples = max(plan1.rows * plan1.length, plan2.rows * plan2.length, 1)
    stepwise = any(k not in plan1.summed for k in _groups(cfg))
    gram_rows = triples if stepwise else max(plan1.rows, plan2.rows)

    def working_set(c: int) -> int:
        vectors = 3 * c * triples * widths  # all rows of the reverse pass, and the kept pairs of both sides
        vectors += 2 * c * sum(_summed_bytes(cfg, plan, 1) for plan in (plan1, plan2)) // 8
        gram = 3 * (c * gram_rows) ** 2
        states = 8 * c * max(plan1.length, plan2.length) * cfg.width * cfg.cell_spec.state_factor * cfg.num_layers
        return 8 * (vectors + gram + states)

    c = min(n, max(1, round(GRAM_ROWS / gram_rows)))
    while c > 1 and working_set(c) > max_bytes // 2:
        c = math.ceil(c / 2)
    if working_set(c) > max_bytes // 2:
        raise ValueError(f"max_bytes={max_bytes} is too small: one sample needs about {2 * working_set(1)} bytes; "
                         f"raise max_bytes")  # fmt: skip
    return c


def _summed_bytes(cfg: RNNConfig, plan: RowPlan, n: int) -> int:
    """Bytes of n samples' per-row Jacobians G."""
    groups, shapes = _groups(cfg), cfg.param_shapes
    return 8 * n * plan.rows * sum(shapes[k][0] * sum(map(cfg.fan_in, groups[k])) for k in plan.summed)


def cell_factor_bytes(cfg: RNNConfig, plan: RowPlan) -> int:
    """Bytes of one sample's factors: kept backward vectors or per-row Jacobians, features and readout inputs."""
    shapes, total = cfg.param_shapes, _summed_bytes(cfg, plan, 1) // 8
    for k, members in _groups(cfg).items():
        if k not in plan.summed:
            total += plan.pairs(_causal(cfg, k))[0].size * shapes[k][0] + plan.length * sum(map(cfg.fan_in, members))
    readout_rows = 1 if plan.positions is None else len(plan.positions)
    return 8 * (total + len(cfg.directions) * readout_rows * cfg.width)
