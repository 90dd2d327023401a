"""The infinite-width NNGP and NTK of gated cells (GRU, LSTM) by Monte Carlo over the per-unit Gaussian process
(docs/theory.md §15).

At infinite width every unit of a layer runs the cell's scalar recursion on its own Gaussian inputs, the rows of
W h_{t-1}, A x_t and the biases. Over the sequences i and steps t of one unit these are jointly Gaussian,
independent between matrices, gate blocks and units, with (in ntk_rnn.kernels.recursion's normalization)

    Cov[(W h)_{i,t}, (W h)_{j,t'}] = sigma_w2 S_{(i,t-1),(j,t'-1)},   S = lim h.h' (per unit: E[h_{i,t} h_{j,t'}]),
    Cov[(A x)_{i,t}, (A x)_{j,t'}] = su2 x_{i,t}.x_{j,t'}  (layer 1)  or  su2_up S^below  (layers >= 2),
    Cov[b, b] = sigma_b2 at every (i, t) (one draw per unit),

and S is the unit's own E[h_{i,t} h_{j,t'}]: a fixed point that is causal in time. Its state depends on all its
earlier inputs, so the expectations have no closed form; they are estimated by sampling P units step by step,
each step's Gaussians drawn conditionally on the unit's earlier ones, with the covariance that the samples of the
earlier steps give (a growing Cholesky factor over (step, sequence)).

The NTK is the same construction on the tangent (theory §15): with T = lim <dh, dh'> over the trainable
parameters (normalized like S), each input of a unit has a tangent whose parameter inner products are
deterministic,

    W-row: omega_W S_{t-1,t'-1} + sigma_w2 T_{t-1,t'-1},  A-row: omega_A x.x' (omega_A' S^below + su2_up T^below),
    b: omega_b,

so T = E[D T_inputs D'^T] with D the unit's Jacobian of h_{i,t} with respect to its inputs. That expectation is
the covariance of a forward-mode JVP of the unit's recursion driven by independent Gaussian tangents xi with
covariance T_inputs: the NTK is the NNGP of the (state, tangent) process. The readout gives

    NNGP = beta_nngp S,   NTK = beta S + c0 T (+ omega_bo),

summed over the directions, at the readout's steps (constants: ntk_rnn.kernels.recursion's table). "paper" sends
every pre-activation to 0 like m^-1/2: the unit runs the cell's linearization at 0 (sigmoid gates 1/2, tanh the
identity), which needs step(0, 0) = 0. A linear unit's state is linear in its Gaussian inputs, so there the process
runs once on the basis of the whole Gaussian space (one unit per basis vector) and the result is exact: stderr 0,
samples 0. That run has O(k n L) units; where it would not fit in max_bytes the Monte Carlo runs instead.

Accuracy. The estimate is the mean over `replicates` independent runs of samples / replicates units each, and its
standard error is their spread / sqrt(replicates): about c / sqrt(samples) relative, c = O(1). Each run is biased
by O(replicates / samples) (the covariances it samples with are estimates), below the error bar at the defaults.
Cost per run: O((n L)^3) for the factors, O((n L)^2 k P) for the draws (k gates, P units, n L = sequences x
steps); memory O((n L) k P + (n L)^2), checked against max_bytes before any work.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from tqdm.auto import tqdm

from ntk_rnn.kernels.recursion import Laws
from ntk_rnn.network.cells import Cell
from ntk_rnn.network.config import RNNConfig
from ntk_rnn.network.model import step_order

DEFAULT_SAMPLES = 8192
"""Units sampled in all by a gated cell's limit estimate (limit_ntk, nngp_kernel)."""
DEFAULT_REPLICATES = 8
"""Independent runs those units are split into; their spread gives the standard error."""
JITTER = 1e-10  # relative diagonal jitter of each conditional covariance (a perturbation far below the error bar)


class Estimate(NamedTuple):
    """A Monte Carlo kernel: its mean and the standard error of each entry (same shape), from `samples` units in
    all, split into `replicates` independent runs."""

    mean: np.ndarray
    stderr: np.ndarray
    samples: int
    replicates: int


class GatedLimits(NamedTuple):
    """The NTK and NNGP estimates of one run of the per-unit process (they share it)."""

    ntk: Estimate
    nngp: Estimate


class _Driven:
    """A weight as the unit sees it in the limit: `W @ v` and `z + b` return the unit's Gaussian input."""

    __slots__ = ("value",)

    def __init__(self, value: jax.Array):
        self.value = value

    def __matmul__(self, v) -> jax.Array:
        return self.value

    def __add__(self, other) -> jax.Array:
        return other + self.value

    __radd__ = __add__


def _cell_map(cell: Cell):
    """(inputs {name: (N, k P)}, states (N, f P)) -> new states: the cell step of every sequence, on P units."""

    def one(inputs, s):
        return cell.step({k: _Driven(v) for k, v in inputs.items()}, s, None)

    return jax.vmap(one)


@functools.partial(jax.jit, static_argnames=("cell", "linear"))
def _unit_step(cell: Cell, linear: bool, inputs, tangents, s, ts, real):
    """One step of the (state, tangent) process of P units on N sequences; `linear` runs the cell's
    linearization at 0 ("paper"). real (N,): whether the step is real (padded steps hold the state)."""
    f = _cell_map(cell)
    if linear:
        zeros = jax.tree.map(jnp.zeros_like, (inputs, s))
        new, tnew = jax.jvp(f, zeros, (inputs, s))[1], jax.jvp(f, zeros, (tangents, ts))[1]
    else:
        new, tnew = jax.jvp(f, (inputs, s), (tangents, ts))
    return jnp.where(real[:, None], new, s), jnp.where(real[:, None], tnew, ts)


def check_cell(cell: Cell, linear: bool) -> None:
    """Refuse a cell whose limit this module does not compute: every W must multiply h_{t-1} and every A the input
    x_t (then the unit's inputs are the Gaussians above); "paper" needs step(0, 0) = 0. Checked on a random probe."""
    m, dx = 3, 2
    k = jax.random.split(jax.random.key(0), 3)
    s, x = jax.random.normal(k[0], (cell.state_factor * m,)), jax.random.normal(k[1], (dx,))
    seen = {}

    class Recorder(_Driven):
        def __init__(self, name, value):
            super().__init__(value)
            self.name = name

        def __matmul__(self, v):
            seen[self.name] = v
            return self.value

    params = {"W": Recorder("W", jnp.zeros(cell.gates * m)), "A": Recorder("A", jnp.zeros(cell.gates * m))}
    try:
        cell.step(params, s, x)
    except (TypeError, ValueError, IndexError):
        seen.clear()
    if set(seen) != {"W", "A"} or not (np.array_equal(seen["W"], s[:m]) and np.array_equal(seen["A"], x)):
        raise ValueError(
            f"cell {cell.name!r}: the infinite-width limit here needs a step that uses params['W'] @ h with h the "
            "previous hidden state s[:m] and params['A'] @ x with x the input (as the built-in GRU and LSTM do)"
        )
    if linear:
        zero = cell.step({"W": _Driven(jnp.zeros(cell.gates * m)), "A": _Driven(jnp.zeros(cell.gates * m))},
                         jnp.zeros(cell.state_factor * m), x)  # fmt: skip
        if not np.allclose(zero, 0.0):
            raise ValueError(f"cell {cell.name!r}: the 'paper' limit linearizes the cell at 0, which needs "
                             f"step(0, 0) = 0; use parameterization='standard' or 'ntk'")  # fmt: skip


class _Draws:
    """The standard Gaussians behind a layer's unit inputs, (rows, blocks * units) per named input: random, a
    Monte Carlo over `units` units; or, for a linear unit ("paper"), the basis of the whole Gaussian space with one
    unit per basis vector (scaled by sqrt(units)), so that the units' mean products are the exact covariances.
    plan: {name: (rows, blocks)}, every input the layer will draw."""

    def __init__(self, plan: dict[str, tuple[int, int]], units: int | None, key: jax.Array):
        self.exact = units is None
        self.offsets, total = {}, 0
        for name, (rows, blocks) in plan.items():
            self.offsets[name] = total
            total += rows * blocks
        self.units = total if self.exact else units
        self.plan, self.keys = plan, dict(zip(plan, jax.random.split(key, len(plan)), strict=True))

    def rows(self, name: str, start: int, count: int) -> np.ndarray:
        """Rows start..start+count of input `name`, (count, blocks * units)."""
        rows, blocks = self.plan[name]
        if not self.exact:
            key = jax.random.fold_in(self.keys[name], start)
            return np.asarray(jax.random.normal(key, (count, blocks * self.units)))
        out = np.zeros((count, blocks, self.units))
        r = np.arange(count)
        for g in range(blocks):
            out[r, g, self.offsets[name] + g * rows + start + r] = math.sqrt(self.units)
        return out.reshape(count, -1)


class _Sampler:
    """Gaussian inputs of the units over the steps, (N, width) per step, drawn conditionally on the earlier steps
    through a growing lower-triangular factor of their covariance (rows ordered (step, sequence))."""

    def __init__(self, n: int, steps: int, width: int, draws: _Draws, name: str):
        self.n, self.width, self.draws, self.name = n, width, draws, name
        self.factor = np.zeros((n * steps, n * steps))
        self.z = np.zeros((n * steps, width))
        self.size = 0

    def draw(self, cov: np.ndarray) -> np.ndarray:
        """The next step's inputs; cov (N, size + N): covariance of the new rows with all rows so far and
        themselves."""
        k, n = self.size, self.n
        old, new = cov[:, :k], cov[:, k:]
        x = scipy.linalg.solve_triangular(self.factor[:k, :k], old.T, lower=True).T if k else old
        schur = new - x @ x.T
        scale = max(float(np.max(np.diag(new), initial=0.0)), 1e-300)
        for jitter in (JITTER, 1e3 * JITTER, 1e6 * JITTER):
            try:
                chol = np.linalg.cholesky(0.5 * (schur + schur.T) + jitter * scale * np.eye(n))
                break
            except np.linalg.LinAlgError:
                continue
        else:
            raise FloatingPointError("the per-unit process's covariance is not positive semi-definite")
        z = self.draws.rows(self.name, k, n)
        self.factor[k : k + n, :k], self.factor[k : k + n, k : k + n] = x, chol
        self.z[k : k + n] = z
        self.size = k + n
        return (x @ self.z[:k] if k else 0.0) + chol @ z


@dataclasses.dataclass
class _Layer:
    """One layer of one direction: unit states h (L, N, P) and tangents e (L, N, P), in real time."""

    h: np.ndarray
    e: np.ndarray


def _features(a: np.ndarray) -> np.ndarray:
    """(L, N, P) -> (L N, P) rows ordered (step, sequence)."""
    return a.reshape(-1, a.shape[-1])


def _gram(a: np.ndarray) -> np.ndarray:
    """The kernel of unit samples a (L, N, P): (L N, L N), rows ordered (step, sequence)."""
    f = _features(a)
    return f @ f.T / f.shape[1]


def _factor(cov: np.ndarray) -> np.ndarray:
    """F with F F^T = cov for a symmetric positive semi-definite cov (negative rounding clipped)."""
    values, vectors = np.linalg.eigh(0.5 * (cov + cov.T))
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def _reorder(a: np.ndarray, order: np.ndarray) -> np.ndarray:
    """a (L, N, ...) with a[order[i, t], i] at [t, i]: real time <-> a direction's scan order (an involution)."""
    return a[order.T, np.arange(order.shape[0])[None]]


def _run_layer(cell: Cell, linear: bool, laws: Laws, biases: tuple[str, ...], below, x, order, lengths,
               units: int | None, key) -> _Layer:  # fmt: skip
    """The (state, tangent) process of one layer and direction on `units` units (None: exact, on the basis of the
    inputs' Gaussian space; needs a linear unit). biases: the cell biases the model has ("b", "bh"); below: None
    (layer 1, reading x (N, L, d_x)) or the list of _Layer it reads (real time); order (N, L): its scan order;
    lengths (N,)."""
    n, steps = order.shape
    gates, bias_gates = cell.gates, cell.hidden_bias_gates
    real = np.arange(steps)[:, None] < lengths[None]  # (L, N) in scan order
    # inputs of A, drawn for all steps at once from a factor F of their covariance F F^T, in scan order
    if below is None:
        feats = _features(_reorder(np.swapaxes(x, 0, 1), order))  # (L N, d_x): x.x' = feats feats^T
        fwd, tan = math.sqrt(laws.su2) * feats, math.sqrt(laws.omega_a) * feats
    else:
        s_in = sum(_gram(_reorder(b.h, order)) for b in below)  # the state kernel of what the layer reads
        t_in = sum(_gram(_reorder(b.e, order)) for b in below)
        fwd, tan = _factor(laws.su2_up * s_in), _factor(laws.omega_a_up * s_in + laws.su2_up * t_in)
    plan = {"A": (fwd.shape[1], gates), "A'": (tan.shape[1], gates), "W": (n * (steps - 1), gates)}
    plan["W'"] = plan["W"]
    for name, blocks in (("b", gates), ("bh", bias_gates)):
        if name in biases:
            plan[name] = plan[name + "'"] = (1, blocks)
    draws = _Draws(plan, units, key)
    units = draws.units
    a_in = (fwd @ draws.rows("A", 0, fwd.shape[1])).reshape(steps, n, -1)
    a_tan = (tan @ draws.rows("A'", 0, tan.shape[1])).reshape(steps, n, -1)
    consts = {k: math.sqrt(laws.sb2) * draws.rows(k, 0, 1) for k in biases}
    omega = {"b": laws.omega_b, "bh": laws.omega_bh}
    tconsts = {k: math.sqrt(omega[k]) * draws.rows(k + "'", 0, 1) for k in biases}
    w_fwd, w_tan = (_Sampler(n, steps - 1, gates * units, draws, name) for name in ("W", "W'"))
    s = np.zeros((n, cell.state_factor * units))
    ts = np.zeros_like(s)
    h, e = np.zeros((steps, n, units)), np.zeros((steps, n, units))
    zeros = np.zeros((n, gates * units))
    for t in range(steps):
        if t == 0:
            uw, tw = zeros, zeros
        else:
            hp, ep = _features(h[:t]), _features(e[:t])  # steps 0..t-1: the covariance rows of steps 1..t
            sh, th = h[t - 1] @ hp.T / units, e[t - 1] @ ep.T / units
            uw = w_fwd.draw(laws.sw2 * sh)
            tw = w_tan.draw(laws.omega_w * sh + laws.sw2 * th)
        inputs = {"W": uw, "A": a_in[t]} | {k: np.broadcast_to(v, (n, v.size)) for k, v in consts.items()}
        tangents = {"W": tw, "A": a_tan[t]} | {k: np.broadcast_to(v, (n, v.size)) for k, v in tconsts.items()}
        s, ts = (np.asarray(a) for a in _unit_step(cell, linear, inputs, tangents, s, ts, real[t]))
        h[t], e[t] = s[:, :units], ts[:, :units]
    return _Layer(_reorder(h, order), _reorder(e, order))


def working_bytes(cfg: RNNConfig, sequences: int, steps: int, units: int) -> int:
    """Peak memory of one run on `sequences` sequences of `steps` steps with `units` units: every layer's states and
    tangents, the W samplers' factors and draws, the A inputs and the (N L)^2 kernels, 8 bytes each."""
    rows, k, dirs = sequences * steps, cfg.cell_spec.gates, len(cfg.directions)
    per_direction = 2 * rows * units * 2 + 2 * (rows * k * units + rows**2) + 2 * rows * k * units
    per_direction += rows * cfg.cell_spec.state_factor * units * 4
    return 8 * (dirs * per_direction + 4 * rows**2 + rows * (dirs * 2 * units + cfg.input_dim))


def exact_units(cfg: RNNConfig, sequences: int, steps: int) -> int:
    """Units of the exact run of a linear unit: the dimension of a layer's Gaussian inputs, forward and tangent
    (the upper layers', which read n L rows below, bound it)."""
    rows, k, kh = sequences * steps, cfg.cell_spec.gates, cfg.cell_spec.hidden_bias_gates
    reads = rows if cfg.num_layers > 1 else cfg.input_dim
    return 2 * (k * (reads + sequences * (steps - 1)) + k * cfg.has_bias + kh * cfg.hidden_bias)


def _readout(readout: str, layer: _Layer, lengths: np.ndarray, reverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """The vectors the readout multiplies, for the states and the tangents: (N, L, P) ("all") or (N, 1, P)."""
    n = lengths.shape[0]
    real = (np.arange(layer.h.shape[0])[:, None] < lengths[None])[..., None]  # (L, N, 1)
    out = []
    for a in (layer.h, layer.e):
        a = np.where(real, a, 0.0)
        if readout == "all":
            out.append(np.swapaxes(a, 0, 1))
        elif readout == "mean":
            out.append((a.sum(axis=0) / lengths[:, None])[:, None])
        else:
            at = np.zeros(n, int) if reverse else lengths - 1
            out.append(a[at, np.arange(n)][:, None])
    return out[0], out[1]


def _one_run(cfg: RNNConfig, laws: Laws, x: np.ndarray, lengths: np.ndarray, units: int | None, key) -> tuple:
    """One run of the process on the joint sequences: (NTK, NNGP), each (N, R, N, R) with R = L ("all") or 1;
    units None: the exact run of a linear unit ("paper")."""
    cell, linear = cfg.cell_spec, cfg.parameterization == "paper"
    biases = tuple(k for k, on in (("b", cfg.has_bias), ("bh", cfg.hidden_bias)) if on)
    n, steps = x.shape[:2]
    orders = {d: np.broadcast_to(step_order(jnp.asarray(lengths)[:, None], steps, d == "_reverse"), (n, steps))
              for d in cfg.directions}  # fmt: skip
    below, keys = None, iter(jax.random.split(key, cfg.num_layers * 2))
    for _ in range(cfg.num_layers):
        current = {}
        for d in cfg.directions:
            reads = None if below is None else (list(below.values()) if cfg.stacking == "concat" else [below[d]])
            current[d] = _run_layer(cell, linear, laws, biases, reads, x, orders[d], lengths, units, next(keys))
        below = current
    ntk = nngp = 0.0
    for d, layer in below.items():
        rh, re = _readout(cfg.readout, layer, lengths, d == "_reverse")
        count = rh.shape[-1]
        s, t = np.einsum("iap,jbp->iajb", rh, rh) / count, np.einsum("iap,jbp->iajb", re, re) / count
        ntk, nngp = ntk + laws.beta * s + laws.c0 * t, nngp + laws.beta_nngp * s
    return ntk, nngp


def gated_limits(cfg: RNNConfig, x1: np.ndarray, x2: np.ndarray | None, pos1, pos2, lengths1, lengths2, *,
                 key: jax.Array, samples: int, replicates: int, max_bytes: int) -> GatedLimits:  # fmt: skip
    """The infinite-width NTK and NNGP of cfg between checked inputs x1 (n1, L1, d_x) and x2 (None: x1), as
    scalar kernels: (n1, P1, n2, P2) at positions pos1, pos2 for readout "all", else (n1, n2); lengths (n,) int
    arrays or None. The NTK excludes the output bias's omega_bo. samples, replicates: module docstring."""
    if not isinstance(samples, int) or isinstance(samples, bool) or not isinstance(replicates, int) or replicates < 2:
        raise ValueError(f"samples and replicates must be ints with replicates >= 2, got {samples!r}, {replicates!r}")
    if samples < 2 * replicates:
        raise ValueError(f"samples={samples} must be at least 2 * replicates = {2 * replicates}")
    check_cell(cfg.cell_spec, cfg.parameterization == "paper")
    n1 = x1.shape[0]
    steps = x1.shape[1] if x2 is None else max(x1.shape[1], x2.shape[1])
    parts = [(x1, lengths1)] if x2 is None else [(x1, lengths1), (x2, lengths2)]
    x = np.concatenate([np.pad(np.asarray(a), ((0, 0), (0, steps - a.shape[1]), (0, 0))) for a, _ in parts])
    lengths = np.concatenate([np.full(a.shape[0], a.shape[1]) if n is None else np.asarray(n) for a, n in parts])
    # a linear unit ("paper"): one exact run on the basis of its Gaussian inputs, where that fits in max_bytes
    exact = cfg.parameterization == "paper"
    exact = exact and working_bytes(cfg, x.shape[0], steps, exact_units(cfg, x.shape[0], steps)) <= max_bytes
    units = exact_units(cfg, x.shape[0], steps) if exact else samples // replicates
    need = working_bytes(cfg, x.shape[0], steps, units)
    if need > max_bytes:
        raise ValueError(
            f"the per-unit process of {x.shape[0]} sequences of {steps} steps with samples // replicates = {units} "
            f"units per run needs about {need / 2**30:.2f} GiB, over max_bytes = {max_bytes / 2**30:.2f} GiB: "
            f"use more replicates (fewer units per run), fewer sequences, or a larger max_bytes"
        )
    laws = Laws.of(cfg)
    if exact:
        units, replicates = None, 1
    keys = tqdm(
        jax.random.split(key, replicates), desc="per-unit process runs", delay=3.0, leave=False, disable=replicates == 1
    )
    runs = [_one_run(cfg, laws, x, lengths, units, k) for k in keys]
    rows2 = slice(0, n1) if x2 is None else slice(n1, None)
    out = []
    for which in range(2):
        stack = np.stack([r[which][:n1, :, rows2] for r in runs])  # (R, n1, L|1, n2, L|1)
        all_steps = cfg.readout == "all"
        stack = stack[:, :, np.asarray(pos1)][..., np.asarray(pos2)] if all_steps else stack[:, :, 0, :, 0]
        mean = stack.mean(axis=0)
        stderr = np.zeros_like(mean) if units is None else stack.std(axis=0, ddof=1) / math.sqrt(replicates)
        out.append(Estimate(mean, stderr, 0 if units is None else units * replicates, replicates))
    return GatedLimits(*out)
