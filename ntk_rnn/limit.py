"""The infinite-width NTK and NNGP kernels of the RNN (docs/theory.md §3), for every RNNConfig option.

Tensor Programs II (Yang 2020) makes the "gradient independence" calculation exact for weight-tied
RNNs, so the limits follow from one recursion over the (a, b) time grid of two sequences i, j.

Forward (q: pre-activation covariance, S: hidden-state covariance, k: derivative covariance):
    q_ab = sigma_w2 S_{a-1,b-1} + sigma_u2 x_{i,a}.x_{j,b} / nu + sigma_b2,      S_{-1,*} = 0,
    S_ab = V_phi(q_aa(i,i), q_ab, q_bb(j,j)),   k_ab = V_phi'(same),            (ntk_rnn.dual)
with nu = 1 for "paper" and nu = d_x otherwise. Normalization: "paper" has vectors of norm O(1), so
q = lim g_i.g_j and S = lim h_i.h_j (this needs phi(c u) = c phi(u), c > 0: relu, linear); "standard"
and "ntk" have coordinates O(1), so q = lim g_i.g_j / m and S = lim h_i.h_j / m; in all three
k = lim (1/m) sum_r phi'(g_{i,a,r}) phi'(g_{j,b,r}).

Backward. With delta_{i,l,a} = dy_{i,l,k}/dg_{i,a}, E[delta_{i,l,a}.delta_{j,l',b}] vanishes unless
l - a = l' - b = s, and is [k = k'] P_s with P_0 = c0 k_{l,l'}, P_s = P_{s-1} sigma_w2 k_{l-s,l'-s}
(one step multiplies by c_W^2 Var(W) m = sigma_w2 in every parameterization); c0 = c_B^2 Var(B) m is
sigma_v2 m / d ("paper") or sigma_v2 ("standard", "ntk"). The output at step l (readout "all") has
    Theta_{l,l'} = sum_{s=0}^{min(l,l')} P_s F_{l-s,l'-s} + beta S_{l,l'},
    F_ab = omega_W S_{a-1,b-1} + omega_A x_{i,a}.x_{j,b} + omega_b,
computed as G_{l,l'} = k_{l,l'} (F_{l,l'} + sigma_w2 G_{l-1,l'-1}), Theta = c0 G + beta S. The
weights of each trainable parameter (0 for frozen ones), after the normalization of the result:

    parameterization | result  | c0          | omega_W | omega_A     | omega_b  | beta (B)
    "paper"          | lim K/m | sigma_v2/d  | 1       | 1           | 1        | 0
    "standard"       | lim K/m | sigma_v2    | 1       | 0           | 0        | 1
    "ntk"            | lim K   | sigma_v2    | sigma_w2| sigma_u2/d_x| sigma_b2 | sigma_v2

(in "paper" the B-gradient is O(1) against O(m) for the rest; in "standard" the A- and b-gradients are).
Readout "last" is Theta_{L1-1,L2-1}; readout "mean" is the mean of Theta over all (l, l') pairs,
since its Jacobian is the mean of the per-step Jacobians. Different output units never correlate.

"paper" with a non-homogeneous phi: pre-activations are O(m^-1/2) per coordinate, so a phi with
phi(0) = 0 that is differentiable at 0 acts as its linearization phi'(0) u; the limit is the linear
RNN with gain phi'(0) (1 for tanh, 2/sqrt(pi) for erf). Any positively homogeneous callable (leaky
relu, abs) keeps its own dual transforms, by quadrature. Other activations are refused for "paper"
(paper_scale_activation says why).

Cost: O(n1 n2 L1 L2) dual evaluations in one lax.scan over the steps of x1, vectorized over samples
and the steps of x2 (memory O(n1 n2 L1 L2) for readout "all" and "forward_kernels", O(n1 n2 L2) for
"mean"); readout "last" needs only the diagonal a - b = L1 - L2: O(n1 n2 min(L1, L2)). Quadrature (tanh,
callables) multiplies the per-point cost by nodes^2 (4096 at the default). Timings: benchmarks/bench_limit.py.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.checks import check_inputs, check_pair
from ntk_rnn.config import ACTIVATIONS, RNNConfig
from ntk_rnn.dual import DEFAULT_NODES, DEFAULT_RULE, dual_pair, normal_rule, resolve

HOMOGENEOUS = ("relu", "linear")  # phi(c u) = c phi(u) for c > 0: their "paper" limit is not degenerate
LINEARIZED_GAIN = {"tanh": 1.0, "erf": 2 / math.sqrt(math.pi)}  # phi'(0) of smooth phi with phi(0) = 0
_PROBE = np.linspace(-3.0, 3.0, 61)  # where a callable is tested for homogeneity


def paper_scale_activation(activation) -> tuple[str | Callable[[jax.Array], jax.Array], float]:
    """(activation for the dual transforms, gain^2) of phi in the "paper" parameterization's limit.

    There every pre-activation coordinate is O(m^-1/2). A positively homogeneous phi (phi(c u) =
    c phi(u), c > 0, checked numerically on [-3, 3]) keeps its own transforms; otherwise phi must have
    phi(0) = 0 and phi'(0) != 0, and acts as the linear map u -> phi'(0) u: ("linear", phi'(0)^2).
    """
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", "custom")
    if isinstance(activation, str) and activation in LINEARIZED_GAIN:
        return "linear", LINEARIZED_GAIN[activation] ** 2
    phi = ACTIVATIONS[activation] if isinstance(activation, str) else activation
    u = jnp.asarray(_PROBE)
    values = np.asarray(phi(u), dtype=float)
    if all(np.allclose(np.asarray(phi(c * u)), c * values, rtol=1e-10, atol=1e-12) for c in (0.25, 3.0)):
        return resolve(activation), 1.0
    at_zero, slope = (float(v) for v in jax.value_and_grad(lambda t: phi(t))(jnp.float64(0.0)))
    if at_zero != 0.0 or slope == 0.0 or not math.isfinite(slope):
        raise ValueError(
            f"the 'paper' parameterization sends pre-activations to 0 like m^-1/2, so its limit needs a "
            f"positively homogeneous activation, or one with phi(0) = 0 and phi'(0) != 0 (which then acts as "
            f"phi'(0) u); activation {name!r} has phi(0) = {at_zero:g}, phi'(0) = {slope:g}. "
            f"Use parameterization='standard' or 'ntk'."
        )
    return "linear", slope**2


class ForwardKernels(NamedTuple):
    """Limit forward covariances, each (n1, L1, n2, L2), indexed [i, a, j, b] (0-based steps).

    q: pre-activations g; S: hidden states h; k: activation derivatives phi'(g). Normalization (see
    the module docstring): "paper" q = lim g.g', S = lim h.h'; "standard"/"ntk" q = lim g.g'/m,
    S = lim h.h'/m; always k = lim (1/m) phi'(g).phi'(g').
    """

    q: np.ndarray
    S: np.ndarray
    k: np.ndarray


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["gain2", "sw2", "su2", "sb2", "c0", "omega_w", "omega_a", "omega_b", "beta"],
    meta_fields=["activation", "nodes", "rule"],
)
@dataclasses.dataclass(frozen=True)
class _Recursion:
    """The recursion's constants: a pytree whose numbers are traced (no recompilation when they change)
    and whose activation and quadrature (nodes, rule) are static."""

    activation: str | Callable  # closed-form name or callable (ntk_rnn.dual.resolve)
    gain2: float  # multiplies both dual transforms ("paper" with tanh/erf: phi'(0)^2 with a linear phi)
    nodes: int
    rule: str
    sw2: float
    su2: float  # sigma_u2 / nu
    sb2: float
    c0: float  # backward start
    omega_w: float
    omega_a: float
    omega_b: float
    beta: float  # readout (B) term

    def pair(self, q11, q12, q22):
        s, k = dual_pair(self.activation, q11, q12, q22, self.nodes, self.rule)
        return self.gain2 * s, self.gain2 * k


def _recursion(cfg: RNNConfig, nodes: int, rule: str, kernel: str) -> _Recursion:
    """Constants for the NTK ("ntk") or the NNGP ("nngp") of cfg (table in the module docstring)."""
    normal_rule(nodes, rule)  # validates both
    activation, gain2 = resolve(cfg.activation), 1.0
    par = cfg.parameterization
    if par == "paper" and activation not in HOMOGENEOUS:
        activation, gain2 = paper_scale_activation(cfg.activation)
    sw2, su2, sb2, sv2 = cfg.sigma_w2, cfg.sigma_u2, cfg.sigma_b2, cfg.sigma_v2
    dx, d = cfg.input_dim, cfg.output_dim
    t = {name: float(name in cfg.trainable) for name in ("W", "A", "b", "B")}
    forward = dict(activation=activation, gain2=gain2, nodes=nodes, rule=rule, sw2=sw2, sb2=sb2)
    if kernel == "nngp":
        beta = sv2 / d if par == "paper" else sv2
        return _Recursion(
            **forward, su2=su2 if par == "paper" else su2 / dx, c0=0.0, omega_w=0.0, omega_a=0.0, omega_b=0.0, beta=beta
        )
    if par == "paper":
        weights = dict(su2=su2, c0=sv2 / d, omega_w=t["W"], omega_a=t["A"], omega_b=t["b"], beta=0.0)
    elif par == "standard":
        weights = dict(su2=su2 / dx, c0=sv2, omega_w=t["W"], omega_a=0.0, omega_b=0.0, beta=t["B"])
    else:
        weights = dict(su2=su2 / dx, c0=sv2, omega_w=sw2 * t["W"], omega_a=su2 / dx * t["A"], omega_b=sb2 * t["b"])
        weights["beta"] = sv2 * t["B"]
    rec = _Recursion(**forward, **weights)
    if rec.omega_w == rec.omega_a == rec.omega_b == rec.beta == 0.0:
        warnings.warn(
            f"trainable={cfg.trainable} contributes only O(1) to an O(m) kernel in the {par!r} parameterization: "
            "the normalized limit K/m is identically 0",
            stacklevel=3,
        )
    return rec


def _shift(a: jax.Array) -> jax.Array:
    """a[..., b] -> a[..., b-1] along the last axis, with 0 at b = 0."""
    return jnp.pad(a[..., :-1], [(0, 0)] * (a.ndim - 1) + [(1, 0)])


def _variances(rec: _Recursion, x: jax.Array) -> jax.Array:
    """Self-covariances q_aa(i, i) of each sample's pre-activations, (n, L)."""

    def step(s_prev, x_a):
        v = rec.sw2 * s_prev + rec.su2 * jnp.sum(x_a * x_a, axis=-1) + rec.sb2
        return rec.pair(v, v, v)[0], v

    _, v = jax.lax.scan(step, jnp.zeros(x.shape[0], x.dtype), jnp.swapaxes(x, 0, 1))
    return v.T


@partial(jax.jit, static_argnames=("mode", "pos1", "pos2"))
def _grid(rec: _Recursion, mode: str, x1: jax.Array, x2: jax.Array, pos1=None, pos2=None):
    """One scan over the steps a of x1; each step updates the row (n1, n2, L2) of the time grid.

    mode "all" -> (n1, P1, n2, P2) at the positions; "mean" -> (n1, n2); "forward" -> (q, S, k).
    """
    v1, v2 = _variances(rec, x1), _variances(rec, x2)
    n1, n2, length2 = x1.shape[0], x2.shape[0], x2.shape[1]

    def step(carry, inputs):
        s_prev, g_prev, total = carry
        x_a, v_a = inputs
        xx = jnp.einsum("ik,jbk->ijb", x_a, x2)
        s_shift = _shift(s_prev)
        q = rec.sw2 * s_shift + rec.su2 * xx + rec.sb2
        s, k = rec.pair(v_a[:, None, None], q, v2[None])
        g = k * (rec.omega_w * s_shift + rec.omega_a * xx + rec.omega_b + rec.sw2 * _shift(g_prev))
        theta = rec.c0 * g + rec.beta * s
        out = {"all": theta, "forward": (q, s, k)}.get(mode)
        return (s, g, total + theta.sum(axis=-1)), out

    zeros = jnp.zeros((n1, n2, length2), x1.dtype)
    inputs = (jnp.swapaxes(x1, 0, 1), v1.T)
    (_, _, total), rows = jax.lax.scan(step, (zeros, zeros, jnp.zeros((n1, n2), x1.dtype)), inputs)
    if mode == "mean":
        return total / (x1.shape[1] * length2)
    if mode == "forward":
        return tuple(jnp.transpose(r, (1, 0, 2, 3)) for r in rows)
    rows = rows[np.asarray(pos1)][..., np.asarray(pos2)]  # (P1, n1, n2, P2)
    return jnp.transpose(rows, (1, 0, 2, 3))


@jax.jit
def _last(rec: _Recursion, x1: jax.Array, x2: jax.Array) -> jax.Array:
    """Theta at (L1-1, L2-1), (n1, n2). Only the diagonal a - b = L1 - L2 of the grid enters it: a scan
    along it from where a or b is 0, O(n1 n2 min(L1, L2)) instead of O(n1 n2 L1 L2)."""
    steps = min(x1.shape[1], x2.shape[1])
    v1, v2 = _variances(rec, x1)[:, -steps:], _variances(rec, x2)[:, -steps:]

    def step(carry, inputs):
        s_prev, g_prev = carry
        x_a, x_b, v_a, v_b = inputs
        xx = x_a @ x_b.T
        s, k = rec.pair(v_a[:, None], rec.sw2 * s_prev + rec.su2 * xx + rec.sb2, v_b[None])
        g = k * (rec.omega_w * s_prev + rec.omega_a * xx + rec.omega_b + rec.sw2 * g_prev)
        return (s, g), None

    zeros = jnp.zeros((x1.shape[0], x2.shape[0]), x1.dtype)
    inputs = (jnp.swapaxes(x1[:, -steps:], 0, 1), jnp.swapaxes(x2[:, -steps:], 0, 1), v1.T, v2.T)
    (s, g), _ = jax.lax.scan(step, (zeros, zeros), inputs)
    return rec.c0 * g + rec.beta * s


def _output_kernel(rec: _Recursion, cfg: RNNConfig, x1, x2, pos1, pos2) -> np.ndarray:
    """The scalar kernel expanded over output units ([k = k']) and flattened like empirical_ntk."""
    if cfg.readout == "last":
        theta = np.asarray(_last(rec, x1, x2))
    else:
        theta = np.asarray(_grid(rec, cfg.readout, x1, x2, pos1, pos2))
    if cfg.readout != "all":
        theta = theta[:, None, :, None]
    d = cfg.output_dim
    if d > 1:
        theta = theta[:, :, None, :, :, None] * np.eye(d)[None, None, :, None, None, :]
    return theta.reshape(theta.shape[0] * theta.shape[1] * d, -1)


def limit_ntk(cfg: RNNConfig, x1, x2=None, positions: Sequence[int] | None = None, *, nodes: int = DEFAULT_NODES,
              rule: str = DEFAULT_RULE) -> np.ndarray:  # fmt: skip
    """Infinite-width NTK, shaped and ordered exactly like empirical_ntk(cfg, params, x1, x2, positions).

    Returns lim K/m for the "paper" and "standard" parameterizations (their kernels grow like m) and
    lim K for "ntk"; cfg.width plays no role. Readout "all": (n1 * P1 * d, n2 * P2 * d), rows
    (sample, position, unit), positions None meaning 1..L-1; "last"/"mean": (n1 * d, n2 * d) with
    positions None. Float64 numpy. `nodes` (per dimension) and `rule` ("trapezoid", "hermite"): the
    quadrature for activations without a closed form (accuracy table in ntk_rnn.dual). The recursion
    and its constants: see the module docstring.
    """
    x1, x2, pos1, pos2 = check_pair(cfg, x1, x2, positions)[:4]
    return _output_kernel(_recursion(cfg, nodes, rule, "ntk"), cfg, x1, x2, pos1, pos2)


def nngp_kernel(cfg: RNNConfig, x1, x2=None, positions: Sequence[int] | None = None, *, nodes: int = DEFAULT_NODES,
                rule: str = DEFAULT_RULE) -> np.ndarray:  # fmt: skip
    """Infinite-width output covariance at initialization, lim E[y(x1) y(x2)^T], shaped like limit_ntk.

    It is finite in every parameterization and is NOT divided by m: "paper" gives sigma_v2/d S
    (S = lim h.h'), "standard" and "ntk" give sigma_v2 S (S = lim h.h'/m); readouts as in limit_ntk.
    """
    x1, x2, pos1, pos2 = check_pair(cfg, x1, x2, positions)[:4]
    return _output_kernel(_recursion(cfg, nodes, rule, "nngp"), cfg, x1, x2, pos1, pos2)


def forward_kernels(
    cfg: RNNConfig, x1, x2=None, *, nodes: int = DEFAULT_NODES, rule: str = DEFAULT_RULE
) -> ForwardKernels:
    """Limit covariances q (pre-activations), S (hidden states), k (derivatives), each (n1, L1, n2, L2).

    Normalization: lim of dot products for "paper", of dot products / m for "standard" and "ntk"
    (k is always a mean over units); see ForwardKernels.
    """
    x1 = check_inputs(cfg, x1, "x1")
    x2 = x1 if x2 is None else check_inputs(cfg, x2, "x2")
    rec = _recursion(cfg, nodes, rule, "nngp")
    return ForwardKernels(*(np.asarray(a) for a in _grid(rec, "forward", x1, x2)))
