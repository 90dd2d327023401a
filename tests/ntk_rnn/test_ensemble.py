"""The infinite-ensemble moments against Monte Carlo over initializations, the GP posterior and sklearn's
kernel ridge; the stratified folds; the cross-validated ridge and SVM fits; and their errors."""

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVC

from ntk_rnn.training.ensemble import RIDGES, SVM_CS, ensemble_moments, fit_ridge, fit_svm, stratified_folds, svm_scale

N_TRAIN, N_TEST = 6, 3


def _joint_kernels(seed, features=10):
    """(Theta, K): two random positive definite kernels on N_TRAIN + N_TEST points jointly, from random
    feature matrices (Theta's features are independent of K's)."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    phi, psi = rng.normal(size=(n, features)), rng.normal(size=(n, features))
    return phi @ phi.T / features, psi @ psi.T / features


def _moments(theta, k, y, ridge=0.0, n=N_TRAIN):
    """ensemble_moments on the train / test blocks of joint kernels."""
    return ensemble_moments(theta[:n, :n], theta[n:, :n], y, k[:n, :n], k[n:, :n], np.diag(k)[n:], ridge)


@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_moments_match_monte_carlo_over_initializations(ridge):
    """Draw f_0 ~ N(0, K) jointly on train and test points, apply the converged linearized dynamics
    f = f_0(x) + Theta(x, X) (Theta + r I)^{-1} (Y - f_0(X)) per draw: the sample mean and variance at
    the test points match the closed form within 5 Monte Carlo standard errors (200000 draws)."""
    theta, k = _joint_kernels(0)
    rng = np.random.default_rng(1)
    y = rng.normal(size=(N_TRAIN, 2))
    mean, var = _moments(theta, k, y, ridge)
    assert mean.shape == (N_TEST, 2) and var.shape == (N_TEST,)

    draws = 200_000
    f0 = rng.multivariate_normal(np.zeros(N_TRAIN + N_TEST), k, size=(draws, 2), method="cholesky")  # (S, C, N)
    gain = theta[N_TRAIN:, :N_TRAIN] @ np.linalg.inv(theta[:N_TRAIN, :N_TRAIN] + ridge * np.eye(N_TRAIN))
    f = f0[..., N_TRAIN:] + (y.T[None] - f0[..., :N_TRAIN]) @ gain.T  # (S, C, N_test)
    sample_mean, sample_var = f.mean(axis=0).T, f.var(axis=0, ddof=1).T  # (N_test, C)
    mean_se = np.sqrt(var / draws)[:, None]
    var_se = var[:, None] * np.sqrt(2.0 / (draws - 1))
    assert np.all(np.abs(sample_mean - mean) < 5 * mean_se)
    assert np.all(np.abs(sample_var - var[:, None]) < 5 * var_se)


def test_nngp_at_zero_ridge_is_the_gp_posterior():
    """Theta = K, r = 0: mean K*X K^-1 Y and variance K** - K*X K^-1 KX*, to 1e-10."""
    _, k = _joint_kernels(2)
    y = np.random.default_rng(3).normal(size=N_TRAIN)
    mean, var = _moments(k, k, y)
    kxx, kx, kss = k[:N_TRAIN, :N_TRAIN], k[N_TRAIN:, :N_TRAIN], k[N_TRAIN:, N_TRAIN:]
    np.testing.assert_allclose(mean, kx @ np.linalg.solve(kxx, y), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(var, np.diag(kss - kx @ np.linalg.solve(kxx, kx.T)), rtol=1e-10, atol=1e-12)
    assert mean.shape == (N_TEST,)


@pytest.mark.parametrize("ridge", [1e-3, 0.5])
def test_mean_with_ridge_is_sklearn_kernel_ridge(ridge):
    """The ensemble mean with ridge r is kernel ridge regression on Theta with alpha = r (sklearn)."""
    theta, k = _joint_kernels(4)
    y = np.random.default_rng(5).normal(size=(N_TRAIN, 3))
    mean, _ = _moments(theta, k, y, ridge)
    krr = KernelRidge(alpha=ridge, kernel="precomputed").fit(theta[:N_TRAIN, :N_TRAIN], y)
    np.testing.assert_allclose(mean, krr.predict(theta[N_TRAIN:, :N_TRAIN]), rtol=1e-10, atol=1e-12)


def test_singular_ntk_uses_its_range_only():
    """A rank-3 Theta on 6 training points: GD does not move its null space, so the mean is
    Theta(x, X) pinv(Theta) Y, finite."""
    theta, k = _joint_kernels(6, features=3)
    y = np.random.default_rng(7).normal(size=N_TRAIN)
    mean, var = _moments(theta, k, y)
    expected = theta[N_TRAIN:, :N_TRAIN] @ np.linalg.pinv(theta[:N_TRAIN, :N_TRAIN], rcond=1e-12) @ y
    np.testing.assert_allclose(mean, expected, rtol=1e-8, atol=1e-10)
    assert np.all(np.isfinite(var)) and np.all(var > -1e-10)


def test_train_points_as_test_points_interpolate_at_zero_ridge():
    """Predicting the training points themselves with r = 0 returns Y with zero variance."""
    theta, k = _joint_kernels(8)
    y = np.random.default_rng(9).normal(size=(N_TRAIN, 2))
    tr = slice(0, N_TRAIN)
    mean, var = ensemble_moments(theta[tr, tr], theta[tr, tr], y, k[tr, tr], k[tr, tr], np.diag(k)[tr])
    np.testing.assert_allclose(mean, y, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(var, 0.0, atol=1e-9)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(ntk_train=np.zeros((6, 5))), r"ntk_train must be a square \(N, N\) kernel, got shape \(6, 5\)"),
        (dict(ntk_test_train=np.zeros((3, 5))), r"ntk_test_train must have shape \(N_test, 6\)"),
        (dict(nngp_train=np.zeros((5, 5))), r"nngp_train must be a square \(6, 6\) kernel"),
        (dict(nngp_test_train=np.zeros((2, 6))), "must cover the 3 test points"),
        (dict(nngp_test_diag=np.zeros(4)), "must cover the 3 test points"),
        (dict(y_train=np.zeros(5)), r"y_train must have shape \(6,\) or \(6, C\)"),
        (dict(y_train=np.zeros((6, 2, 1))), r"y_train must have shape \(6,\) or \(6, C\)"),
        (dict(ridge=-1.0), "ridge must be a finite float >= 0"),
        (dict(ridge=float("nan")), "ridge must be a finite float >= 0"),
        (dict(ridge=None), "ridge must be a finite float >= 0"),
        (dict(y_train=np.float64(1.0)), r"y_train must have shape \(6,\) or \(6, C\)"),
    ],
)
def test_moments_bad_shapes_raise_clear_errors(change, match):
    theta, k = _joint_kernels(0)
    args = dict(ntk_train=theta[:6, :6], ntk_test_train=theta[6:, :6], y_train=np.zeros(6), nngp_train=k[:6, :6],
                nngp_test_train=k[6:, :6], nngp_test_diag=np.diag(k)[6:], ridge=0.0)  # fmt: skip
    args.update(change)
    with pytest.raises(ValueError, match=match):
        ensemble_moments(**args)


def test_stratified_folds_partition_and_keep_class_proportions():
    """Validation folds are disjoint and cover every index once; each fold's train part is the rest;
    each class is spread evenly (its count per fold differs by at most 1); k drops to the smallest
    class's size; the seed decides the shuffle."""
    labels = np.array([0] * 9 + [1] * 6 + [2] * 3)
    np.random.default_rng(0).shuffle(labels)
    folds = stratified_folds(labels, folds=5, seed=0)
    assert len(folds) == 3  # class 2 has 3 members
    validation = [va for _, va in folds]
    assert sorted(np.concatenate(validation).tolist()) == list(range(labels.size))
    for tr, va in folds:
        assert np.intersect1d(tr, va).size == 0
        assert sorted(np.concatenate([tr, va]).tolist()) == list(range(labels.size))
        np.testing.assert_array_equal(np.bincount(labels[va], minlength=3), [3, 2, 1])
    assert len(stratified_folds(labels, folds=2, seed=0)) == 2
    again = stratified_folds(labels, folds=5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = stratified_folds(labels, folds=5, seed=1)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))


@pytest.mark.parametrize(
    "labels, got",
    [([0, 0, 0, 1], "got 1"), ([0, 0, 2, 2], "got 0"), ([], "got 0")],
)
def test_stratified_folds_need_two_of_every_class(labels, got):
    with pytest.raises(ValueError, match=f"at least 2 training sequences of every class, {got}"):
        stratified_folds(np.array(labels, dtype=int), folds=3, seed=0)


def _classification(seed, n=18, features=4):
    """A linear kernel on two noisy, separable-ish clusters: (kernel, labels, one-hot targets minus 1/2)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    phi = rng.normal(size=(n, features)) + 1.5 * labels[:, None]
    return phi @ phi.T + 0.1, labels, np.eye(2)[labels] - 0.5


def _manual_cv_accuracy(kernel, targets, folds, alpha):
    accs = []
    for tr, va in folds:
        model = KernelRidge(alpha=alpha, kernel="precomputed").fit(kernel[np.ix_(tr, tr)], targets[tr])
        accs.append(np.mean(model.predict(kernel[np.ix_(va, tr)]).argmax(1) == targets[va].argmax(1)))
    return float(np.mean(accs))


def test_fit_ridge_picks_the_best_grid_ridge_by_fold_accuracy():
    """The ridge is a grid value times the mean diagonal, its cv accuracy (in [0, 1]) is the mean fold
    accuracy of kernel ridge at that alpha recomputed by hand, and no grid value does better."""
    kernel, labels, targets = _classification(0)
    folds = stratified_folds(labels, 3, 0)
    ridge, accuracy = fit_ridge(kernel, targets, folds)
    scale = np.mean(np.diag(kernel))
    assert any(np.isclose(ridge, r * scale, rtol=1e-14) for r in RIDGES)
    assert 0.0 <= accuracy <= 1.0
    assert accuracy == pytest.approx(_manual_cv_accuracy(kernel, targets, folds, ridge), abs=1e-12)
    best = max(_manual_cv_accuracy(kernel, targets, folds, r * scale) for r in RIDGES)
    assert accuracy == pytest.approx(best, abs=1e-12)


def test_fit_svm_picks_a_grid_c_on_the_scaled_kernel():
    """fit_svm returns a fitted SVC on the kernel divided by svm_scale (its mean diagonal), C from SVM_CS
    and a cv accuracy in [0, 1]; its predictions are those of an SVC refitted by hand with that C."""
    kernel, labels, _ = _classification(1)
    folds = stratified_folds(labels, 3, 0)
    svm, c, accuracy = fit_svm(kernel, labels, folds)
    assert c in SVM_CS and 0.0 <= accuracy <= 1.0
    assert svm_scale(kernel) == pytest.approx(np.mean(np.diag(kernel)), rel=1e-14)
    scaled = kernel / svm_scale(kernel)
    again = SVC(kernel="precomputed", C=c).fit(scaled, labels)
    np.testing.assert_array_equal(svm.predict(scaled), again.predict(scaled))


def test_fits_reject_non_square_kernels():
    kernel, labels, targets = _classification(2)
    folds = stratified_folds(labels, 3, 0)
    with pytest.raises(ValueError, match=r"kernel_train must be a square \(N, N\) kernel, got shape \(18, 17\)"):
        fit_ridge(kernel[:, :-1], targets, folds)
    with pytest.raises(ValueError, match=r"kernel_train must be a square \(N, N\) kernel, got shape \(18,\)"):
        fit_svm(kernel[0], labels, folds)
