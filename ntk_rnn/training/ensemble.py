"""Kernel predictors of wide networks (docs/theory.md §11): the infinite ensemble of networks trained to
convergence by gradient descent on the squared error, and cross-validated kernel ridge and SVM fits.

An ensemble member starts at f_0 ~ GP(0, K) (K the NNGP kernel) and follows the linearized dynamics with
the NTK Theta to convergence, f(x) = f_0(x) + Theta(x, X) (Theta + r I)^{-1} (Y - f_0(X)) (r is a ridge;
r = 0 is plain GD). Its mean over the ensemble and its variance at each test point are

    mean = Theta(x, X) (Theta + r I)^{-1} Y,
    var  = K(x, x) - 2 a . K(X, x) + a^T K a,   a = (Theta + r I)^{-1} Theta(X, x),

as in neural-tangents' gradient_descent_mse_ensemble at t = infinity. Passing Theta = K gives the NNGP
predictor (only the readout trained), whose variance at r = 0 is the GP posterior's.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import SVC

RIDGES = (1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # relative to the mean diagonal of the training kernel
SVM_CS = (1e-2, 1e-1, 1.0, 10.0, 1e2, 1e3, 1e4, 1e5)  # on the kernel scaled to mean diagonal 1


def _square(a, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or (n is not None and arr.shape[0] != n):
        size = "N" if n is None else n
        raise ValueError(f"{name} must be a square ({size}, {size}) kernel, got shape {arr.shape}")
    return arr


def _cross(a, name: str, n: int) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n:
        raise ValueError(f"{name} must have shape (N_test, {n}), got {arr.shape}")
    return arr


def _weights(ntk_train, ntk_test_train, y_train, ridge) -> tuple[np.ndarray, np.ndarray]:
    """(a, y): a = Theta(x, X) (Theta + r I)^+ (N_test, N), directions of Theta + r I with eigenvalue below
    N eps max|eigenvalue| treated as its null space (GD does not move them), and y_train checked."""
    theta = _square(ntk_train, "ntk_train")
    n = theta.shape[0]
    theta_x = _cross(ntk_test_train, "ntk_test_train", n)
    y = np.asarray(y_train, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"y_train must have shape ({n},) or ({n}, C), got {y.shape}")
    if not (isinstance(ridge, (int, float)) and np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite float >= 0, got {ridge!r}")
    lam, vec = scipy.linalg.eigh(theta + ridge * np.eye(n))
    tol = n * np.finfo(float).eps * np.abs(lam).max()
    inv = np.where(lam > tol, 1.0 / np.where(lam > tol, lam, 1.0), 0.0)
    return (theta_x @ vec) * inv @ vec.T, y


def ensemble_mean(ntk_train, ntk_test_train, y_train, ridge: float = 0.0) -> np.ndarray:
    """The ensemble's mean alone, Theta(x, X) (Theta + r I)^+ Y (N_test, C): what GD to convergence
    predicts from f_0 = 0, without the variance's O(N_test N^2). Arguments as in ensemble_moments."""
    a, y = _weights(ntk_train, ntk_test_train, y_train, ridge)
    return a @ y


def ensemble_moments(ntk_train, ntk_test_train, y_train, nngp_train, nngp_test_train, nngp_test_diag,
                     ridge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Mean (N_test, C) and variance (N_test,) of the infinite ensemble trained to convergence.

    ntk_train (N, N), ntk_test_train (N_test, N): Theta; nngp_*: K, with nngp_test_diag (N_test,) the
    test points' prior variances; y_train (N, C) or (N,); ridge r >= 0 (absolute). Directions of
    Theta + r I with eigenvalue below N eps max|eigenvalue| are treated as its null space (GD does not move
    them). The variance is per output, the same for every output column.
    """
    a, y = _weights(ntk_train, ntk_test_train, y_train, ridge)
    n_test, n = a.shape
    k = _square(nngp_train, "nngp_train", n)
    k_x = _cross(nngp_test_train, "nngp_test_train", n)
    k_xx = np.asarray(nngp_test_diag, dtype=np.float64)
    if k_xx.shape != (n_test,) or k_x.shape[0] != n_test:
        raise ValueError(f"nngp_test_train and nngp_test_diag must cover the {n_test} test points, "
                         f"got shapes {k_x.shape} and {k_xx.shape}")  # fmt: skip
    var = k_xx - 2.0 * np.einsum("in,in->i", a, k_x) + np.einsum("in,in->i", a @ k, a)
    return a @ y, var


def stratified_folds(labels, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) index pairs of a shuffled stratified k-fold over the training labels; k is
    lowered to the smallest class's size when that is smaller (at least 2)."""
    labels = np.asarray(labels)
    smallest = np.bincount(labels).min() if labels.size else 0
    k = min(folds, int(smallest))
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 training sequences of every class, got {smallest}")
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(labels.size), labels))


def _argmax_accuracy(estimator, kernel, targets) -> float:
    return float(np.mean(estimator.predict(kernel).argmax(axis=1) == np.asarray(targets).argmax(axis=1)))


def fit_ridge(kernel_train, targets, folds) -> tuple[float, float]:
    """The ridge (absolute) of kernel regression on targets (N, C) with the best cross-validated accuracy
    (argmax of the prediction) over RIDGES times the mean diagonal, and that accuracy."""
    kernel = _square(kernel_train, "kernel_train")
    scale = float(np.mean(np.diag(kernel)))
    search = GridSearchCV(KernelRidge(kernel="precomputed"), {"alpha": [r * scale for r in RIDGES]},
                          scoring=_argmax_accuracy, cv=folds, error_score="raise")  # fmt: skip
    search.fit(kernel, targets)
    return float(search.best_params_["alpha"]), float(search.best_score_)


def fit_svm(kernel_train, labels, folds) -> tuple[SVC, float, float]:
    """An SVC on the precomputed kernel scaled to mean diagonal 1, C chosen by cross-validated accuracy
    over SVM_CS: (the fitted SVC, the chosen C, its cross-validated accuracy). Predict with
    kernel_test_train / the same scale, i.e. svm_scale(kernel_train)."""
    kernel = _square(kernel_train, "kernel_train")
    search = GridSearchCV(SVC(kernel="precomputed"), {"C": list(SVM_CS)}, cv=folds, error_score="raise")
    search.fit(kernel / svm_scale(kernel), np.asarray(labels))
    return search.best_estimator_, float(search.best_params_["C"]), float(search.best_score_)


def svm_scale(kernel_train) -> float:
    """The mean diagonal of a training kernel: SVMs see every kernel divided by it."""
    return float(np.mean(np.diag(np.asarray(kernel_train))))
