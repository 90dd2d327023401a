"""The per-unit process (ntk_rnn.kernels.unit_process) behind the GRU's and LSTM's limits.

Its machinery is the same for every cell; only the cell's step differs. So it is checked on an Elman cell
presented as a user cell, against the exact Elman recursion, over layers, directions, stackings, readouts, lengths,
biases and parameterizations; and on the GRU and LSTM against the mean of wide networks. The independent
transcription lives in test_unit_process_independent.py, GP4A's erf-GRU in test_gp4a_gru.py.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.kernels.unit_process import exact_units, working_bytes
from ntk_rnn.network.cells import Cell, elman_cell

TANH_ELMAN = dataclasses.replace(elman_cell(jnp.tanh), name="tanh-elman")  # not "elman": takes the Monte Carlo path


def _x(seed, n, length, dx=2):
    return np.random.default_rng(seed).normal(size=(n, length, dx))


def _frobenius_z(est, exact) -> float:
    """||mean - exact||_F / ||stderr||_F: about 1 when the estimate is unbiased and its error bars are honest."""
    return float(np.linalg.norm(est.mean - exact) / np.linalg.norm(est.stderr))


ELMAN_CASES = {
    "standard, all, lengths": dict(parameterization="standard", readout="all"),
    "ntk, bidirectional, last, lengths": dict(parameterization="ntk", readout="last", bidirectional=True),
    "ntk, concat stack, mean, both biases": dict(
        parameterization="ntk",
        readout="mean",
        bidirectional=True,
        num_layers=2,
        stacking="concat",
        hidden_bias=True,
        trainable=("W", "A", "b", "bh", "B"),
    ),
    "paper, two layers, all, lengths": dict(
        parameterization="paper", readout="all", num_layers=2, trainable=("W", "A")
    ),
}


@pytest.mark.parametrize("case", ELMAN_CASES)
def test_the_process_of_an_elman_cell_is_the_exact_limit(case):
    kw = dict(width=8, input_dim=2, activation="tanh", sigma_w2=1.5, sigma_u2=1.0, sigma_b2=0.3,
              trainable=("W", "A", "b", "B")) | ELMAN_CASES[case]  # fmt: skip
    cfg = ntk_rnn.RNNConfig(**kw)
    mc = dataclasses.replace(cfg, cell=TANH_ELMAN)
    x1, x2 = _x(0, 3, 4), _x(1, 2, 3)
    lengths = dict(lengths1=[4, 2, 3], lengths2=[3, 1])
    positions = (0, 1, 2) if cfg.readout == "all" else None
    key = jax.random.key(3)
    kernels = (ntk_rnn.limit_ntk, ntk_rnn.nngp_kernel) if cfg.num_layers == 1 else (ntk_rnn.limit_ntk,)
    for kernel in kernels:  # the NNGP is beta S, a term of the NTK: checked on its own where it is cheap
        exact = kernel(cfg, x1, x2, positions, **lengths)
        est = kernel(mc, x1, x2, positions, **lengths, key=key, samples=2**14, replicates=8)
        assert est.mean.shape == est.stderr.shape == exact.shape
        if cfg.parameterization == "paper":  # a linear unit: the exact run on the basis of its Gaussian inputs
            assert est.samples == 0 and not est.stderr.any()
            np.testing.assert_allclose(est.mean, exact, rtol=1e-9, atol=1e-12 * np.abs(exact).max())
            continue
        assert 0.3 < _frobenius_z(est, exact) < 2.5, case
        assert np.linalg.norm(est.stderr) < 0.05 * np.linalg.norm(exact)  # the error bar is informative


def test_a_wrong_limit_is_many_standard_errors_away():
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=2, activation="tanh", parameterization="ntk", sigma_w2=1.5,
                            trainable=("W", "A", "B"))  # fmt: skip
    x = _x(0, 3, 4)
    est = ntk_rnn.limit_ntk(dataclasses.replace(cfg, cell=TANH_ELMAN), x, key=jax.random.key(0), samples=2**16)
    assert _frobenius_z(est, ntk_rnn.limit_ntk(cfg, x)) < 2.5
    wrong = ntk_rnn.limit_ntk(dataclasses.replace(cfg, sigma_w2=1.2), x)  # sigma_w2 20% off
    assert _frobenius_z(est, wrong) > 5


@pytest.mark.parametrize(
    "cell, extra",
    [("gru", dict(hidden_bias=True, trainable=("W", "A", "b", "bh", "B"))), ("lstm", {})],
)
def test_wide_gated_networks_approach_the_limit(cell, extra):
    kw = dict(input_dim=2, cell=cell, parameterization="standard", sigma_b2=0.3, trainable=("W", "A", "b", "B"))
    x, positions = _x(2, 2, 3), (0, 1, 2)
    est = ntk_rnn.limit_ntk(ntk_rnn.RNNConfig(width=8, **kw | extra), x, positions=positions, key=jax.random.key(1),
                            samples=2**15)  # fmt: skip
    errors = {}
    for width in (64, 1024):
        cfg = ntk_rnn.RNNConfig(width=width, **kw | extra)
        kernels = [
            ntk_rnn.empirical_ntk(cfg, ntk_rnn.init_params(cfg, key=jax.random.key(s)), x, positions=positions) / width
            for s in range(6)
        ]
        errors[width] = np.linalg.norm(np.mean(kernels, 0) - est.mean) / np.linalg.norm(est.mean)
    assert errors[1024] < 0.04
    assert errors[64] > 2 * errors[1024]  # m^-1/2 would give 4


def test_the_same_key_gives_the_same_numbers_and_the_error_bars_are_honest():
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=2, cell="lstm", parameterization="ntk", readout="last",
                            trainable=("W", "A", "B"))  # fmt: skip
    x = _x(4, 4, 3)
    a = ntk_rnn.limit_ntk(cfg, x, key=jax.random.key(5), samples=4096)
    np.testing.assert_array_equal(a.mean, ntk_rnn.limit_ntk(cfg, x, key=jax.random.key(5), samples=4096).mean)
    b = ntk_rnn.limit_ntk(cfg, x, key=jax.random.key(6), samples=4096)
    ratio = np.linalg.norm(a.mean - b.mean) / np.sqrt(np.linalg.norm(a.stderr) ** 2 + np.linalg.norm(b.stderr) ** 2)
    assert 0.3 < ratio < 2.5
    assert (a.samples, a.replicates) == (4096, 8)
    np.testing.assert_allclose(a.mean, a.mean.T, atol=1e-12)


def _w_after_reset(params, h, x):
    m = h.shape[0]
    gx = params["A"] @ x
    z = params["W"] @ (jax.nn.sigmoid(gx[:m]) * h)  # W reads the reset state, not h
    return jnp.tanh(gx[m:] + z[:m] + z[m:])


def _offset(params, h, x):
    return jnp.tanh(params["W"] @ h + params["A"] @ x) + 1.0


def test_what_has_no_limit_here_is_refused_before_any_work():
    x = _x(0, 2, 3)
    gru = ntk_rnn.RNNConfig(width=8, input_dim=2, cell="gru", parameterization="standard")
    with pytest.raises(ValueError, match="Elman limit is exact: pass key=None"):
        ntk_rnn.limit_ntk(ntk_rnn.RNNConfig(width=8, input_dim=2), x, key=jax.random.key(0))
    with pytest.raises(ValueError, match="replicates >= 2"):
        ntk_rnn.limit_ntk(gru, x, key=jax.random.key(0), replicates=1)
    with pytest.raises(ValueError, match="samples=8 must be at least 2 \\* replicates = 16"):
        ntk_rnn.nngp_kernel(gru, x, key=jax.random.key(0), samples=8)
    with pytest.raises(ValueError, match=r"needs about .* GiB, over max_bytes"):
        ntk_rnn.limit_ntk(gru, x, key=jax.random.key(0), max_bytes=10**5)
    with pytest.raises(ValueError, match="output and path apply to the exact Elman limit"):
        ntk_rnn.limit_ntk(gru, x, key=jax.random.key(0), output="jax")
    reset_first = ntk_rnn.RNNConfig(width=8, input_dim=2, cell=Cell("reset-first", _w_after_reset, gates=2),
                                    parameterization="standard")  # fmt: skip
    with pytest.raises(ValueError, match="needs a step that uses params\\['W'\\] @ h"):
        ntk_rnn.limit_ntk(reset_first, x, key=jax.random.key(0))
    offset = ntk_rnn.RNNConfig(width=8, input_dim=2, cell=Cell("offset", _offset))
    with pytest.raises(ValueError, match="needs step\\(0, 0\\) = 0"):
        ntk_rnn.limit_ntk(offset, x, key=jax.random.key(0))


def test_the_paper_gru_is_a_linear_gaussian_recursion():
    """In "paper" every pre-activation is O(m^-1/2): r = z = 1/2, tanh is the identity, and the GRU's unit is
    h_t = h_{t-1} / 2 + (u^A_t + b_n + u^W_t / 2) / 2, linear in Gaussians. Its kernels follow in closed form:
    h = C u with C_{t,tau} = 2^-(t-tau+1), so S = C (Cov u^A + Cov u^W / 4) C^T and T likewise (theory §15).
    The module computes them exactly too, by running the unit on the basis of its Gaussian inputs."""
    sw2, su2, sb2 = 1.5, 1.0, 0.3
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=3, cell="gru", parameterization="paper", sigma_w2=sw2, sigma_u2=su2,
                            sigma_b2=sb2, trainable=("W", "A", "b"), readout="all")  # fmt: skip
    x = _x(5, 3, 4, 3)
    n, length = x.shape[:2]
    flat = x.reshape(n * length, 3)
    c = np.kron(np.eye(n), np.tril(0.5 ** (np.arange(length)[:, None] - np.arange(length)[None] + 1.0)))

    def shifted(a):
        a4 = np.zeros((n, length, n, length))
        a4[:, 1:, :, 1:] = a.reshape(n, length, n, length)[:, :-1, :, :-1]
        return a4.reshape(a.shape)

    s = t = np.zeros((n * length, n * length))
    for _ in range(length):  # causal: each pass makes one more step exact
        s, t = (c @ (su2 * flat @ flat.T + sb2 + sw2 * shifted(s) / 4) @ c.T,
                c @ (flat @ flat.T + 1.0 + (shifted(s) + sw2 * shifted(t)) / 4) @ c.T)  # fmt: skip
    positions = tuple(range(length))
    for kernel, exact in ((ntk_rnn.nngp_kernel, s), (ntk_rnn.limit_ntk, t)):  # sigma_v2 / d = 1
        est = kernel(cfg, x, positions=positions, key=jax.random.key(2))
        np.testing.assert_allclose(est.mean, exact, rtol=1e-9, atol=1e-12 * np.abs(exact).max())


def test_the_exact_run_gives_way_to_the_monte_carlo_where_it_does_not_fit():
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=2, cell="lstm", parameterization="paper", trainable=("W", "A"))
    x = _x(6, 3, 4)
    exact = ntk_rnn.limit_ntk(cfg, x, key=jax.random.key(0))
    assert exact.samples == 0 and not exact.stderr.any()
    units = 32  # the exact run has 88 units here
    exact_bytes = working_bytes(cfg, 3, 4, exact_units(cfg, 3, 4))
    budget = working_bytes(cfg, 3, 4, units)
    assert exact_bytes > budget
    est = ntk_rnn.limit_ntk(cfg, x, key=jax.random.key(0), samples=8 * units, max_bytes=budget)
    assert est.samples == 8 * units
    assert 0.3 < _frobenius_z(est, exact.mean) < 2.5
