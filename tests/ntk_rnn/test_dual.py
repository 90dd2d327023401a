"""The dual activations (V-transforms): closed forms against Monte Carlo and quadrature, degenerate
covariances, broadcasting and jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from ntk_rnn.kernels.dual import dual, dual_derivative, dual_pair, normal_rule

# covariances (q11, q12, q22): generic, unequal, negative, near-degenerate, degenerate, zero variance
COVS = np.array(
    [
        [1.0, 0.3, 1.0],
        [2.0, -0.9, 0.7],
        [0.5, 0.99, 2.0],
        [1.5, -1.2, 1.3],
        [1.0, 1.0, 1.0],
        [2.0, -2.0, 2.0],
        [0.0, 0.0, 1.0],
    ]
)


def _gaussian_pairs(q11, q12, q22, samples, seed):
    """(samples, 2) draws of N(0, [[q11, q12], [q12, q22]]) (eigen-factor: degenerate ones too)."""
    w, v = np.linalg.eigh(np.array([[q11, q12], [q12, q22]]))
    return np.random.default_rng(seed).standard_normal((samples, 2)) @ (v * np.sqrt(np.maximum(w, 0))).T


def _mean_and_error(f, z):
    prod = f(z[:, 0]) * f(z[:, 1])
    return prod.mean(), prod.std() / np.sqrt(z.shape[0])


NUMPY_PAIRS = {  # phi and phi' in numpy
    "relu": (lambda u: np.maximum(u, 0.0), lambda u: (u > 0).astype(float)),
    "step": (lambda u: (u > 0).astype(float), lambda u: 0.0 * u),
    "erf": (scipy.special.erf, lambda u: 2 / np.sqrt(np.pi) * np.exp(-(u**2))),
    "linear": (lambda u: u, lambda u: 1.0 + 0.0 * u),
}


def test_closed_forms_match_monte_carlo():
    """2e6 samples per covariance; every closed form lies within 5 standard errors (+1e-12)."""
    closed = {name: [np.asarray(t) for t in dual_pair(name, *COVS.T)] for name in NUMPY_PAIRS}
    for row, cov in enumerate(COVS):
        z = _gaussian_pairs(*cov, 2_000_000, seed=row)
        for name, fns in NUMPY_PAIRS.items():
            for f, value in zip(fns, closed[name], strict=True):
                mean, err = _mean_and_error(f, z)
                assert abs(value[row] - mean) <= 5 * err + 1e-12, (name, row, value[row], mean, err)


@pytest.mark.parametrize("rule", ["trapezoid", "hermite"])
@pytest.mark.parametrize(
    "name, fn, tol",
    [
        ("erf", lambda u: jax.scipy.special.erf(u + 0.0), 1e-10),
        ("linear", lambda u: 1.0 * u, 1e-12),
        ("relu", lambda u: jnp.where(u > 0, u, 0.0), 2e-3),  # kink: quadrature converges slowly
        ("step", lambda u: jnp.where(u > 0, 1.0, 0.0), 2e-2),  # jump: slower still
    ],
)
def test_closed_forms_match_quadrature(name, fn, tol, rule):
    """The same activation as an anonymous callable goes through the 2-D quadrature (100 nodes)."""
    covs = COVS[:-3] if name == "erf" else COVS  # moderate variances for the 1e-10 check
    closed = np.array(dual_pair(name, *covs.T))
    quad = np.array(dual_pair(fn, *covs.T, nodes=100, rule=rule))
    np.testing.assert_allclose(quad[0], closed[0], atol=tol)
    np.testing.assert_allclose(quad[1], closed[1], atol={"relu": 2e-2, "step": 1e-14}.get(name, tol))


def test_tanh_quadrature_matches_monte_carlo_and_converges_in_nodes():
    covs = COVS[:5]
    value = np.asarray(dual("tanh", *covs.T))
    deriv = np.asarray(dual_derivative("tanh", *covs.T))
    for row, cov in enumerate(covs):
        z = _gaussian_pairs(*cov, 2_000_000, seed=10 + row)
        for f, expected in ((np.tanh, value), (lambda u: 1 - np.tanh(u) ** 2, deriv)):
            mean, err = _mean_and_error(f, z)
            assert abs(expected[row] - mean) <= 5 * err, (row, expected[row], mean, err)
    # variances <= 2: the default (64-node trapezoid) is within 1e-8 of 300 nodes, and so is
    # Gauss-Hermite at 150 nodes (at 64 it is off by 1e-5: tanh's complex poles slow it down)
    fine = np.array(dual_pair("tanh", *covs.T, nodes=300))
    np.testing.assert_allclose(np.array(dual_pair("tanh", *covs.T)), fine, atol=1e-8)
    np.testing.assert_allclose(np.array(dual_pair("tanh", *covs.T, nodes=150, rule="hermite")), fine, atol=1e-8)
    # the quadrature is exactly symmetric in the two variables
    swapped = np.array(dual_pair("tanh", covs[:, 2], covs[:, 1], covs[:, 0]))
    np.testing.assert_array_equal(swapped, np.array(dual_pair("tanh", *covs.T)))


def test_degenerate_covariances_give_exact_values_and_no_nan():
    q = np.array([0.0, 1.0, 2.0, 2.0, 1.0])
    q12 = np.array([0.0, 1.0, -2.0, 2.0 + 1e-12, 0.0])  # 0, rho = 1, rho = -1, rho slightly > 1 (clipped), 0
    q22 = np.array([0.0, 1.0, 2.0, 2.0, 0.0])
    for name in ("relu", "step", "erf", "linear", "tanh"):
        s, k = (np.asarray(t) for t in dual_pair(name, q, q12, q22))
        assert np.all(np.isfinite(s)) and np.all(np.isfinite(k)), name
    s, k = (np.asarray(t) for t in dual_pair("relu", q, q12, q22))
    np.testing.assert_allclose(s, [0, 0.5, 0, 1.0, 0], atol=1e-15)  # E relu(u)^2 = q/2
    np.testing.assert_allclose(k, [0, 0.5, 0, 0.5, 0], atol=1e-15)  # relu'(0) = 0 at zero variance
    s, k = (np.asarray(t) for t in dual_pair("erf", q, q12, q22))
    np.testing.assert_allclose(s[1], 2 / np.pi * np.arcsin(2 / 3), rtol=1e-14)
    np.testing.assert_allclose(k[1], 4 / np.pi / np.sqrt(5), rtol=1e-14)
    # quadrature of a degenerate pair is the 1-D rule
    z, w = normal_rule(64)  # the default rule
    one_d = np.sum(w * np.tanh(np.sqrt(2) * z) * np.tanh(-np.sqrt(2) * z))
    np.testing.assert_allclose(float(dual("tanh", 2.0, -2.0, 2.0)), one_d, rtol=1e-13)


def test_duals_broadcast_and_jit():
    q11 = np.full((3, 1), 1.0)
    q22 = np.linspace(0.5, 2, 4)[None, :]
    out = jax.jit(lambda a, b, c: dual_pair("relu", a, b, c))(q11, 0.2, q22)
    assert out[0].shape == out[1].shape == (3, 4)
    with pytest.raises(ValueError, match="activation must be"):
        dual("gelu", 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="nodes"):
        dual("tanh", 1.0, 0.0, 1.0, nodes=1)
    with pytest.raises(ValueError, match="rule must be"):
        dual("tanh", 1.0, 0.0, 1.0, rule="simpson")
    with pytest.raises(ValueError, match="overflow"):
        dual("tanh", 1.0, 0.0, 1.0, nodes=400, rule="hermite")
