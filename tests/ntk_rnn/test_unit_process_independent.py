"""An independent plain-NumPy check of the gated cells' infinite-width NNGP and NTK (limit_ntk, nngp_kernel).

What it computes. At infinite width each unit of a GRU or LSTM layer runs the cell's scalar recursion on its own
Gaussian inputs: per gate block g, the W-row input u^W_g = (W h_{t-1})_g, the A-row input u^A_g = (A x_t)_g and
the biases b_g, bh_g (one draw per unit, shared by all sequences and steps), independent between gates, with

    Cov[u^W_g(i,t), u^W_g(j,t')] = sigma_w2 S[(i,t-1),(j,t'-1)]  (0 at t = 0 or t' = 0: h_{-1} = 0),
    Cov[u^A_g(i,t), u^A_g(j,t')] = sigma_u2 / d_x  x_{i,t}.x_{j,t'},    Var[b_g] = Var[bh_g] = sigma_b2,

where S = E[h_{i,t} h_{j,t'}] over one unit is the NNGP state kernel (lim h.h'/m). The NTK's state kernel
T = lim <dh_{i,t}, dh_{j,t'}> over the trainable parameters (lim .../m in "standard") is, per unit,

    T = E[D T_in D^T],   T_in = the parameter inner products of the inputs' tangents (deterministic):
        u^W: omega_w S_prev + sigma_w2 T_prev,   u^A: omega_a x.x',   b: omega_b,   bh: omega_bh,

with D the Jacobian of the unit's h_{i,t} with respect to its own Gaussian inputs at steps s <= t (same
sequence; the biases reach every step). Derivation of the constants, from the parameterizations in
ntk_rnn.network.config, for lim K / m ("standard": W ~ N(0, sw2/m), A ~ N(0, su2/d_x), b ~ N(0, sb2),
B ~ N(0, sv2/m)) and lim K ("ntk": N(0, 1) weights with multipliers sqrt(sw2/m), sqrt(su2/d_x), sqrt(sb2),
sqrt(sv2/m)):
    d u^W_k = (dW_k) h + W_k dh:  <.,.>/m -> S_prev + sw2 T_prev ("standard"),  sw2 S_prev + sw2 T_prev ("ntk");
    d u^A_k = (dA_k) x:  x.x'/m -> 0 ("standard"),  su2/d_x x.x' ("ntk");  biases: 1/m -> 0, resp. sb2;
    outputs y = B h + bo:  NNGP = sv2 S;  NTK = S + sv2 T ("standard"),  sv2 S + sv2 T + 1 ("ntk", bo trained).

How it differs from production (ntk_rnn.kernels.unit_process), so that the two share no code and no algorithm:
  * the GRU (r, z, n gates, PyTorch's n = tanh(A_n x + b_n + r (W_n h + bh_n))) and LSTM (i, f, g, o gates and
    the cell state c) are written out here in NumPy, and their derivatives are derived by hand;
  * the Gaussian inputs of all steps are drawn jointly, from an eigendecomposition of the full covariance of a
    unit's inputs, inside a fixed-point iteration over the whole sequence (guess S, T; draw; run the units;
    re-estimate S, T), instead of step-by-step conditioning on a growing Cholesky factor;
  * the NTK is E[D T_in D^T] with D the explicit Jacobian (products of the cell's derivative matrices over the
    steps), instead of the covariance of a forward-mode JVP driven by sampled Gaussian tangents;
  * rows are ordered (sequence, step), and the error bars come from this file's own independent replicates
    (seeded numpy.random.default_rng), production's from its own (jax.random.key).
The comparison requires |mean_prod - mean_here| <= 4 sqrt(stderr_prod^2 + stderr_here^2) entrywise, for the NNGP
and the NTK of GRU and LSTM, "standard" and "ntk", one layer, readout "all", both cell biases and the output bias,
every parameter trainable; it prints the max z. Wrong variants (the tangent recursion's sigma_w2 T_prev term
dropped; A's gradient counted in "standard"; the biases' gradients dropped in "ntk") must disagree by many
standard errors, so the check has teeth.
Seeds: inputs X from default_rng(20240611); production jax.random.key(100 + case index), here
default_rng(7 + case index) (1000 + case index for the wrong variants); 16384 units in 32 replicates on each side.
Rerun: .venv/bin/python -m pytest tests/ntk_rnn/test_unit_process_independent.py -q -s --durations=5
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

import ntk_rnn

N, L, DX = 2, 3, 2  # sequences, steps, input dimension
SW2, SU2, SB2, SV2 = 2.5, 1.2, 0.3, 0.8  # none equal to 1, so that a wrong constant shows
X = np.random.default_rng(20240611).standard_normal((N, L, DX))
PROD_SAMPLES, PROD_REPLICATES = 16384, 32
OWN_UNITS, OWN_REPLICATES = 1024, 32
Z_MAX = 4.0
CASES = [(cell, par) for cell in ("gru", "lstm") for par in ("standard", "ntk")]


@dataclasses.dataclass(frozen=True)
class Constants:
    """The laws of one unit's inputs and tangents, and the readout's constants (module docstring's derivation)."""

    var_w: float
    var_a: float
    var_b: float
    omega_w: float
    omega_a: float
    omega_b: float  # also bh's
    tangent_w: float  # the sigma_w2 in front of T_prev
    beta: float  # NTK = beta S + c0 T + bo
    c0: float
    bo: float
    nngp: float  # NNGP = nngp S


def constants(par: str) -> Constants:
    if par == "standard":
        return Constants(SW2, SU2 / DX, SB2, omega_w=1.0, omega_a=0.0, omega_b=0.0, tangent_w=SW2, beta=1.0, c0=SV2,
                         bo=0.0, nngp=SV2)  # fmt: skip
    assert par == "ntk"
    return Constants(SW2, SU2 / DX, SB2, omega_w=SW2, omega_a=SU2 / DX, omega_b=SB2, tangent_w=SW2, beta=SV2, c0=SV2,
                     bo=1.0, nngp=SV2)  # fmt: skip


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def run_gru(ax, ah):
    """PyTorch's GRU on P units: ax, ah (P, 3, n, L) the x-side (A x + b) and h-side (W h + bh) inputs of gates
    (r, z, n). Returns h (P, n, L) and the Jacobians Jx, Jh (P, 3, n, L, L): [.., t, s] = dh_t / d ax[.., s] and
    dh_t / d ah[.., s] (lower triangular in (t, s)).

    h_t = (1 - z) nn + z h_{t-1},  r = sig(ax_r + ah_r),  z = sig(ax_z + ah_z),  nn = tanh(ax_n + r ah_n):
      dh_t/dh_{t-1} = z (the unit's own W h_{t-1} term is O(m^-1/2): u^W is an input, not a function of h);
      dh_t/d(ax_r, ah_r) = (1 - z)(1 - nn^2) ah_n r (1 - r);   dh_t/d(ax_z, ah_z) = (h_{t-1} - nn) z (1 - z);
      dh_t/d ax_n = (1 - z)(1 - nn^2);   dh_t/d ah_n = (1 - z)(1 - nn^2) r."""
    p, _, n, steps = ax.shape
    h = np.zeros((p, n, steps))
    jx, jh = np.zeros((p, 3, n, steps, steps)), np.zeros((p, 3, n, steps, steps))
    prev = np.zeros((p, n))
    for t in range(steps):
        r = sigmoid(ax[:, 0, :, t] + ah[:, 0, :, t])
        z = sigmoid(ax[:, 1, :, t] + ah[:, 1, :, t])
        nn = np.tanh(ax[:, 2, :, t] + r * ah[:, 2, :, t])
        h[:, :, t] = (1 - z) * nn + z * prev
        dn = (1 - z) * (1 - nn**2)
        dr = dn * ah[:, 2, :, t] * r * (1 - r)
        dz = (prev - nn) * z * (1 - z)
        # earlier steps' inputs reach h_t through h_{t-1}: multiply by dh_t/dh_{t-1} = z
        jx[:, :, :, t, :t] = z[:, None, :, None] * jx[:, :, :, t - 1, :t]
        jh[:, :, :, t, :t] = z[:, None, :, None] * jh[:, :, :, t - 1, :t]
        jx[:, :, :, t, t] = np.stack([dr, dz, dn], axis=1)
        jh[:, :, :, t, t] = np.stack([dr, dz, dn * r], axis=1)
        prev = h[:, :, t]
    return h, jx, jh


def run_lstm(ax, ah):
    """PyTorch's LSTM on P units, gates (i, f, g, o), pre-activation a = ax + ah (so Jx = Jh):
    c_t = f c_{t-1} + i g,  h_t = o tanh(c_t),  i, f, o = sig(a_i, a_f, a_o),  g = tanh(a_g). Jacobians through
    the cell state: dc_t/dc_{t-1} = f, dc_t/d(a_i, a_f, a_g) = (g i (1 - i), c_{t-1} f (1 - f), i (1 - g^2)),
    dh_t = o (1 - tanh^2 c_t) dc_t + tanh(c_t) o (1 - o) da_o  (h_{t-1} enters only through the inputs u^W)."""
    p, _, n, steps = ax.shape
    a = ax + ah
    h = np.zeros((p, n, steps))
    jc, jhs = np.zeros((p, 4, n, steps, steps)), np.zeros((p, 4, n, steps, steps))
    c = np.zeros((p, n))
    for t in range(steps):
        i, f, o = (sigmoid(a[:, k, :, t]) for k in (0, 1, 3))
        g = np.tanh(a[:, 2, :, t])
        c_new = f * c + i * g
        tc = np.tanh(c_new)
        h[:, :, t] = o * tc
        jc[:, :, :, t, :t] = f[:, None, :, None] * jc[:, :, :, t - 1, :t]
        jc[:, :, :, t, t] = np.stack([g * i * (1 - i), c * f * (1 - f), i * (1 - g**2), np.zeros_like(c)], axis=1)
        jhs[:, :, :, t, : t + 1] = (o * (1 - tc**2))[:, None, :, None] * jc[:, :, :, t, : t + 1]
        jhs[:, 3, :, t, t] = tc * o * (1 - o)
        c = c_new
    return h, jhs, jhs


def shift(k):
    """k (n, L, n, L) -> k[(i, t-1), (j, t'-1)], 0 where t or t' is 0 (the kernel of h_{t-1}, h_{-1} = 0)."""
    out = np.zeros_like(k)
    out[:, 1:, :, 1:] = k[:, :-1, :, :-1]
    return out


def gaussian_root(cov):
    """A square root R with R R^T = cov from the eigendecomposition (negative rounding eigenvalues clipped)."""
    w, v = np.linalg.eigh(0.5 * (cov + cov.T))
    return v * np.sqrt(np.clip(w, 0.0, None))


def one_replicate(cell: str, c: Constants, x: np.ndarray, units: int, rng: np.random.Generator):
    """(S, T), each (n, L, n, L), from `units` units, by the fixed-point iteration over the whole sequence.

    Causality makes L iterations exact: h at step t depends on the inputs at steps <= t, whose covariance uses S
    (and T) at steps <= t - 1 only. Starting from any guess (here 0), iteration 1 gets S, T right at step 0 (its
    W-inputs are 0 whatever the guess), and if the guess is right at steps < k, the re-estimate is right at steps
    <= k. So after L iterations the whole S, T is the limit's, up to the Monte Carlo noise of the estimates it
    was drawn from (which the replicates' spread includes: each replicate iterates on its own)."""
    n, steps, _ = x.shape
    nl, gates = n * steps, {"gru": 3, "lstm": 4}[cell]
    xx = np.einsum("itd,jud->itju", x, x)
    s, t_ker = np.zeros((n, steps, n, steps)), np.zeros((n, steps, n, steps))
    for _ in range(steps):
        # one gate's inputs [u^W (nL), u^A (nL), b, bh]: jointly Gaussian, block-diagonal covariance; gates i.i.d.
        cov = np.zeros((2 * nl + 2, 2 * nl + 2))
        cov[:nl, :nl] = c.var_w * shift(s).reshape(nl, nl)
        cov[nl : 2 * nl, nl : 2 * nl] = c.var_a * xx.reshape(nl, nl)
        cov[2 * nl, 2 * nl] = cov[2 * nl + 1, 2 * nl + 1] = c.var_b
        draw = rng.standard_normal((units, gates, 2 * nl + 2)) @ gaussian_root(cov).T
        uw, ua = draw[..., :nl].reshape(units, gates, n, steps), draw[..., nl : 2 * nl].reshape(units, gates, n, steps)
        b, bh = draw[..., 2 * nl, None, None], draw[..., 2 * nl + 1, None, None]
        h, jx, jh = (run_gru if cell == "gru" else run_lstm)(ua + b, uw + bh)
        tin_w = c.omega_w * shift(s) + c.tangent_w * shift(t_ker)
        tin_a = c.omega_a * xx
        # D T_in D^T per input kind; D is block-diagonal over sequences (a unit's h_i reads only sequence i's
        # u^W, u^A), while a bias reaches every step of every sequence: its column of D is the row sum.
        new_t = np.einsum("pgits,isju,pgjvu->itjv", jh, tin_w, jh, optimize=True)
        new_t += np.einsum("pgits,isju,pgjvu->itjv", jx, tin_a, jx, optimize=True)
        sx, sh = jx.sum(-1), jh.sum(-1)
        new_t += c.omega_b * (np.einsum("pgit,pgju->itju", sx, sx) + np.einsum("pgit,pgju->itju", sh, sh))
        s, t_ker = np.einsum("pit,pju->itju", h, h) / units, new_t / units
    return s, t_ker


def independent_kernels(cell: str, c: Constants, x: np.ndarray, seed: int, units: int = OWN_UNITS,
                        replicates: int = OWN_REPLICATES):  # fmt: skip
    """{"ntk": (mean, stderr), "nngp": (mean, stderr)}, each (n L, n L) with rows (sequence, step), over
    `replicates` independent runs of `units` units."""
    rng = np.random.default_rng(seed)
    runs = [one_replicate(cell, c, x, units, rng) for _ in range(replicates)]
    nl = x.shape[0] * x.shape[1]
    kernels = {
        "ntk": np.stack([c.beta * s + c.c0 * t + c.bo for s, t in runs]).reshape(replicates, nl, nl),
        "nngp": np.stack([c.nngp * s for s, _ in runs]).reshape(replicates, nl, nl),
    }
    return {k: (v.mean(0), v.std(0, ddof=1) / np.sqrt(replicates)) for k, v in kernels.items()}


def config(cell: str, par: str) -> ntk_rnn.RNNConfig:
    return ntk_rnn.RNNConfig(width=16, input_dim=DX, cell=cell, parameterization=par, sigma_w2=SW2, sigma_u2=SU2,
                             sigma_b2=SB2, sigma_v2=SV2, trainable=("W", "A", "b", "bh", "B", "bo"), readout="all",
                             hidden_bias=True, output_bias=True)  # fmt: skip


@pytest.fixture(scope="module")
def production():
    """limit_ntk and nngp_kernel of every case, computed once: {(cell, par): {"ntk": Estimate, "nngp": ...}}."""
    out = {}
    for n_case, (cell, par) in enumerate(CASES):
        kw = dict(positions=tuple(range(L)), key=jax.random.key(100 + n_case), samples=PROD_SAMPLES,
                  replicates=PROD_REPLICATES)  # fmt: skip
        cfg = config(cell, par)
        out[cell, par] = {"ntk": ntk_rnn.limit_ntk(cfg, X, **kw), "nngp": ntk_rnn.nngp_kernel(cfg, X, **kw)}
    return out


def max_z(prod, own) -> float:
    mean, stderr = own
    return float(np.max(np.abs(prod.mean - mean) / np.sqrt(prod.stderr**2 + stderr**2)))


@pytest.mark.parametrize(("cell", "par"), CASES)
def test_production_agrees_with_the_independent_monte_carlo(production, cell, par):
    own = independent_kernels(cell, constants(par), X, seed=7 + CASES.index((cell, par)))
    for kind in ("nngp", "ntk"):
        prod = production[cell, par][kind]
        assert prod.mean.shape == own[kind][0].shape == (N * L, N * L)
        z = max_z(prod, own[kind])
        rel = float(np.max(np.sqrt(prod.stderr**2 + own[kind][1] ** 2) / np.abs(prod.mean).max()))
        print(f"{cell} {par} {kind}: max z = {z:.2f} (combined stderr <= {rel:.1e} of the kernel's max)")
        assert z < Z_MAX, f"{cell} {par} {kind}: production and the independent Monte Carlo differ, max z = {z:.2f}"


WRONG = [  # (cell, parameterization, wrong constants, the z it must exceed)
    ("gru", "ntk", {"tangent_w": 0.0}, 1.5 * Z_MAX),  # the tangent recursion's sigma_w2 T_prev dropped
    ("lstm", "standard", {"omega_a": SU2 / DX}, 5 * Z_MAX),  # A's gradient counted in "standard" (it is O(1/m))
    ("gru", "ntk", {"omega_b": 0.0}, 5 * Z_MAX),  # the biases' own gradients dropped in "ntk"
]


@pytest.mark.parametrize(("cell", "par", "wrong", "z_min"), WRONG)
def test_a_wrong_variant_is_caught(production, cell, par, wrong, z_min):
    """A wrong constant moves the independent NTK away from production's by many standard errors: the agreement
    above is not vacuous (sigma_w2 T_prev is the smallest of these effects: the gates' derivatives are small)."""
    c = dataclasses.replace(constants(par), **wrong)
    own = independent_kernels(cell, c, X, seed=1000 + CASES.index((cell, par)))
    z = max_z(production[cell, par]["ntk"], own["ntk"])
    print(f"{cell} {par} ntk with {wrong}: max z = {z:.1f}")
    assert z > z_min, f"{cell} {par}: the wrong variant {wrong} is not caught (max z = {z:.1f})"
