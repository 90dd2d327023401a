"""The classification pipeline on a tiny GunPoint subset: cross-validation never sees the test split, the
table's rows, determinism, and the errors of ClassifyConfig and classify."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

import ntk_rnn.apps.classification as classify_module
from ntk_rnn.apps.classification import (
    LIMIT_PREDICTORS,
    PREDICTORS,
    ClassifyConfig,
    classify,
    classify_dataset,
    select_model,
)
from ntk_rnn.apps.timeseries import LabeledSequences, load_splits, standardize
from ntk_rnn.training.ensemble import stratified_folds

LENGTH = 16
CONFIG = ClassifyConfig(predictors=("ntk", "nngp", "ntk-svm", "linearized", "trained"), widths=(8,), steps=20,
                        readouts=("mean",), sigma_w2s=(0.5, 1.0), folds=3)  # fmt: skip
TIMES = ["kernel_seconds", "fit_seconds"]
# what only the training split may decide: the model, every hyperparameter and every training-split score
TRAIN_ONLY = ["dataset", "predictor", "hyperparameter", "value", "cv_accuracy", "train_accuracy", "train_loss",
              "initial_loss", "width", "seed", "steps", "lr", "readout", "sigma_w2", "n_train"]  # fmt: skip


def _truncated(data, idx):
    data = data.take(idx)
    return LabeledSequences(data.x[:, :LENGTH], np.minimum(data.lengths, LENGTH), data.labels, data.classes, data.name)


@pytest.fixture(scope="module")
def gunpoint():
    """(train, test): 20 standardized GunPoint training sequences (10 per class) and 10 test sequences
    (5 per class), cut to their first LENGTH steps."""
    train, test = standardize(*load_splits("GunPoint"))
    pick = lambda data, k: np.concatenate([np.flatnonzero(data.labels == c)[:k] for c in (0, 1)])  # noqa: E731
    return _truncated(train, pick(train, 10)), _truncated(test, pick(test, 5))


@pytest.fixture(scope="module")
def table(gunpoint):
    return classify(*gunpoint, CONFIG)


def _scrambled(test, seed=0):
    """The test split with its tokens replaced by noise and its labels redrawn (same shapes)."""
    rng = np.random.default_rng(seed)
    return LabeledSequences(rng.normal(size=test.x.shape) * 3, test.lengths, rng.permutation(test.labels)[::-1].copy(),
                            test.classes, test.name)  # fmt: skip


def test_cross_validation_never_sees_the_test_split(gunpoint, table):
    """Replacing the test split's tokens by noise and redrawing its labels leaves every choice (readout,
    sigma_w2, ridges, C) and every cross-validated and training-split number exactly as it was; only
    test-split columns may move (and some do, so the test split did change)."""
    train, test = gunpoint
    other = classify(train, _scrambled(test), CONFIG)
    assert list(other["predictor"]) == list(table["predictor"])
    columns = [c for c in TRAIN_ONLY if c in table.columns]
    assert {"hyperparameter", "value", "cv_accuracy", "train_accuracy", "readout", "sigma_w2"} <= set(columns)
    pd.testing.assert_frame_equal(other[columns], table[columns], check_exact=True)
    test_columns = ["test_accuracy", "test_variance", "test_agreement", "test_output_gap"]
    assert not other[test_columns].equals(table[test_columns])


def test_fits_receive_only_training_kernels_and_labels(gunpoint, monkeypatch):
    """Spies on select_model, fit_ridge and fit_svm (as classify calls them): every kernel they get is
    train x train (n_train rows and columns, symmetric), every label array is the training split's, every
    fold indexes the training split, and select_model gets the training split itself."""
    train, test = gunpoint
    calls = {"select_model": [], "fit_ridge": [], "fit_svm": []}
    real = {name: getattr(classify_module, name) for name in calls}

    def spy_select(data, config, folds):
        calls["select_model"].append((data, folds))
        return real["select_model"](data, config, folds)

    def spy_ridge(kernel, targets, folds):
        calls["fit_ridge"].append((np.array(kernel), np.array(targets), folds))
        return real["fit_ridge"](kernel, targets, folds)

    def spy_svm(kernel, labels, folds):
        calls["fit_svm"].append((np.array(kernel), np.array(labels), folds))
        return real["fit_svm"](kernel, labels, folds)

    for name, spy in (("select_model", spy_select), ("fit_ridge", spy_ridge), ("fit_svm", spy_svm)):
        monkeypatch.setattr(classify_module, name, spy)
    classify(train, test, CONFIG)

    assert [data is train for data, _ in calls["select_model"]] == [True]
    # select_model's grid (2 sigma_w2s), then the chosen model's ntk and nngp ridges; one SVM (ntk-svm)
    assert len(calls["fit_ridge"]) == 2 + 2 and len(calls["fit_svm"]) == 1
    for kernel, y, folds in calls["fit_ridge"] + calls["fit_svm"]:
        assert kernel.shape == (train.n, train.n)
        np.testing.assert_allclose(kernel, kernel.T, rtol=1e-12, atol=0)
        expected = train.targets() if y.ndim == 2 else train.labels
        np.testing.assert_array_equal(y, expected)
        for fold_train, fold_val in folds:
            assert sorted(np.concatenate([fold_train, fold_val]).tolist()) == list(range(train.n))


def test_table_rows_and_columns(gunpoint, table):
    """One row per limit predictor asked for, then linearized, linearized-converged and trained for the
    (width, seed); the model chosen is in every row; accuracies and the test agreement lie in [0, 1]."""
    train, test = gunpoint
    assert list(table["predictor"]) == ["ntk", "ntk-svm", "nngp", "linearized", "linearized-converged", "trained"]
    assert set(table["dataset"]) == {"GunPoint"}
    assert set(table["n_train"]) == {train.n} and set(table["n_test"]) == {test.n}
    assert set(table["readout"]) == {"mean"} and table["sigma_w2"].nunique() == 1
    assert set(table["sigma_w2"]) <= set(CONFIG.sigma_w2s)
    limit = table[table["predictor"].isin(LIMIT_PREDICTORS)].set_index("predictor")
    assert dict(limit["hyperparameter"]) == {"ntk": "ridge", "ntk-svm": "C", "nngp": "ridge"}
    for column in ("cv_accuracy", "train_accuracy", "test_accuracy"):
        values = table[column].dropna()
        assert len(values) and values.between(0, 1).all(), column
    trained = table[table["predictor"] == "trained"].iloc[0]
    assert 0 <= trained["test_agreement"] <= 1 and trained["test_output_gap"] >= 0
    assert trained["width"] == 8 and trained["seed"] == 0 and trained["steps"] == CONFIG.steps
    assert np.isinf(table.loc[table["predictor"] == "linearized-converged", "steps"].iloc[0])
    assert (limit.loc[["ntk", "nngp"], "test_variance"] >= 0).all()


def test_every_seed_gets_its_rows_and_the_same_config_repeats_exactly(gunpoint, table):
    """Two seeds and all predictors: the limit rows once each, three finite rows per (width, seed); the
    numbers of a repeated run equal the first run's (wall times aside), and the rows shared with the
    one-seed run equal its rows."""
    config = dataclasses.replace(CONFIG, predictors=PREDICTORS, seeds=(0, 1))
    first = classify(*gunpoint, config)
    finite = ["linearized", "linearized-converged", "trained"]
    assert list(first["predictor"]) == ["ntk", "ntk-svm", "nngp", "nngp-svm"] + finite * 2
    assert list(first["seed"].iloc[4:]) == [0, 0, 0, 1, 1, 1]
    again = classify(*gunpoint, config)
    pd.testing.assert_frame_equal(again.drop(columns=TIMES), first.drop(columns=TIMES), check_exact=True)
    shared = first[first["predictor"] != "nngp-svm"].iloc[:6].reset_index(drop=True)
    pd.testing.assert_frame_equal(shared.drop(columns=TIMES), table.drop(columns=TIMES), check_exact=True)


def test_select_model_grid_and_choice(gunpoint):
    """select_model scores every (readout, sigma_w2) of the grid and returns the best one."""
    train, _ = gunpoint
    folds = stratified_folds(train.labels, CONFIG.folds, CONFIG.cv_seed)
    grid, best = select_model(train, CONFIG, folds)
    assert list(zip(grid["readout"], grid["sigma_w2"], strict=True)) == [("mean", 0.5), ("mean", 1.0)]
    assert grid["cv_accuracy"].between(0, 1).all() and (grid["ridge"] > 0).all()
    top = grid.loc[grid["cv_accuracy"].idxmax()]
    assert best == (top["readout"], top["sigma_w2"])


def test_classify_dataset_standardizes_the_official_split(monkeypatch):
    """classify_dataset passes the official split, standardized by the training split, to classify."""
    seen = []
    monkeypatch.setattr(classify_module, "classify", lambda train, test, config: seen.append((train, test, config)))
    classify_dataset("GunPoint", CONFIG)
    ((train, test, config),) = seen
    expected_train, expected_test = standardize(*load_splits("GunPoint"))
    np.testing.assert_array_equal(train.x, expected_train.x)
    np.testing.assert_array_equal(test.x, expected_test.x)
    np.testing.assert_array_equal(test.labels, expected_test.labels)
    assert config is CONFIG
    with pytest.raises(ValueError, match="must be one of the UCR/UEA datasets"):
        classify_dataset("Coffee", CONFIG)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(predictors=("ntk", "gp")), r"predictors must be a subset of .* got unknown \['gp'\]"),
        (dict(predictors=()), "predictors must not be empty"),
        (dict(readouts=("all",)), "readouts must be 'last' or 'mean'"),
        (dict(lr_scale=2.0), "lr_scale must be below 2"),
        (dict(lr_scale=3.5), "lr_scale must be below 2"),
        (dict(lr_scale=0.0), "must be positive"),
        (dict(widths=()), "widths must not be empty"),
        (dict(widths=(8, 0)), "widths must be ints >= 1"),
        (dict(widths=(8.0,)), "widths must be ints >= 1"),
        (dict(seeds=(0.5,)), "seeds must be ints >= 0"),
        (dict(seeds=(-1,)), "seeds must be ints >= 0"),
        (dict(folds=0), "folds must be ints >= 2"),
        (dict(folds=1), "folds must be ints >= 2"),
        (dict(steps=True), "steps must be ints >= 1"),
        (dict(sigma_w2s=(1.0, -1.0)), "sigma_w2s and lr_scale must be positive"),
        (dict(sigma_b2=0.0), "sigma_b2, sigma_w2s and lr_scale must be positive"),
    ],
)
def test_bad_classify_config_raises_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassifyConfig(**kwargs)


def test_classify_rejects_mismatched_splits(gunpoint):
    """Train and test must share the token dimension and the classes; checked before any kernel."""
    train, test = gunpoint
    wide = LabeledSequences(np.repeat(test.x, 2, axis=-1), test.lengths, test.labels, test.classes, test.name)
    with pytest.raises(ValueError, match="d_x 1 and 2"):
        classify(train, wide, CONFIG)
    renamed = LabeledSequences(test.x, test.lengths, test.labels, ("2", "1"), test.name)
    with pytest.raises(ValueError, match=r"classes \('1', '2'\) and \('2', '1'\)"):
        classify(train, renamed, CONFIG)
    one_of_a_class = train.take(np.r_[0:10, 10])  # class '2' has 1 training sequence: no stratified folds
    with pytest.raises(ValueError, match="at least 2 training sequences of every class, got 1"):
        classify(one_of_a_class, test, CONFIG)


def test_stacked_bidirectional_model_on_unequal_lengths(gunpoint):
    """A two-layer bidirectional Elman on sequences of unequal lengths: the model is the configured one and
    every predictor gives its rows."""
    train, test = gunpoint
    short = LabeledSequences(train.x, np.where(np.arange(train.n) % 2 == 0, LENGTH, LENGTH // 2), train.labels,
                             train.classes, train.name)  # fmt: skip
    config = dataclasses.replace(CONFIG, num_layers=2, bidirectional=True, sigma_w2s=(1.0,))
    assert config.model(short, "mean", 1.0, 8).param_names[-2:] == ("B", "B_reverse")
    result = classify(short, test, config)
    assert list(result["predictor"]) == ["ntk", "ntk-svm", "nngp", "linearized", "linearized-converged", "trained"]
    assert result["test_accuracy"].between(0, 1).all() and result["test_agreement"].dropna().between(0, 1).all()
    with pytest.raises(ValueError, match="num_layers must be ints >= 1"):
        ClassifyConfig(num_layers=0)
    with pytest.raises(ValueError, match="bidirectional must be True or False"):
        ClassifyConfig(bidirectional=1)
