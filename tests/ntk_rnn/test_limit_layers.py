"""Infinite-width kernels of stacked and bidirectional Elman RNNs and of right-padded sequences: the RNTK
recursion, truncated sequences, the two directions, and the empirical kernel converging like m^(-1/2)."""

import jax
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


def _padded(x, lengths, seed=99):
    """x with its padded steps overwritten by large junk, which the kernels must ignore."""
    junk = 5.0 * np.random.default_rng(seed).standard_normal(x.shape)
    return np.where(np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None], x, junk)


def _reversed(x, lengths):
    """Each sequence's real steps backwards (padding after them)."""
    out = np.array(x)
    for i, n in enumerate(lengths):
        out[i, :n] = x[i, :n][::-1]
    return out


# ----------------------------------------------------------------------------- the RNTK recursion


def _relu_f_g(sigma):
    """V-transforms of relu on the (n, n) covariance sigma: E[phi(u) phi(v)] and E[phi'(u) phi'(v)]."""
    v = np.diag(sigma)
    root = np.sqrt(np.outer(v, v))
    th = np.arccos(np.clip(sigma / root, -1, 1))
    return root * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi), (np.pi - th) / (2 * np.pi)


def _rntk_last(x, layers, sw2, su2, sb2, sv2):
    """Stacked relu RNTK (ntk parameterization, all trained, last state, equal lengths), same-time pairs:
    Sigma^{j,t} = sw2 F(Sigma^{j,t-1}) + su2 F(Sigma^{j-1,t}) + sb2 (layer 1: su2 x_t.x'_t / d_x),
    Theta^{j,t} = Sigma^{j,t} + sw2 Theta^{j,t-1} G(Sigma^{j,t-1}) + su2 Theta^{j-1,t} G(Sigma^{j-1,t}),
    output sv2 F(Sigma^{top,T}) + sv2 Theta^{top,T} G(Sigma^{top,T})."""
    n, steps, dx = x.shape
    f_prev = [np.zeros((n, n))] * layers  # F(Sigma^{j,t-1}); h_{-1} = 0
    tg_prev = [np.zeros((n, n))] * layers  # Theta^{j,t-1} G(Sigma^{j,t-1})
    for t in range(steps):
        f_below, tg_below = su2 * x[:, t] @ x[:, t].T / dx, None
        f_now, tg_now = [], []
        for j in range(layers):
            sigma = sw2 * f_prev[j] + (f_below if j == 0 else su2 * f_below) + sb2
            theta = sigma + sw2 * tg_prev[j] + (0.0 if j == 0 else su2 * tg_below)
            f, g = _relu_f_g(sigma)
            f_now.append(f)
            tg_now.append(theta * g)
            f_below, tg_below = f, theta * g
        f_prev, tg_prev = f_now, tg_now
    return sv2 * f_prev[-1] + sv2 * tg_prev[-1]


@pytest.mark.parametrize("layers", [2, 3])
def test_stacked_relu_reproduces_the_rntk_recursion(layers):
    sw2, su2, sb2, sv2 = 1.3, 0.8, 0.2, 1.7
    x = _x(0, 4, 5, 3, scale=1.4)
    cfg = ntk_rnn.RNNConfig(
        width=8, input_dim=3, parameterization="ntk", num_layers=layers, readout="last", trainable=ALL,
        sigma_w2=sw2, sigma_u2=su2, sigma_b2=sb2, sigma_v2=sv2,
    )  # fmt: skip
    expected = _rntk_last(x, layers, sw2, su2, sb2, sv2)
    np.testing.assert_allclose(limit_ntk(cfg, x), expected, rtol=1e-12, atol=0)
    # the layers below matter: one layer fewer is far from it
    assert _rel(limit_ntk(cfg.replace(num_layers=layers - 1), x), expected) > 0.05


def test_stacked_forward_covariances():
    """relu, paper, unit tokens: ||h^1_a||^2 -> a + 1 and ||h^2_a||^2 -> ||h^2_{a-1}||^2 + ||h^1_a||^2."""
    x = ntk_rnn.synthetic_sequences(key=jax.random.key(0), n=2, length=5, input_dim=4).x
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=4, num_layers=2)
    top, bottom = forward_kernels(cfg, x).S, forward_kernels(cfg, x, layer=0).S
    a = np.arange(1, 6)
    np.testing.assert_allclose(np.einsum("iaia->ia", bottom), np.tile(a, (2, 1)), rtol=1e-13)
    np.testing.assert_allclose(np.einsum("iaia->ia", top), np.tile(a * (a + 1) / 2, (2, 1)), rtol=1e-13)
    # the bottom layer is the one-layer recursion, compiled into another program: equal to rounding
    one = forward_kernels(cfg.replace(num_layers=1), x).S
    assert np.abs(bottom - one).max() <= 1e-12 * np.abs(one).max()
    with pytest.raises(ValueError, match="layer must lie in"):
        forward_kernels(cfg, x, layer=2)


# ----------------------------------------------------------------------------- lengths and directions

CASES = [
    dict(activation="erf", parameterization="ntk", trainable=ALL, sigma_b2=0.3, num_layers=2, bidirectional=True),
    dict(activation="relu", parameterization="paper", trainable=("W", "A"), num_layers=3),
    dict(activation="relu", parameterization="standard", trainable=("W", "A", "B"), bidirectional=True),
]


@pytest.mark.parametrize(
    "options, readout", [(CASES[0], "all"), (CASES[0], "last"), (CASES[1], "mean"), (CASES[2], "all")]
)
def test_lengths_equal_the_truncated_sequences(options, readout):
    """Each block of sequences of equal lengths (li, lj) is the limit of the unpadded x[:, :li], x'[:, :lj];
    for readout "all" at the positions both have (and all of them where li = lj)."""
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=3, output_dim=2, readout=readout, **options)
    len1, len2 = np.array([5, 2, 5]), np.array([4, 2, 4])
    x1, x2 = _padded(_x(1, 3, 5, 3, scale=1.3), len1), _padded(_x(2, 3, 5, 3, scale=1.3), len2)
    positions = (0, 3, 1, 4) if readout == "all" else None
    K = limit_ntk(cfg, x1, x2, positions, lengths1=len1, lengths2=len2)
    d = cfg.output_dim

    def rows(lengths, i):  # the rows of sample i in K: (position index, unit) pairs of its real positions
        per = [p for p in positions if p < lengths[i]] if positions else [None]
        start = sum(len([p for p in positions if p < n]) if positions else 1 for n in lengths[:i])
        return {p: range(d * (start + k), d * (start + k + 1)) for k, p in enumerate(per)}

    for li in np.unique(len1):
        for lj in np.unique(len2):
            g1, g2 = np.flatnonzero(len1 == li), np.flatnonzero(len2 == lj)
            shared = tuple(p for p in positions if p < min(li, lj)) if positions else None
            block = limit_ntk(cfg, x1[g1, :li], x2[g2, :lj], shared)
            per = d * (len(shared) if shared else 1)
            for a, i in enumerate(g1):
                for b, j in enumerate(g2):
                    r1, r2 = rows(len1, i), rows(len2, j)
                    keys = shared or [None]
                    got = K[np.ix_([r for p in keys for r in r1[p]], [r for p in keys for r in r2[p]])]
                    want = block[a * per : (a + 1) * per, b * per : (b + 1) * per]
                    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14 * np.abs(K).max())
    # full lengths are the same kernel as no lengths
    full = limit_ntk(cfg, x1, x2, positions, lengths1=np.full(3, 5), lengths2=np.full(3, 5))
    np.testing.assert_allclose(full, limit_ntk(cfg, x1, x2, positions), rtol=1e-12, atol=1e-14 * np.abs(K).max())


def test_last_with_lengths_is_one_diagonal_per_pair():
    """Sequences of up to 20000 steps: readout "last" with lengths scans one masked diagonal (a grid over
    the padded steps would hold 3 * 2 * 20000^2 entries per layer), equal to each truncated pair's limit."""
    cfg = ntk_rnn.RNNConfig(
        width=8, input_dim=2, parameterization="ntk", readout="last", trainable=ALL, num_layers=2, bidirectional=True,
        sigma_w2=0.9, sigma_u2=1.0, sigma_b2=0.1,
    )  # fmt: skip
    len1, len2 = np.array([20000, 7000, 3]), np.array([12000, 1])
    x1, x2 = _padded(_x(3, 3, 20000, 2), len1), _padded(_x(4, 2, 12000, 2), len2)
    K = limit_ntk(cfg, x1, x2, lengths1=len1, lengths2=len2)
    expected = [[limit_ntk(cfg, x1[i : i + 1, :li], x2[j : j + 1, :lj])[0, 0] for j, lj in enumerate(len2)]
                for i, li in enumerate(len1)]  # fmt: skip
    np.testing.assert_allclose(K, expected, rtol=1e-11)


@pytest.mark.parametrize("readout", ["all", "last", "mean"])
def test_bidirectional_is_the_sum_of_two_directions(readout):
    """K(x, x') + K(rev x, rev x') from one-direction limits; for "all" the reverse term of (l, l') sits at
    (len-1-l, len'-1-l'). Readout B trained: its term appears once per direction."""
    cfg = ntk_rnn.RNNConfig(
        width=8, input_dim=3, output_dim=2, activation="erf", parameterization="ntk", readout=readout,
        trainable=("W", "B"), sigma_b2=0.2, num_layers=2,
    )  # fmt: skip
    len1, len2 = np.array([4, 2, 3]), np.array([1, 4])
    x1, x2 = _padded(_x(5, 3, 4, 3, scale=1.3), len1), _padded(_x(6, 2, 4, 3, scale=1.3), len2)
    positions = tuple(range(4)) if readout == "all" else None
    kw = dict(lengths1=len1, lengths2=len2)
    r1, r2 = _reversed(x1, len1), _reversed(x2, len2)

    def realign(K):  # row (i, l, unit) of the reversed sequences is row (i, len_i-1-l, unit) of x
        if readout != "all":
            return K
        index = [(np.repeat(np.cumsum(n) - n, n) + np.concatenate([np.arange(k)[::-1] for k in n]))[:, None] * 2
                 + np.arange(2) for n in (len1, len2)]  # fmt: skip
        return K[np.ix_(index[0].ravel(), index[1].ravel())]

    for kernel in (limit_ntk, nngp_kernel):
        both = kernel(cfg.replace(bidirectional=True), x1, x2, positions, **kw)
        forward = kernel(cfg, x1, x2, positions, **kw)
        backward = realign(kernel(cfg, r1, r2, positions, **kw))
        np.testing.assert_allclose(both, forward + backward, rtol=1e-12, atol=1e-14 * np.abs(both).max())
        assert _rel(both, 2 * forward) > 0.01  # the reverse direction is a different kernel


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gated_cells_need_a_key(cell):
    cfg = ntk_rnn.RNNConfig(width=4, input_dim=3, cell=cell)
    for kernel in (limit_ntk, nngp_kernel):
        with pytest.raises(ValueError, match=f"cell='{cell}' has no closed-form limit.*key=jax.random.key"):
            kernel(cfg, _x(0, 2, 3, 3))
    with pytest.raises(ValueError, match="no closed-form limit, so no limit kernel function"):
        ntk_rnn.limit_ntk_fn(cfg)


# ----------------------------------------------------------------------------- convergence


def _init(cfg, seed):
    """Parameters N(0, init_std^2) drawn with numpy (no compilation per width)."""
    rng = np.random.default_rng(seed)
    std = cfg.init_std
    return {k: rng.standard_normal(shape) * std[k] for k, shape in cfg.param_shapes.items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "options, last_max",
    [
        (dict(activation="relu", parameterization="paper", readout="all", trainable=("W", "A")), 0.15),
        (dict(activation="erf", parameterization="ntk", readout="last", trainable=ALL, sigma_b2=0.3), 0.1),
        (dict(activation="tanh", parameterization="standard", readout="mean", trainable=("W", "A", "B"),
              sigma_b2=0.2), 0.1),
    ],
)  # fmt: skip
def test_stacked_bidirectional_with_lengths_converges(options, last_max):
    """Two layers, both directions, lengths (4, 2, 3): the structured empirical kernel (/m unless "ntk"),
    mean over 4 seeds, approaches the limit like m^-1/2."""
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=3, num_layers=2, bidirectional=True, sigma_w2=1.5, sigma_u2=1.3,
                            **options)  # fmt: skip
    lengths = np.array([4, 2, 3])
    x = _padded(_x(7, 3, 4, 3, scale=1.3), lengths)
    limit = limit_ntk(cfg, x, lengths1=lengths)
    widths = [128, 512, 2048]
    errors = []
    for m in widths:
        c = cfg.replace(width=m)
        scale = 1.0 if c.parameterization == "ntk" else m
        kernels = [ntk_rnn.empirical_ntk(c, _init(c, s), x, lengths1=lengths) / scale for s in range(4)]
        errors.append(float(np.mean([_rel(K, limit) for K in kernels])))
    slope = power_law_fit(widths, errors)["slope"]
    assert -0.8 <= slope <= -0.3, (slope, errors)
    assert errors[-1] < last_max, errors
