"""The infinite-width recursion of the RNN's NTK and NNGP over the time grid of two sequences (docs/theory.md §3,
§9), for every RNNConfig option of the Elman cell; ntk_rnn.kernels.limit makes kernel functions of it.

Tensor Programs II (Yang 2020) makes the "gradient independence" calculation exact for weight-tied
RNNs, so the limits follow from one recursion over the (a, b) time grid of two sequences i, j.

Forward (q: pre-activation covariance, S: hidden-state covariance, k: derivative covariance):

    q_ab = sigma_w2 S_{a-1,b-1} + sigma_u2 x_{i,a}.x_{j,b} / nu + sigma_b2,      S_{-1,*} = 0,
    S_ab = V_phi(q_aa(i,i), q_ab, q_bb(j,j)),   k_ab = V_phi'(same),            (ntk_rnn.kernels.dual)

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
A hidden bias bh (RNNConfig.hidden_bias) enters the pre-activation with b and b's law: sigma_b2 above becomes
2 sigma_b2, and omega_b counts each trainable one ([b] + [bh], times sigma_b2 in "ntk"). The output bias bo
starts at 0 (nothing in the NNGP) and has gradient [k = k'] at every real row: it adds omega_bo = [bo] to lim K
in "ntk" and nothing to lim K/m in "paper" and "standard" (where it is 1/m).
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

Stacked layers (num_layers = k). Layer j >= 2 reads the hidden states of layer j-1 through A_l{j-1},
whose variance is sigma_u2/m in every parameterization, so in the normalization above

    q^j_ab = sigma_w2 S^j_{a-1,b-1} + sigma_u2 S^{j-1}_ab + sigma_b2,

and layer 1 is the recursion above. Backward, `delta^j_a = phi'(g^j_a) (W_j^T delta^j_{a+1} + A_{j+1}^T
delta^{j+1}_a)` (multipliers included); each of the two factors gives c^2 Var m = sigma_w2, resp.
sigma_u2, and the cross terms vanish, so every delta^j stays on the diagonal l - a = l' - b. As a forward
recursion for G^j = k^j * (the pre-activation kernel of layer j), with G^0 = 0:

    G^j_ab = k^j_ab (F^j_ab + sigma_w2 G^j_{a-1,b-1} + sigma_u2 G^{j-1}_ab),
    F^j_ab = omega_W S^j_{a-1,b-1} + omega_A' S^{j-1}_ab + omega_b        (j >= 2),
    Theta_{l,l'} = c0 G^k_{l,l'} + beta S^k_{l,l'},

with omega_A' = 1 ("paper", "standard") or sigma_u2 ("ntk") when A is trained, else 0 (the A of layers
j >= 2 has fan-in m, so its gradient is O(m) in "standard" too). For relu, "ntk", same-time pairs and
all trained this is the RNTK recursion (Alemohammad et al. 2021) with Sigma^j = q^j, Theta^j = G^j / k^j.

Bidirectional: the reverse stack has its own parameters and readout B_reverse, so the kernel is the sum
of the forward-direction kernels of x and of the reversed sequences rev x (the real steps backwards);
for readout "all" the reverse term at (l, l') is the reversed pair's at (len-1-l, len'-1-l'). With stacking
"concat" and num_layers >= 2 the directions are not separate stacks: ntk_rnn.kernels.bidirectional.

Variable lengths: padded steps freeze the state, so the limit between i and j is the recursion on the
unpadded sequences. Readout "all" and "mean" use the padded grid (its entries with a < len_i, b < len_j
are exact by causality), keeping real rows, resp. averaging over the len_i len_j real pairs. Readout
"last" reads (len_i - 1, len_j - 1): it right-aligns the sequences to T = min(max len1, max len2) steps and
scans the diagonal with the state held at 0 until both sequences of a pair have started, O(n1 n2 T).
The GRU, the LSTM and user cells have no closed form: ntk_rnn.kernels.unit_process estimates their limits."""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.kernels.dual import dual_pair, normal_rule, resolve
from ntk_rnn.network.config import ACTIVATIONS, RNNConfig
from ntk_rnn.network.model import full_lengths, step_order

HOMOGENEOUS = ("relu", "linear")  # phi(c u) = c phi(u) for c > 0: their "paper" limit is not degenerate
LINEARIZED_GAIN = {"tanh": 1.0, "erf": 2 / math.sqrt(math.pi)}  # phi'(0) of smooth phi with phi(0) = 0
_PROBE = np.linspace(-3.0, 3.0, 61)  # where a callable is tested for homogeneity


@functools.cache  # structure only; kernel functions call it once outside jit (check_limit), then inside from here
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
    data_fields=[
        "gain2",
        "sw2",
        "su2",
        "su2_up",
        "sb2",
        "c0",
        "omega_w",
        "omega_a",
        "omega_a_up",
        "omega_b",
        "beta",
        "omega_bo",
    ],
    meta_fields=["activation", "nodes", "rule", "layers"],
)
@dataclasses.dataclass(frozen=True)
class Recursion:
    """The recursion's constants: a pytree whose numbers are traced (no recompilation when they change)
    and whose activation and quadrature (nodes, rule) are static."""

    activation: str | Callable  # closed-form name or callable (ntk_rnn.kernels.dual.resolve)
    gain2: float  # multiplies both dual transforms ("paper" with tanh/erf: phi'(0)^2 with a linear phi)
    nodes: int
    rule: str
    sw2: float
    su2: float  # sigma_u2 / nu
    su2_up: float  # the input weight of layers >= 2, forward and backward: sigma_u2 m / fan-in (sigma_u2 in "paper")
    sb2: float  # sigma_b2, twice it with hidden_bias (b and bh are independent with the same law)
    c0: float  # backward start
    omega_w: float
    omega_a: float
    omega_a_up: float  # omega_A' of layers >= 2
    omega_b: float
    beta: float  # readout (B) term
    omega_bo: float  # output bias term, [k = k'] c_bo^2 = 1 per pair of real rows, in lim K ("ntk") only
    layers: int

    def pair(self, q11, q12, q22):
        s, k = dual_pair(self.activation, q11, q12, q22, self.nodes, self.rule)
        return self.gain2 * s, self.gain2 * k


@dataclasses.dataclass(frozen=True)
class Laws:
    """The limit's constants per parameterization and trainable set (the table in the module docstring): the
    variances of a unit's Gaussian inputs, and the weights of each parameter's own gradient term, with the cell
    biases b and bh apart (ntk_rnn.kernels.unit_process needs them apart; the recursion adds them)."""

    sw2: float
    su2: float  # on x.x' (layer 1)
    su2_up: float  # on the state kernel of the layer below (layers >= 2)
    sb2: float  # each of b and bh
    omega_w: float
    omega_a: float
    omega_a_up: float
    omega_b: float
    omega_bh: float
    c0: float
    beta: float
    beta_nngp: float
    omega_bo: float

    @classmethod
    def of(cls, cfg: RNNConfig) -> Laws:
        par, t = cfg.parameterization, {k: float(k in cfg.trainable) for k in ("W", "A", "b", "bh", "B", "bo")}
        sw2, su2, sb2, sv2, d = cfg.sigma_w2, cfg.sigma_u2, cfg.sigma_b2, cfg.sigma_v2, cfg.output_dim
        up = su2 / 2 if cfg.stacking == "concat" and cfg.bidirectional and par != "paper" else su2
        su2_in = su2 if par == "paper" else su2 / cfg.input_dim
        base = dict(sw2=sw2, su2=su2_in, su2_up=up, sb2=sb2)
        if par == "paper":
            own = dict(omega_w=t["W"], omega_a=t["A"], omega_a_up=t["A"], omega_b=t["b"], omega_bh=t["bh"],
                       c0=sv2 / d, beta=0.0, beta_nngp=sv2 / d, omega_bo=0.0)  # fmt: skip
        elif par == "standard":
            own = dict(omega_w=t["W"], omega_a=0.0, omega_a_up=t["A"], omega_b=0.0, omega_bh=0.0, c0=sv2,
                       beta=t["B"], beta_nngp=sv2, omega_bo=0.0)  # fmt: skip
        else:
            own = dict(omega_w=sw2 * t["W"], omega_a=su2_in * t["A"], omega_a_up=up * t["A"], omega_b=sb2 * t["b"],
                       omega_bh=sb2 * t["bh"], c0=sv2, beta=sv2 * t["B"], beta_nngp=sv2, omega_bo=t["bo"])  # fmt: skip
        return cls(**base, **own)


def recursion(cfg: RNNConfig, nodes: int, rule: str, kernel: str) -> Recursion:
    """Constants for the NTK ("ntk") or the NNGP ("nngp") of cfg (table in the module docstring)."""
    if cfg.cell != "elman":
        raise ValueError(
            f"cell={cfg.cell_name!r} has no closed-form limit, so no limit kernel function or forward kernels: "
            f"limit_ntk and nngp_kernel estimate it by Monte Carlo (pass key=jax.random.key(seed))"
        )
    normal_rule(nodes, rule)  # validates both
    activation, gain2 = resolve(cfg.activation), 1.0
    par = cfg.parameterization
    if par == "paper" and activation not in HOMOGENEOUS:
        activation, gain2 = paper_scale_activation(cfg.activation)
    laws = Laws.of(cfg)
    forward = dict(activation=activation, gain2=gain2, nodes=nodes, rule=rule, sw2=laws.sw2, layers=cfg.num_layers,
                   su2=laws.su2, su2_up=laws.su2_up, sb2=laws.sb2 * (2.0 if cfg.hidden_bias else 1.0))  # fmt: skip
    if kernel == "nngp":
        return Recursion(**forward, c0=0.0, omega_w=0.0, omega_a=0.0, omega_a_up=0.0, omega_b=0.0,
                         beta=laws.beta_nngp, omega_bo=0.0)  # fmt: skip
    # b and bh enter one pre-activation: each trainable one counts
    return Recursion(**forward, c0=laws.c0, omega_w=laws.omega_w, omega_a=laws.omega_a, omega_a_up=laws.omega_a_up,
                     omega_b=laws.omega_b + laws.omega_bh, beta=laws.beta, omega_bo=laws.omega_bo)  # fmt: skip


def check_limit(cfg: RNNConfig, nodes: int, rule: str, kernel: str) -> None:
    """Refuse what has no limit here, and warn when the normalized limit is identically 0 (structure only)."""
    recursion(cfg, nodes, rule, kernel)
    if kernel == "ntk":
        par, trained = cfg.parameterization, set(cfg.trainable)
        scaled = {"paper": {"W", "A", "b", "bh"}, "standard": {"W", "B"}, "ntk": {"W", "A", "b", "bh", "B", "bo"}}[par]
        if cfg.num_layers > 1 and par != "ntk":
            scaled = scaled | {"A"}
        if not trained & scaled:
            warnings.warn(
                f"trainable={cfg.trainable} contributes only O(1) to an O(m) kernel in the {par!r} "
                "parameterization: the normalized limit K/m is identically 0",
                stacklevel=4,
            )


def _shift(a: jax.Array) -> jax.Array:
    """a[..., b] -> a[..., b-1] along the last axis, with 0 at b = 0."""
    return jnp.pad(a[..., :-1], [(0, 0)] * (a.ndim - 1) + [(1, 0)])


def _variances(rec: Recursion, x: jax.Array) -> jax.Array:
    """Self-covariances q^j_aa(i, i) of each layer's pre-activations, (layers, n, L)."""

    def step(s_prev, x_a):
        inputs, s_new, v_new = rec.su2 * jnp.sum(x_a * x_a, axis=-1), [], []
        for j, s in enumerate(s_prev):
            v_new.append(rec.sw2 * s + (inputs if j == 0 else rec.su2_up * s_new[-1]) + rec.sb2)
            s_new.append(rec.pair(v_new[-1], v_new[-1], v_new[-1])[0])
        return tuple(s_new), jnp.stack(v_new)

    zeros = (jnp.zeros(x.shape[0], x.dtype),) * rec.layers
    _, v = jax.lax.scan(step, zeros, jnp.swapaxes(x, 0, 1))
    return jnp.transpose(v, (1, 2, 0))


def _layer_step(rec: Recursion, s_prev, g_prev, xx, v_a, v_b, shift):
    """One time step of every layer (module docstring) on a row or diagonal of the time grid.

    s_prev, g_prev: per-layer S and G of the previous step; xx: the tokens' dot products; v_a, v_b: per-layer
    self-variances, broadcastable to xx; shift: maps the previous step's arrays to (a-1, b-1). Returns
    per-layer (q, S, k, G).
    """
    out = []
    for j in range(rec.layers):
        s_shift = shift(s_prev[j])
        inputs, su2, omega_a = (xx, rec.su2, rec.omega_a) if j == 0 else (out[-1][1], rec.su2_up, rec.omega_a_up)
        q = rec.sw2 * s_shift + su2 * inputs + rec.sb2
        s, k = rec.pair(v_a[j], q, v_b[j])
        through = rec.sw2 * shift(g_prev[j])
        if j:
            through = through + rec.su2_up * out[-1][3]
        out.append((q, s, k, k * (rec.omega_w * s_shift + omega_a * inputs + rec.omega_b + through)))
    return out


@partial(jax.jit, static_argnames=("mode", "pos1", "pos2", "layer"))
def grid(rec: Recursion, mode: str, x1: jax.Array, x2: jax.Array, pos1=None, pos2=None, len1=None, len2=None,
          layer: int = -1):  # fmt: skip
    """One scan over the steps a of x1; each step updates the rows (n1, n2, L2) of every layer's time grid.

    mode "all" -> (n1, P1, n2, P2) at the positions; "mean" -> (n1, n2), over the real steps when len1,
    len2 (n1,), (n2,) are given; "forward" -> (q, S, k) of the layer.
    """
    v1, v2 = _variances(rec, x1), _variances(rec, x2)
    n1, n2, length2 = x1.shape[0], x2.shape[0], x2.shape[1]
    real2 = None if len2 is None else jnp.arange(length2)[None] < len2[:, None]  # (n2, L2)

    def step(carry, inputs):
        s_prev, g_prev, total = carry
        x_a, v_a, real_a = inputs
        xx = jnp.einsum("ik,jbk->ijb", x_a, x2)
        layers = _layer_step(rec, s_prev, g_prev, xx, [v[:, None, None] for v in v_a], [v[None] for v in v2], _shift)
        theta = rec.c0 * layers[-1][3] + rec.beta * layers[-1][1]
        if real_a is None:
            total = total + theta.sum(axis=-1)
        else:
            total = total + jnp.where(real_a[:, None], jnp.where(real2[None], theta, 0.0).sum(axis=-1), 0.0)
        out = {"all": theta, "forward": layers[layer][:3]}.get(mode)
        return (tuple(t[1] for t in layers), tuple(t[3] for t in layers), total), out

    zeros = (jnp.zeros((n1, n2, length2), x1.dtype),) * rec.layers
    real1 = None if len1 is None else jnp.arange(x1.shape[1])[:, None] < len1[None]  # (L1, n1)
    inputs = (jnp.swapaxes(x1, 0, 1), jnp.transpose(v1, (2, 0, 1)), real1)
    (_, _, total), rows = jax.lax.scan(step, (zeros, zeros, jnp.zeros((n1, n2), x1.dtype)), inputs)
    if mode == "mean":
        return total / (x1.shape[1] * length2) if len1 is None else total / (len1[:, None] * len2[None])
    if mode == "forward":
        return tuple(jnp.transpose(r, (1, 0, 2, 3)) for r in rows)
    rows = rows[np.asarray(pos1)][..., np.asarray(pos2)]  # (P1, n1, n2, P2)
    return jnp.transpose(rows, (1, 0, 2, 3))


def _diagonal(rec: Recursion, x1, x2, v1, v2, started) -> jax.Array:
    """Theta at the end of a diagonal of the grid, (n1, n2), from aligned steps x1 (n1, T, d_x), x2 (n2, T,
    d_x), self-variances v1 (layers, n1, T), v2 (layers, n2, T) and started (T, n1, n2) (None: always)."""

    def step(carry, inputs):
        s_prev, g_prev = carry
        x_a, x_b, v_a, v_b, on = inputs
        layers = _layer_step(rec, s_prev, g_prev, x_a @ x_b.T, [v[:, None] for v in v_a], [v[None] for v in v_b],
                             lambda a: a)  # fmt: skip
        s, g = tuple(t[1] for t in layers), tuple(t[3] for t in layers)
        if on is not None:
            s, g = tuple(jnp.where(on, a, 0.0) for a in s), tuple(jnp.where(on, a, 0.0) for a in g)
        return (s, g), None

    zeros = (jnp.zeros((x1.shape[0], x2.shape[0]), x1.dtype),) * rec.layers
    steps = (jnp.swapaxes(x1, 0, 1), jnp.swapaxes(x2, 0, 1), jnp.transpose(v1, (2, 0, 1)), jnp.transpose(v2, (2, 0, 1)))
    (s, g), _ = jax.lax.scan(step, (zeros, zeros), (*steps, started))
    return rec.c0 * g[-1] + rec.beta * s[-1]


@jax.jit
def _last(rec: Recursion, x1: jax.Array, x2: jax.Array) -> jax.Array:
    """Theta at (L1-1, L2-1), (n1, n2). Only the diagonal a - b = L1 - L2 of the grid enters it: a scan
    along it from where a or b is 0, O(n1 n2 min(L1, L2)) instead of O(n1 n2 L1 L2)."""
    steps = min(x1.shape[1], x2.shape[1])
    v1, v2 = _variances(rec, x1)[..., -steps:], _variances(rec, x2)[..., -steps:]
    return _diagonal(rec, x1[:, -steps:], x2[:, -steps:], v1, v2, None)


@partial(jax.jit, static_argnames=("steps",))
def _last_lengths(rec: Recursion, x1, x2, len1, len2, steps: int) -> jax.Array:
    """Theta at (len1_i - 1, len2_j - 1), (n1, n2): the sequences right-aligned to `steps` = min(max len1,
    max len2) steps, the state of a pair held at 0 until both have started. O(n1 n2 steps)."""

    def align(x, lengths):  # step tau of the window is step lengths - steps + tau of the sequence
        index = lengths[:, None] - steps + jnp.arange(steps)[None]  # (n, T)
        valid, index = index >= 0, jnp.maximum(index, 0)
        xa = jnp.where(valid[..., None], jnp.take_along_axis(x, index[..., None], axis=1), 0.0)
        va = jnp.where(valid, jnp.take_along_axis(_variances(rec, x), index[None], axis=2), 1.0)
        return xa, va

    (x1a, v1a), (x2a, v2a) = align(x1, len1), align(x2, len2)
    started = jnp.arange(steps)[:, None, None] >= steps - jnp.minimum(len1[:, None], len2[None])[None]
    return _diagonal(rec, x1a, x2a, v1a, v2a, started)


def _one_direction(rec: Recursion, readout: str, x1, x2, pos1, pos2, len1, len2) -> jax.Array:
    """The forward direction's scalar kernel: (n1, P1, n2, P2) for readout "all", else (n1, n2). len1, len2:
    both (n,) int arrays or both None."""
    if readout == "last" and len1 is not None:
        return _last_lengths(rec, x1, x2, len1, len2, min(x1.shape[1], x2.shape[1]))
    if readout == "last":
        return _last(rec, x1, x2)
    if readout == "mean" and len1 is not None:
        return grid(rec, "mean", x1, x2, len1=len1, len2=len2)
    return grid(rec, readout, x1, x2, pos1, pos2)


@partial(jax.jit, static_argnames=("readout", "bidirectional", "pos1", "pos2"))
def scalar_kernel(rec: Recursion, readout: str, bidirectional: bool, x1, x2, pos1, pos2, len1, len2) -> jax.Array:
    """Both directions' scalar kernels summed (separate stacks), shaped like _one_direction's."""
    theta = _one_direction(rec, readout, x1, x2, pos1, pos2, len1, len2)
    if not bidirectional:
        return theta
    full1, full2 = full_lengths(x1, len1), full_lengths(x2, len2)
    order1, order2 = step_order(full1[:, None], x1.shape[1], True), step_order(full2[:, None], x2.shape[1], True)
    r1 = jnp.take_along_axis(x1, order1[..., None], axis=1)
    r2 = jnp.take_along_axis(x2, order2[..., None], axis=1)
    if readout != "all":
        return theta + _one_direction(rec, readout, r1, r2, None, None, len1, len2)
    reversed_grid = grid(rec, "all", r1, r2, tuple(range(x1.shape[1])), tuple(range(x2.shape[1])))
    at1 = jnp.maximum(full1[:, None] - 1 - jnp.asarray(pos1)[None], 0)  # (n1, P1): padded rows are zeroed later
    at2 = jnp.maximum(full2[:, None] - 1 - jnp.asarray(pos2)[None], 0)
    n1, n2 = jnp.arange(x1.shape[0]), jnp.arange(x2.shape[0])
    rows = (n1[:, None, None, None], at1[:, :, None, None], n2[None, None, :, None], at2[None, None])
    return theta + reversed_grid[rows]
