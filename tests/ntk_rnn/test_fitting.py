"""Straight-line fits: the convergence rate of a loss curve and log-log exponents."""

import numpy as np
import pytest

from ntk_rnn.training.fitting import fit_log_rate, joint_power_law_fit, linear_fit, power_law_fit, predicted_log_rate


def test_rate_fit_recovers_an_exact_exponential():
    steps = np.arange(0, 201, 10)
    fit = fit_log_rate(steps, 3.0 * np.exp(-0.02 * steps))
    assert fit["fitted_log_rate"] == pytest.approx(-0.02, rel=1e-10)
    assert predicted_log_rate(0.1, 2.0) == pytest.approx(2 * np.log(0.8))


def test_linear_fit_interval_covers_the_true_slope_and_power_laws_fit_in_logs():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 40)
    covered = 0
    for _ in range(200):
        fit = linear_fit(x, 2.0 * x + 1.0 + 0.1 * rng.standard_normal(x.size))
        covered += fit["ci95"][0] <= 2.0 <= fit["ci95"][1]
    assert 0.9 <= covered / 200 <= 0.99  # a 95% interval, up to sampling error over 200 fits
    assert np.isnan(linear_fit([1, 2], [1, 2])["slope"]) and linear_fit([1, 2], [1, 2])["points"] == 2
    m = np.array([64, 128, 256, 512])
    fit = power_law_fit(m, 3.0 * m**-0.5)
    assert fit["slope"] == pytest.approx(-0.5, rel=1e-12) and fit["intercept"] == pytest.approx(np.log(3.0))


def test_joint_power_law_fit_recovers_exponents_and_its_intervals_cover_them():
    rng = np.random.default_rng(1)
    m, length = (a.ravel() for a in np.meshgrid([64.0, 128, 256, 512, 1024], [2.0, 4, 8, 16]))
    exact = joint_power_law_fit(3.0 * length**0.7 * m**-0.5, {"L": length, "m": m})
    assert exact["exponents"]["L"] == pytest.approx(0.7, rel=1e-12)
    assert exact["exponents"]["m"] == pytest.approx(-0.5, rel=1e-12)
    assert exact["intercept"] == pytest.approx(np.log(3.0), rel=1e-12)
    covered = 0
    for _ in range(200):
        fit = joint_power_law_fit(
            length**0.7 * m**-0.5 * np.exp(0.1 * rng.standard_normal(m.size)), {"L": length, "m": m}
        )
        covered += fit["ci95"]["m"][0] <= -0.5 <= fit["ci95"]["m"][1]
    assert 0.9 <= covered / 200 <= 0.99
    constant = joint_power_law_fit(m, {"L": np.full(m.size, 4.0), "m": m})
    assert np.isnan(constant["exponents"]["L"])
    with pytest.raises(ValueError, match="factor 'L'"):
        joint_power_law_fit(m, {"L": length[:3]})
