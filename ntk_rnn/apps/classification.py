"""Sequence classification with RNN kernels and RNNs on one train/test split (docs/theory.md §11).

The predictors, for an Elman relu RNN (stacked and bidirectional as configured) in the NTK
parameterization with every parameter trained:

- "ntk", "nngp": the infinite ensemble trained to convergence on the squared error (ntk_rnn.training.ensemble),
  mean and variance, from the limit kernels; "ntk-svm", "nngp-svm": an SVM on the same kernels;
- "linearized": one finite network's Taylor model, trained by full-batch GD for `steps` steps (closed
  form from its empirical NTK at initialization), and "linearized-converged", the same trained to
  convergence;
- "trained": the network itself, trained for `steps` steps of full-batch GD (optax) at
  eta = lr_scale / lambda_max(K_0) on the summed squared error `1/2 sum ||f(x_i) - y_i||^2`.

Targets are one-hot codes minus 1/C and the predicted class is the argmax. Everything chosen is chosen
by stratified k-fold cross-validation on the training split, which is all the choice ever sees: the
readout and sigma_w2 by the limit NTK's accuracy (and then used by every predictor), the ridges and SVM
C per kernel. The test split is touched only to predict.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.linalg

from ntk_rnn.apps.timeseries import LabeledSequences, load_splits, standardize
from ntk_rnn.kernels.empirical import empirical_ntk
from ntk_rnn.kernels.limit import limit_ntk, nngp_kernel
from ntk_rnn.network.config import RNNConfig
from ntk_rnn.network.model import apply, init_params, trainable
from ntk_rnn.training.ensemble import ensemble_mean, ensemble_moments, fit_ridge, fit_svm, stratified_folds, svm_scale
from ntk_rnn.training.linearized import KernelGD
from ntk_rnn.training.train import TrainConfig, run_steps

LIMIT_PREDICTORS = ("ntk", "nngp", "ntk-svm", "nngp-svm")
FINITE_PREDICTORS = ("linearized", "trained")
PREDICTORS = LIMIT_PREDICTORS + FINITE_PREDICTORS
"""The predictors ClassifyConfig.predictors chooses from (module docstring)."""


@dataclasses.dataclass(frozen=True)
class ClassifyConfig:
    """What to fit and how.

    Attributes:
      predictors: a subset of PREDICTORS ("linearized" also gives "linearized-converged" rows, and
        "linearized" and "trained" together give their test agreement).
      widths: the widths of the finite networks, one network per (width, seed).
      seeds: their seeds; the seed's JAX key draws the weights.
      readouts: the readouts of the model grid the limit NTK's cross-validation chooses from.
      sigma_w2s: the sigma_w2 of that grid. The default stays below the relu's critical sigma_w2 = 2, where
        finite networks on sequences of 100+ steps start with outputs many orders of magnitude above the
        limit's variance (docs/theory.md §11).
      sigma_b2: the bias variance (> 0: the model has biases).
      num_layers: stacked layers of the Elman RNN (the limit kernels of docs/theory.md §9).
      bidirectional: a bidirectional Elman RNN; the readouts of the two directions are summed.
      folds: k of the stratified k-fold cross-validation (lowered to the smallest class's size).
      cv_seed: the seed of its shuffle.
      steps: full-batch GD steps of the finite networks.
      lr_scale: their step size, eta = lr_scale / lambda_max(K_0).
      max_bytes: the empirical kernels' memory budget (ntk_rnn.empirical_ntk); within it the factors of
        every sequence are kept rather than recomputed for each block.
    """

    predictors: tuple[str, ...] = PREDICTORS
    widths: tuple[int, ...] = (64, 256)
    seeds: tuple[int, ...] = (0,)
    readouts: tuple[str, ...] = ("last", "mean")
    sigma_w2s: tuple[float, ...] = (0.5, 1.0, 1.5)
    sigma_b2: float = 0.1
    folds: int = 5
    cv_seed: int = 0
    steps: int = 500
    lr_scale: float = 0.5
    max_bytes: int = 4 * 2**30
    num_layers: int = 1
    bidirectional: bool = False

    def __post_init__(self) -> None:
        for name in ("predictors", "widths", "seeds", "readouts", "sigma_w2s"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            if not getattr(self, name):
                raise ValueError(f"ClassifyConfig.{name} must not be empty")
        unknown = sorted(set(self.predictors) - set(PREDICTORS))
        if unknown:
            raise ValueError(f"ClassifyConfig.predictors must be a subset of {PREDICTORS}, got unknown {unknown}")
        for name, low in (("widths", 1), ("seeds", 0), ("folds", 2), ("steps", 1), ("max_bytes", 1), ("num_layers", 1)):
            values = getattr(self, name) if name in ("widths", "seeds") else (getattr(self, name),)
            if any(not isinstance(v, int) or isinstance(v, bool) or v < low for v in values):
                raise ValueError(f"ClassifyConfig.{name} must be ints >= {low}, got {getattr(self, name)!r}")
        if any(r not in ("last", "mean") for r in self.readouts):
            raise ValueError(f"ClassifyConfig.readouts must be 'last' or 'mean' (one output per sequence), "
                             f"got {self.readouts!r}")  # fmt: skip
        if not (self.sigma_b2 > 0 and all(s > 0 for s in self.sigma_w2s) and self.lr_scale > 0):
            raise ValueError("ClassifyConfig.sigma_b2, sigma_w2s and lr_scale must be positive")
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"ClassifyConfig.bidirectional must be True or False, got {self.bidirectional!r}")
        if self.lr_scale >= 2:
            raise ValueError(f"ClassifyConfig.lr_scale must be below 2 (GD diverges at 2 / lambda_max), "
                             f"got {self.lr_scale}")  # fmt: skip

    def model(self, data: LabeledSequences, readout: str, sigma_w2: float, width: int = 1) -> RNNConfig:
        return RNNConfig(width=width, input_dim=data.input_dim, output_dim=data.num_classes, parameterization="ntk",
                         sigma_w2=sigma_w2, sigma_u2=1.0, sigma_b2=self.sigma_b2, readout=readout,
                         trainable=("W", "A", "b", "B"), num_layers=self.num_layers,
                         bidirectional=self.bidirectional)  # fmt: skip


def _lengths(data: LabeledSequences):
    return None if data.equal_length else data.lengths


def _limit_kernels(cfg: RNNConfig, train: LabeledSequences, test: LabeledSequences) -> dict:
    """The scalar (one output) limit kernels on train x train and test x train, and the test diagonal."""
    one = cfg.replace(output_dim=1)
    len_tr, len_te = _lengths(train), _lengths(test)
    return {
        "ntk": limit_ntk(one, train.x, lengths1=len_tr),
        "nngp": nngp_kernel(one, train.x, lengths1=len_tr),
        "ntk_test": limit_ntk(one, test.x, train.x, lengths1=len_te, lengths2=len_tr),
        "nngp_test": nngp_kernel(one, test.x, train.x, lengths1=len_te, lengths2=len_tr),
        "nngp_diag": _diagonal(one, test),
    }


def _diagonal(cfg: RNNConfig, data: LabeledSequences, block: int = 16) -> np.ndarray:
    """The NNGP prior variances (n,) of data's sequences, from blocks of `block` on the diagonal."""
    parts = []
    for i in range(0, data.n, block):
        part = data.take(np.arange(i, min(i + block, data.n)))
        parts.append(np.diag(nngp_kernel(cfg, part.x, lengths1=_lengths(part))))
    return np.concatenate(parts)


def select_model(train: LabeledSequences, config: ClassifyConfig, folds) -> tuple[pd.DataFrame, tuple[str, float]]:
    """Cross-validated accuracy of limit-NTK ridge regression for every (readout, sigma_w2) of the grid,
    from the training split alone: (a table of the grid, the best (readout, sigma_w2))."""
    rows = []
    for readout, sigma_w2 in itertools.product(config.readouts, config.sigma_w2s):
        cfg = config.model(train, readout, sigma_w2, width=1).replace(output_dim=1)
        ridge, score = fit_ridge(limit_ntk(cfg, train.x, lengths1=_lengths(train)), train.targets(), folds)
        rows.append({"readout": readout, "sigma_w2": sigma_w2, "ridge": ridge, "cv_accuracy": score})
    grid = pd.DataFrame(rows)
    best = grid.loc[grid["cv_accuracy"].idxmax()]
    return grid, (str(best["readout"]), float(best["sigma_w2"]))


def _accuracy(outputs: np.ndarray, data: LabeledSequences) -> float:
    return float(np.mean(np.asarray(outputs).argmax(axis=1) == data.labels))


def _limit_rows(train, test, cfg: RNNConfig, predictors, folds) -> list[dict]:
    start = time.perf_counter()
    k = _limit_kernels(cfg, train, test)
    kernel_seconds = time.perf_counter() - start
    y, rows = train.targets(), []
    for name in ("ntk", "nngp"):
        if name in predictors:
            start = time.perf_counter()
            ridge, cv = fit_ridge(k[name], y, folds)
            mean, var = ensemble_moments(k[name], k[name + "_test"], y, k["nngp"], k["nngp_test"], k["nngp_diag"],
                                         ridge)  # fmt: skip
            train_mean = ensemble_mean(k[name], k[name], y, ridge)
            rows.append({"predictor": name, "hyperparameter": "ridge", "value": ridge, "cv_accuracy": cv,
                         "train_accuracy": _accuracy(train_mean, train), "test_accuracy": _accuracy(mean, test),
                         "test_variance": float(np.mean(var)), "kernel_seconds": kernel_seconds,
                         "fit_seconds": time.perf_counter() - start})  # fmt: skip
        if name + "-svm" in predictors:
            start = time.perf_counter()
            svm, c, cv = fit_svm(k[name], train.labels, folds)
            scale = svm_scale(k[name])
            rows.append({"predictor": name + "-svm", "hyperparameter": "C", "value": c, "cv_accuracy": cv,
                         "train_accuracy": float(np.mean(svm.predict(k[name] / scale) == train.labels)),
                         "test_accuracy": float(np.mean(svm.predict(k[name + "_test"] / scale) == test.labels)),
                         "kernel_seconds": kernel_seconds, "fit_seconds": time.perf_counter() - start})  # fmt: skip
    return rows


def _sequence_targets(data: LabeledSequences) -> jax.Array:
    """The targets repeated at every step, (n, L, C): a per-sequence readout is scored at the last real step."""
    return jnp.broadcast_to(jnp.asarray(data.targets())[:, None], (data.n, data.length, data.num_classes))


def _finite_rows(train, test, cfg: RNNConfig, config: ClassifyConfig, seed: int) -> list[dict]:
    """The linearized and the trained network of one (width, seed)."""
    params = init_params(cfg, key=jax.random.key(seed))
    len_tr, len_te = _lengths(train), _lengths(test)
    start = time.perf_counter()
    k_train = empirical_ntk(cfg, params, train.x, lengths1=len_tr, max_bytes=config.max_bytes)
    k_test = empirical_ntk(cfg, params, test.x, train.x, lengths1=len_te, lengths2=len_tr, max_bytes=config.max_bytes)
    kernel_seconds = time.perf_counter() - start
    f0_train = np.asarray(apply(cfg, params, jnp.asarray(train.x), len_tr))
    f0_test = np.asarray(apply(cfg, params, jnp.asarray(test.x), len_te))
    y = train.targets()
    lam_max = float(scipy.linalg.eigvalsh(k_train, subset_by_index=[k_train.shape[0] - 1] * 2)[0])
    lr = config.lr_scale / lam_max
    start = time.perf_counter()
    gd = KernelGD.from_kernel(k_train, f0_train, y, lr)
    lin_train = gd.train_outputs([config.steps])[0].reshape(y.shape)
    lin_test = gd.test_outputs(k_test, f0_test, [config.steps])[0].reshape(f0_test.shape)
    converged = f0_test + ensemble_mean(k_train, k_test, (y - f0_train).ravel()).reshape(f0_test.shape)
    lin_seconds = time.perf_counter() - start
    common = {"width": cfg.width, "seed": seed, "kernel_seconds": kernel_seconds, "steps": config.steps, "lr": lr}
    rows = []
    if "linearized" in config.predictors:
        rows.append({**common, "predictor": "linearized", "train_accuracy": _accuracy(lin_train, train),
                     "test_accuracy": _accuracy(lin_test, test), "fit_seconds": lin_seconds,
                     "train_loss": 0.5 * float(np.sum((lin_train - y) ** 2))})  # fmt: skip
        rows.append({**common, "predictor": "linearized-converged", "test_accuracy": _accuracy(converged, test),
                     "steps": math.inf, "fit_seconds": lin_seconds})  # fmt: skip
    if "trained" in config.predictors:
        start = time.perf_counter()
        tcfg = TrainConfig(steps=config.steps, lr=lr, record_every=config.steps, kernel_every=0)
        theta = trainable(cfg, params)
        opt_state = tcfg.make_optimizer(lr).init(theta)
        lengths = None if len_tr is None else jnp.asarray(len_tr)
        theta, _, losses = run_steps(cfg, tcfg, params, theta, opt_state, jnp.asarray(train.x),
                                     _sequence_targets(train), lr, key=jax.random.key(seed), step0=0,
                                     num_steps=config.steps, positions=None, lengths=lengths)  # fmt: skip
        trained_params = {**params, **theta}
        out_train = np.asarray(apply(cfg, trained_params, jnp.asarray(train.x), len_tr))
        out_test = np.asarray(apply(cfg, trained_params, jnp.asarray(test.x), len_te))
        row = {**common, "predictor": "trained", "train_accuracy": _accuracy(out_train, train),
               "test_accuracy": _accuracy(out_test, test), "fit_seconds": time.perf_counter() - start,
               "train_loss": 0.5 * float(np.sum((out_train - y) ** 2)), "initial_loss": float(losses[0])}  # fmt: skip
        if "linearized" in config.predictors:
            row["test_agreement"] = float(np.mean(out_test.argmax(axis=1) == lin_test.argmax(axis=1)))
            row["test_output_gap"] = float(np.linalg.norm(out_test - lin_test) / np.linalg.norm(lin_test - f0_test))
        rows.append(row)
    return rows


def classify(train: LabeledSequences, test: LabeledSequences,
             config: ClassifyConfig = ClassifyConfig()) -> pd.DataFrame:  # fmt: skip
    """Fit every predictor of config on train and score it on test: one row per predictor (and per
    (width, seed) for the finite networks) with its hyperparameter, cross-validated, train and test
    accuracy, wall times in seconds and, for "trained", its test agreement with "linearized" (fraction
    of test sequences given the same class) and output gap ||f_true - f_lin|| / ||f_lin - f_0||. The
    model (readout, sigma_w2) chosen by cross-validation is in every row."""
    if train.input_dim != test.input_dim or train.classes != test.classes:
        raise ValueError(f"train and test must share the token dimension and classes, got d_x {train.input_dim} "
                         f"and {test.input_dim}, classes {train.classes} and {test.classes}")  # fmt: skip
    folds = stratified_folds(train.labels, config.folds, config.cv_seed)
    _, (readout, sigma_w2) = select_model(train, config, folds)
    rows = _limit_rows(train, test, config.model(train, readout, sigma_w2), config.predictors, folds)
    if set(FINITE_PREDICTORS) & set(config.predictors):
        for width, seed in itertools.product(config.widths, config.seeds):
            rows += _finite_rows(train, test, config.model(train, readout, sigma_w2, width), config, seed)
    table = pd.DataFrame(rows)
    table.insert(0, "dataset", train.name)
    table["readout"], table["sigma_w2"] = readout, sigma_w2
    table["n_train"], table["n_test"] = train.n, test.n
    return table


def classify_dataset(name: str, config: ClassifyConfig = ClassifyConfig()) -> pd.DataFrame:
    """classify on a bundled UCR/UEA dataset's official split, standardized by the training split."""
    return classify(*standardize(*load_splits(name)), config)
