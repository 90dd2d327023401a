"""Dual activations and the infinite-width kernels: closed forms, Monte Carlo, Yang's published RNN
kernel, and the empirical kernel converging to the limit like m^(-1/2)."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.kernels.limit import forward_kernels, limit_ntk, nngp_kernel
from ntk_rnn.training.fitting import power_law_fit

ALL = ("W", "A", "b", "B")


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _x(seed, n, length, dx, scale=1.0):
    """Gaussian tokens scaled to mean squared norm scale^2, drawn with numpy (jax.random.normal compiles a sampler
    for every new shape)."""
    return np.random.default_rng(seed).standard_normal((n, length, dx)) * scale / np.sqrt(dx)


# ----------------------------------------------------------------------------- exact limits


def _relu_closed(q11, q12, q22):
    root = np.sqrt(q11 * q22)
    th = np.arccos(np.clip(q12 / root, -1, 1))
    return root * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi), (np.pi - th) / (2 * np.pi)


def _erf_closed(q11, q12, q22):
    prod = (1 + 2 * q11) * (1 + 2 * q22)
    return 2 / np.pi * np.arcsin(2 * q12 / np.sqrt(prod)), 4 / np.pi / np.sqrt(prod - 4 * q12**2)


@pytest.mark.parametrize("readout", ["all", "last", "mean"])
@pytest.mark.parametrize(
    "parameterization, activation", [("paper", "relu"), ("standard", "relu"), ("standard", "erf"), ("ntk", "erf")]
)
def test_single_step_kernel_by_hand(parameterization, activation, readout):
    """L = 1 (h_0 = 0, so no W-gradient): a one-hidden-layer network, every term written out by hand."""
    dx, d = 3, 2
    sw2, su2, sb2, sv2 = 1.7, 1.3, 0.4, 0.6
    cfg = ntk_rnn.RNNConfig(
        width=8, input_dim=dx, output_dim=d, activation=activation, parameterization=parameterization,
        sigma_w2=sw2, sigma_u2=su2, sigma_b2=sb2, sigma_v2=sv2, trainable=ALL, readout=readout,
    )  # fmt: skip
    x1, x2 = _x(0, 3, 1, dx), _x(1, 2, 1, dx)
    xx = x1[:, 0] @ x2[:, 0].T
    n1, n2 = xx.shape
    own1, own2 = (x1[:, 0] ** 2).sum(-1), (x2[:, 0] ** 2).sum(-1)
    closed = _relu_closed if activation == "relu" else _erf_closed
    if parameterization == "paper":  # g = A x + b with A ~ N(0, su2/m), b ~ N(0, sb2/m); B ~ N(0, sv2/d)
        q = lambda a: su2 * a + sb2  # noqa: E731
        S, k = closed(q(own1)[:, None], q(xx), q(own2)[None])
        theta = sv2 / d * k * (xx + 1)  # lim K/m: |B_k|^2 ~ sv2 m/d times (x.x' [A] + 1 [b]); B term O(1)
    elif parameterization == "standard":  # A ~ N(0, su2/d_x), b ~ N(0, sb2), B ~ N(0, sv2/m)
        q = lambda a: su2 * a / dx + sb2  # noqa: E731
        S, k = closed(q(own1)[:, None], q(xx), q(own2)[None])
        theta = S  # lim K/m: only B's gradient h.h' = m S grows with m
    else:  # all N(0, 1); multipliers sqrt(su2/d_x), sqrt(sb2), sqrt(sv2/m)
        q = lambda a: su2 * a / dx + sb2  # noqa: E731
        S, k = closed(q(own1)[:, None], q(xx), q(own2)[None])
        theta = sv2 * k * (su2 / dx * xx + sb2) + sv2 * S
    expected = np.kron(theta, np.eye(d))
    positions = (0,) if readout == "all" else None
    got = limit_ntk(cfg, x1, x2, positions=positions)
    assert got.shape == (n1 * d, n2 * d)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


LINEAR_WEIGHTS = {  # (c0, omega_W, omega_A, omega_b, beta), derived in the module docstring of ntk_rnn.kernels.limit
    "paper": lambda sw2, su2, sb2, sv2, dx, d: (sv2 / d, 1.0, 1.0, 1.0, 0.0),
    "standard": lambda sw2, su2, sb2, sv2, dx, d: (sv2, 1.0, 0.0, 0.0, 1.0),
    "ntk": lambda sw2, su2, sb2, sv2, dx, d: (sv2, sw2, su2 / dx, sb2, sv2),
}


def _linear_limit_by_sums(par, sw2, su2, sb2, sv2, d, x1, x2, readout, positions):
    """The linear RNN's limit as explicit lag sums (no recursion): with k = 1 and S = q,
    S_ab = sum_{r=0}^{min(a,b)} sw2^r (su2 x_{a-r}.x'_{b-r} / nu + sb2),
    Theta_ll' = c0 sum_{s=0}^{min(l,l')} sw2^s F_{l-s,l'-s} + beta S_ll'."""
    dx = x1.shape[-1]
    nu = 1.0 if par == "paper" else dx
    c0, w_w, w_a, w_b, beta = LINEAR_WEIGHTS[par](sw2, su2, sb2, sv2, dx, d)

    def S(i, a, j, b):
        if a < 0 or b < 0:
            return 0.0
        return sum(sw2**r * (su2 * x1[i, a - r] @ x2[j, b - r] / nu + sb2) for r in range(min(a, b) + 1))

    def theta(i, l1, j, l2):
        total = 0.0
        for s in range(min(l1, l2) + 1):
            a, b = l1 - s, l2 - s
            total += sw2**s * (w_w * S(i, a - 1, j, b - 1) + w_a * x1[i, a] @ x2[j, b] + w_b)
        return c0 * total + beta * S(i, l1, j, l2)

    n1, L1, n2, L2 = x1.shape[0], x1.shape[1], x2.shape[0], x2.shape[1]
    if readout == "last":
        t = np.array([[theta(i, L1 - 1, j, L2 - 1) for j in range(n2)] for i in range(n1)])
    elif readout == "mean":
        t = np.array(
            [[np.mean([theta(i, a, j, b) for a in range(L1) for b in range(L2)]) for j in range(n2)] for i in range(n1)]
        )
    else:
        t = np.array([[theta(i, a, j, b) for j in range(n2) for b in positions] for i in range(n1) for a in positions])
    return np.kron(t, np.eye(d))


@pytest.mark.parametrize("readout", ["all", "last", "mean"])
@pytest.mark.parametrize("parameterization", ["paper", "standard", "ntk"])
def test_linear_activation_matches_lag_sums(parameterization, readout):
    sw2, su2, sb2, sv2, d = 0.8, 1.3, 0.4, 0.6, 2
    x1, x2 = _x(2, 2, 4, 3), _x(3, 3, 3, 3)  # different lengths
    cfg = ntk_rnn.RNNConfig(
        width=8, input_dim=3, output_dim=d, activation="linear", parameterization=parameterization,
        sigma_w2=sw2, sigma_u2=su2, sigma_b2=sb2, sigma_v2=sv2, trainable=ALL, readout=readout,
    )  # fmt: skip
    positions = (2, 0, 1) if readout == "all" else None
    expected = _linear_limit_by_sums(parameterization, sw2, su2, sb2, sv2, d, x1, x2, readout, positions)
    got = limit_ntk(cfg, x1, x2, positions=positions)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


def test_paper_tanh_is_the_linear_limit():
    """Under the paper scaling, pre-activations are O(m^-1/2) and tanh acts as the identity."""
    x = _x(4, 3, 4, 5)
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=5, activation="tanh", sigma_b2=0.3, trainable=ALL)
    np.testing.assert_allclose(limit_ntk(cfg, x), limit_ntk(cfg.replace(activation="linear"), x), rtol=1e-13)


def test_paper_callables_smooth_act_linearly_and_homogeneous_keep_their_transforms():
    """A user callable in the paper scaling: phi(0) = 0 and smooth gives the linear RNN with gain phi'(0);
    a positively homogeneous callable keeps its own dual transforms (here relu by quadrature)."""
    x = _x(4, 3, 4, 5)
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=5, sigma_b2=0.3, trainable=ALL)
    linear = limit_ntk(cfg.replace(activation="linear"), x)
    np.testing.assert_allclose(limit_ntk(cfg.replace(activation=jnp.sin), x), linear, rtol=1e-13)
    # gain 2: every hidden covariance and derivative term picks up a factor 4 per application
    doubled = limit_ntk(cfg.replace(activation=lambda u: 2.0 * jnp.tanh(u)), x)
    np.testing.assert_allclose(doubled, limit_ntk(cfg.replace(activation=lambda u: 2.0 * u), x), rtol=1e-10)
    assert not np.allclose(doubled, linear, rtol=1e-2)
    # relu as a bare callable goes through quadrature, whose error on a kinked phi falls like nodes^-1.5
    relu = limit_ntk(cfg, x)
    errors = [
        np.abs(limit_ntk(cfg.replace(activation=lambda u: jnp.maximum(u, 0.0)), x, nodes=nodes) - relu).max()
        / np.abs(relu).max()
        for nodes in (64, 256)
    ]
    assert errors[1] < 1e-3 and errors[1] < errors[0] / 4, errors


@pytest.mark.slow
def test_paper_leaky_relu_callable_converges():
    """Leaky relu, given only as a callable, under the paper scaling: empirical -> limit like m^-1/2."""

    def leaky(u):
        return jnp.where(u > 0, u, 0.2 * u)

    x = ntk_rnn.synthetic_sequences(key=jax.random.key(3), n=4, length=4, input_dim=6).x
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=6, activation=leaky, trainable=("W", "A"))
    widths = [64, 256, 1024]
    _check_rate(widths, _errors(cfg, x, widths, range(4), "structured"), last_max=0.1)


def test_nngp_and_forward_kernels():
    x = ntk_rnn.synthetic_sequences(key=jax.random.key(0), n=3, length=6, input_dim=4).x  # unit tokens
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=4, output_dim=2)
    S = forward_kernels(cfg, x).S
    assert S.shape == (3, 6, 3, 6)
    # relu, sigma_w2 = sigma_u2 = 2, unit tokens: ||h_a||^2 -> a + 1 (docs/theory.md §3, 0-based)
    np.testing.assert_allclose(np.einsum("iaia->ia", S), np.tile(np.arange(1, 7), (3, 1)), rtol=1e-13)
    # NNGP of readout "all": (sigma_v2 / d) S at the positions, per output unit
    expected = np.kron(S[:, [1, 5]][:, :, :, [1, 5]].reshape(6, 6) * cfg.sigma_v2 / 2, np.eye(2))
    np.testing.assert_allclose(nngp_kernel(cfg, x, positions=(1, 5)), expected, rtol=1e-14)
    # "standard" and "ntk" have the same forward distribution; the NTK's B-term is the NNGP in "ntk"
    for readout in ("all", "last", "mean"):
        ntk_cfg = cfg.replace(parameterization="ntk", activation="erf", sigma_b2=0.2, readout=readout, sigma_v2=0.7)
        std_cfg = ntk_cfg.replace(parameterization="standard")
        np.testing.assert_allclose(nngp_kernel(ntk_cfg, x), nngp_kernel(std_cfg, x), rtol=1e-14)
        np.testing.assert_allclose(nngp_kernel(ntk_cfg, x), limit_ntk(ntk_cfg.replace(trainable=("B",)), x), rtol=1e-14)
        np.testing.assert_allclose(
            nngp_kernel(ntk_cfg, x) / 0.7, limit_ntk(std_cfg.replace(trainable=("B",)), x), rtol=1e-14
        )


def test_nngp_matches_output_covariance_over_initializations():
    """E[y y^T] over 500 draws at m = 128 (Monte Carlo error about 6%) against the limit."""
    cfg = ntk_rnn.RNNConfig(width=128, input_dim=4, activation="erf", parameterization="standard", readout="mean")
    x = jnp.asarray(_x(5, 3, 4, 4, scale=1.5))
    draw = jax.jit(jax.vmap(lambda k: ntk_rnn.apply(cfg, ntk_rnn.init_params(cfg, key=k), x)))
    ys = np.asarray(draw(jax.random.split(jax.random.key(0), 500)))[..., 0]  # (draws, n)
    assert _rel(ys.T @ ys / ys.shape[0], nngp_kernel(cfg, x)) < 0.15


# ----------------------------------------------------------------------------- Yang (2020)
#
# Independent NumPy transcription of `rnnntk_batch` in RNN-NTK.ipynb of github.com/thegregyang/NTK4A
# (Greg Yang, "Tensor Programs II: Neural Tangent Kernel for Any Architecture", arXiv:2006.14548), with
# its V-transforms VErf3 and VDerErf3 from that repository's utils.py. Yang's network:
#   h^t = W s^{t-1}/sqrt(m) + U x^t/sqrt(d_x) + b,  s^t = erf(h^t),  s^0 = 0,
#   output v.s^T/sqrt(m) (last state) or v.mean_t(s^t)/sqrt(m) (avgpool),
#   W ~ N(0, varw), U ~ N(0, varu), b ~ N(0, varb), v ~ N(0, varv), all trained.
# Deviation: his VErf3/VDerErf3 add eps = 1e-7 inside arcsin and the square root; eps = 0 here.


def _yang_verf(cov, v1, v2):
    return 2 / np.pi * np.arcsin(cov / np.sqrt((v1 + 0.5) * (v2 + 0.5)))


def _yang_vdererf(cov, v1, v2):
    return 4 / np.pi * ((1 + 2 * v1) * (1 + 2 * v2) - 4 * cov**2) ** -0.5


def _yang_rnn_ntk(ingram, varw, varu, varb, varv, avgpool):
    """ingram[a, b, t, r] = x_{a,t}.x_{b,r} / d_x (n, n, T, T) -> the (n, n) NTK."""
    n, _, T, _ = ingram.shape
    hhcov = np.zeros_like(ingram)  # <h^{t+1}(a), h^{r+1}(b)> / m (pre-activations)
    hcov = np.zeros_like(ingram)  # varw <s^{t+1}(a), s^{r+1}(b)> / m
    hhcov[..., 0, :] = varu * ingram[..., 0, :] + varb
    hhcov[..., :, 0] = varu * ingram[..., :, 0] + varb
    lower = np.tril(np.ones((T, T), bool))  # t >= r, filled by the recursion; t < r by symmetry

    def self_var(cov, times):
        return np.einsum("aatt->at", cov)[:, times]

    for t in range(T):
        r = np.arange(t + 1)
        v1 = self_var(hhcov, [t])[:, :, None]  # (n, 1, 1): sample a at time t
        v2 = self_var(hhcov, r)[None]  # (1, n, t+1): sample b at times r
        hcov[..., t, : t + 1] = varw * _yang_verf(hhcov[..., t, : t + 1], v1, v2)
        if t < T - 1:
            hhcov[..., t + 1, 1 : t + 2] = hcov[..., t, : t + 1] + varu * ingram[..., t + 1, 1 : t + 2] + varb

    def reflect(cov):
        return np.where(lower, cov, np.transpose(cov, (1, 0, 3, 2)))

    hhcov, hcov = reflect(hhcov), reflect(hcov)
    scov = hcov / varw
    var = np.einsum("aatt->at", hhcov)  # (n, T)
    if not avgpool:
        dhcov = np.zeros((n, n, T + 1))
        dhcov[..., T] = varv
        for t in range(T - 1, -1, -1):
            same_time = hhcov[..., t, t]
            dhcov[..., t] = varw * _yang_vdererf(same_time, var[:, None, t], var[None, :, t]) * dhcov[..., t + 1]
        dhcov = dhcov[..., :T] / varw
        buf = np.einsum("abtt->abt", ingram) + 1
        buf[..., 1:] += np.einsum("abtt->abt", scov)[..., :-1]
        return np.einsum("abt,abt->ab", dhcov, buf) + scov[..., -1, -1]
    dscov = np.zeros_like(ingram)  # <ds^{t+1}(a), ds^{r+1}(b)>, the 1/T of the mean left out
    dscov[..., :, -1] = varv
    dscov[..., -1, :] = varv
    for t in range(T - 1, 0, -1):
        r = np.arange(1, t + 1)
        vder = _yang_vdererf(hhcov[..., t, 1 : t + 1], var[:, None, None, t], var[None, :, r])
        dscov[..., t - 1, :t] = varw * vder * dscov[..., t, 1 : t + 1] + varv
    dscov = reflect(dscov)
    dhcov = _yang_vdererf(hhcov, var[:, None, :, None], var[None, :, None, :]) * dscov
    buf = ingram + 1
    buf[..., 1:, 1:] += scov[..., :-1, :-1]
    return (np.einsum("abtr,abtr->ab", dhcov, buf) + scov.sum(axis=(-1, -2))) / T**2


@pytest.mark.parametrize("readout", ["last", "mean"])
@pytest.mark.parametrize("variances", [(1.0, 1.0, 1.0, 1.0), (1.0, 2.0, 0.2, 1.0), (1.6, 0.7, 0.3, 2.5)])
def test_reproduces_yangs_rnn_ntk(variances, readout):
    """Yang's (varw, varu, varb, varv) are our (sigma_w2, sigma_u2, sigma_b2, sigma_v2) in the "ntk"
    parameterization: the same function at init. Yang's parameters are the weights N(0, var) themselves,
    ours are N(0, 1) with multiplier sqrt(var / fan_in), so each parameter's kernel term differs by its
    variance: Yang's NTK = sum_p (ours with trainable=(p,)) / var_p, and equals ours when all are 1."""
    varw, varu, varb, varv = variances
    dx, T = 3, 5
    x = _x(6, 4, T, dx, scale=1.5)
    ingram = np.einsum("atk,brk->abtr", x, x) / dx
    yang = _yang_rnn_ntk(ingram, varw, varu, varb, varv, avgpool=readout == "mean")
    cfg = ntk_rnn.RNNConfig(
        width=8, input_dim=dx, activation="erf", parameterization="ntk", readout=readout,
        sigma_w2=varw, sigma_u2=varu, sigma_b2=varb, sigma_v2=varv, trainable=ALL,
    )  # fmt: skip
    ours = sum(limit_ntk(cfg.replace(trainable=(p,)), x) / v for p, v in zip("WAbB", variances, strict=True))
    np.testing.assert_allclose(ours, yang, rtol=1e-10, atol=0)
    if variances == (1.0, 1.0, 1.0, 1.0):
        np.testing.assert_allclose(limit_ntk(cfg, x), yang, rtol=1e-10, atol=0)


# ----------------------------------------------------------------------------- convergence


def _init(cfg, seed):
    """Parameters drawn like ntk_rnn.init_params (N(0, init_std^2)) but with numpy: init_params compiles
    for about a second at every new width, which would dominate these tests."""
    rng = np.random.default_rng(seed)
    std = cfg.init_std
    return {k: rng.standard_normal(shape) * std[k] for k, shape in cfg.param_shapes.items()}


def _errors(cfg, x, widths, seeds, method, positions=None):
    """Relative Frobenius error of the empirical kernel (/m unless "ntk") to the limit, mean over seeds."""
    limit = limit_ntk(cfg, x, positions=positions)
    out = []
    for m in widths:
        c = cfg.replace(width=m)
        scale = 1.0 if c.parameterization == "ntk" else m
        kernels = (ntk_rnn.empirical_ntk(c, _init(c, s), x, positions=positions, method=method) for s in seeds)
        out.append(float(np.mean([_rel(K / scale, limit) for K in kernels])))
    return np.array(out)


def _check_rate(widths, errors, last_max):
    slope = power_law_fit(widths, errors)["slope"]
    assert -0.8 <= slope <= -0.3, (slope, errors)
    assert errors[-1] < last_max, errors


@pytest.mark.slow
def test_papers_kernel_converges_like_inverse_sqrt_width():
    """relu, paper parameterization, W only (the defaults; structured method): docs/theory.md §3's setting."""
    x = ntk_rnn.synthetic_sequences(key=jax.random.key(1), n=4, length=5, input_dim=6).x
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=6)
    widths = [256, 1024, 4096]
    errors = _errors(cfg, x, widths, seeds=range(6), method="structured")
    _check_rate(widths, errors, last_max=0.15)


@pytest.mark.slow
@pytest.mark.parametrize("readout", ["last", "mean"])
def test_erf_ntk_all_trainable_converges(readout):
    cfg = ntk_rnn.RNNConfig(
        width=8, input_dim=4, activation="erf", parameterization="ntk", trainable=ALL, readout=readout,
        sigma_w2=1.5, sigma_u2=1.2, sigma_b2=0.3, sigma_v2=0.8,
    )  # fmt: skip
    widths = [64, 256, 1024]
    _check_rate(widths, _errors(cfg, _x(7, 5, 4, 4, scale=1.5), widths, range(6), "jacobian"), last_max=0.1)


@pytest.mark.slow
def test_tanh_standard_with_bias_converges():
    """tanh (quadrature), standard parameterization, a bias, readout "all" at two output units."""
    cfg = ntk_rnn.RNNConfig(
        width=8, input_dim=4, output_dim=2, activation="tanh", parameterization="standard", trainable=("W", "b", "B"),
        sigma_w2=1.5, sigma_u2=1.5, sigma_b2=0.5,
    )  # fmt: skip
    widths = [64, 256, 1024]
    errors = _errors(cfg, _x(8, 3, 4, 4), widths, range(4), "jacobian", positions=(3, 1))
    _check_rate(widths, errors, last_max=0.1)


def test_ordering_matches_empirical_kernel():
    """Permuted positions, x2 of another length, two output units: the limit lines up entry by entry
    with the empirical kernel at m = 1024 (error about 0.1), unlike the limit at other orders (0.6-0.9)."""
    cfg = ntk_rnn.RNNConfig(width=1024, input_dim=3, output_dim=2, parameterization="ntk", sigma_b2=0.3, trainable=ALL)
    x1, x2 = _x(9, 2, 4, 3, scale=1.5), _x(10, 3, 3, 3, scale=1.5)
    positions = (2, 0, 1)
    K = ntk_rnn.empirical_ntk(cfg, _init(cfg, 0), x1, x2, positions, method="jacobian")
    limit = limit_ntk(cfg, x1, x2, positions)
    assert K.shape == limit.shape == (2 * 3 * 2, 3 * 3 * 2)
    assert _rel(K, limit) < 0.25
    for other in ((0, 2, 1), (2, 1, 0)):
        assert _rel(K, limit_ntk(cfg, x1, x2, other)) > 0.5


# ----------------------------------------------------------------------------- structure and errors


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(activation="tanh", parameterization="standard", sigma_b2=0.2, trainable=("W", "B"), output_dim=2),
        dict(activation="erf", parameterization="ntk", trainable=ALL, sigma_b2=0.1, readout="last"),
        dict(activation=lambda u: jnp.sin(u) + 0.1 * u, parameterization="ntk", trainable=("W", "A"), readout="mean"),
    ],
)
def test_shape_symmetry_and_psd(options):
    cfg = ntk_rnn.RNNConfig(width=4, input_dim=3, **options)
    x = _x(11, 4, 5, 3, scale=1.3)
    K = limit_ntk(cfg, x, nodes=32)
    empirical = ntk_rnn.empirical_ntk(cfg, _init(cfg, 0), x, method="jacobian")
    assert K.shape == empirical.shape and K.dtype == np.float64
    atol = 1e-14 * np.abs(K).max()
    np.testing.assert_allclose(K, K.T, rtol=1e-12, atol=atol)
    eig = np.linalg.eigvalsh((K + K.T) / 2)
    assert eig.min() >= -1e-10 * eig.max()
    if callable(cfg.activation) or cfg.activation == "tanh":
        return  # quadrature: the same numbers, but each new shape compiles for a few seconds
    # the cross kernel is the off-diagonal block of the joint kernel, and K(x2, x1) = K(x1, x2)^T
    y = _x(12, 2, 5, 3)
    joint = limit_ntk(cfg, np.concatenate([x, y]))
    cross = limit_ntk(cfg, x, y)
    np.testing.assert_allclose(cross, joint[: K.shape[0], K.shape[1] :], rtol=1e-12, atol=atol)
    np.testing.assert_allclose(limit_ntk(cfg, y, x), cross.T, rtol=1e-12, atol=atol)


def test_bad_arguments_raise_clear_errors():
    cfg = ntk_rnn.RNNConfig(width=4, input_dim=3)
    x = _x(0, 2, 3, 3)
    with pytest.raises(ValueError, match=r"shape \(n, L, d_x\)"):
        limit_ntk(cfg, x[0])
    with pytest.raises(ValueError, match="token dimension"):
        limit_ntk(cfg, _x(0, 2, 3, 4))
    with pytest.raises(ValueError, match="positions must lie in"):
        limit_ntk(cfg, x, positions=(3,))
    with pytest.raises(ValueError, match="empty for L=1"):
        limit_ntk(cfg, x[:, :1])
    with pytest.raises(ValueError, match="does not apply to readout='last'"):
        limit_ntk(cfg.replace(readout="last"), x, positions=(1,))
    with pytest.raises(ValueError, match="contains NaN"):
        nngp_kernel(cfg, x * np.nan)
    with pytest.raises(ValueError, match="nodes must be"):
        limit_ntk(cfg, x, nodes=0)
    with pytest.raises(ValueError, match="rule must be"):
        limit_ntk(cfg, x, rule="gauss")
    for phi, value in ((lambda u: jnp.cos(u), "phi\\(0\\) = 1"), (lambda u: u**2, "phi'\\(0\\) = 0")):
        with pytest.raises(ValueError, match=f"{value}.*'standard' or 'ntk'"):
            limit_ntk(cfg.replace(activation=phi), x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        K = limit_ntk(cfg.replace(parameterization="standard", trainable=("A",)), x)
    assert np.all(K == 0) and any("identically 0" in str(w.message) for w in caught)
    assert math.isfinite(float(limit_ntk(cfg, x).sum()))
