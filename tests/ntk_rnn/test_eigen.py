"""The generic extreme eigenpair solver (ntk_rnn.eigen.lobpcg) on dense PSD matrices, against scipy.linalg.eigh."""

import jax
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse.linalg

from ntk_rnn.eigen.lobpcg import EigenvalueConvergenceError, extreme_eigenpairs


def _psd(size: int, seed: int = 0, cond: float = 1e5) -> np.ndarray:
    """A PSD matrix with a spread diagonal, clustered smallest and decaying largest eigenvalues."""
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((size, size)))[0]
    w = np.concatenate([1 + 0.1 * np.arange(4), np.geomspace(2, cond, size - 4)])
    scale = np.geomspace(1, 5, size)[rng.permutation(size)]
    return scale[:, None] * ((Q * w) @ Q.T) * scale[None]


def _solve(K: np.ndarray, groups=None, blocks=None, **kwargs):
    return extreme_eigenpairs(scipy.sparse.linalg.aslinearoperator(K), np.diag(K), lambda idx: K[:, idx],
                              groups=groups, diag_blocks=blocks, **kwargs)  # fmt: skip


@pytest.mark.parametrize("k, grouped", [(1, False), (3, True)])
def test_pairs_match_dense_eigh(k, grouped):
    K = _psd(300)
    groups = np.repeat(np.arange(100), 3) if grouped else None
    blocks = [K[3 * g : 3 * g + 3, 3 * g : 3 * g + 3] for g in range(100)] if grouped else None
    result = _solve(K, groups, blocks, k=k, key=jax.random.key(1))
    eig = scipy.linalg.eigvalsh(K)
    np.testing.assert_allclose(result.smallest, eig[:k], rtol=1e-8)
    np.testing.assert_allclose(result.largest, eig[-k:], rtol=1e-12)
    assert result.lambda_min == result.smallest[0] and result.lambda_max == result.largest[-1]
    for lam, V in ((result.smallest, result.smallest_vectors), (result.largest, result.largest_vectors)):
        assert V.shape == (300, k)
        np.testing.assert_allclose(np.linalg.norm(V, axis=0), 1.0, rtol=1e-10)
        assert np.linalg.norm(K @ V - V * lam, axis=0).max() <= 10 * 1e-10 * eig[-1]
    assert result.matvecs > 0 and result.columns > 0 and result.size == 300


def test_uneven_groups_and_zero_rows():
    """Groups of different sizes; zero rows give exact zero eigenvalues with unit eigenvectors."""
    K = _psd(200, seed=2, cond=1e4)
    K[[5, 77]] = 0.0
    K[:, [5, 77]] = 0.0
    groups = np.repeat(np.arange(80), np.resize([1, 2, 3, 4], 80))
    result = _solve(K, groups, k=3, key=jax.random.key(0))
    eig = scipy.linalg.eigvalsh(K)
    assert result.smallest[0] == result.smallest[1] == 0.0
    assert result.smallest[2] == pytest.approx(eig[2], rel=1e-8)
    assert sorted(np.flatnonzero(result.smallest_vectors[:, :2].any(axis=1))) == [5, 77]
    np.testing.assert_allclose(result.largest, eig[-3:], rtol=1e-12)


def test_small_matrix_is_diagonalized_densely():
    K = _psd(20, seed=3, cond=1e3)
    result = _solve(K, k=2)
    eig = scipy.linalg.eigvalsh(K)
    np.testing.assert_allclose(result.smallest, eig[:2], rtol=1e-10)
    np.testing.assert_allclose(result.largest, eig[-2:], rtol=1e-12)
    assert result.matvecs == 20 and result.columns == 0


def test_unconverged_run_raises():
    with pytest.raises(EigenvalueConvergenceError, match="did not converge"):
        _solve(_psd(300), maxiter=2, rank=10)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(k=0), "k must be an int"), (dict(tol=0.0), "tol must be a float"), (dict(maxiter=0), "maxiter must be")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _solve(np.eye(50), **kwargs)
