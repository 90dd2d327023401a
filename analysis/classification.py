"""Study: RNN kernels and RNNs on UCR/UEA time series against published baselines (docs/theory.md §11).

One unit per dataset: ntk_rnn.classify on its official split (standardized by the training split),
the limit predictors on every dataset and the finite networks on `finite_datasets`. The published
single-split accuracies of the archive's baselines ship beside this module (baselines.csv, with their
sources) and are read by `baselines`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.sweep import run_sweep
from ntk_rnn.apps.classification import FINITE_PREDICTORS, LIMIT_PREDICTORS, ClassifyConfig, classify_dataset
from ntk_rnn.apps.timeseries import DATASETS, LabeledSequences, load_splits

AXES = ("datasets",)
BASELINES = Path(__file__).with_name("baselines.csv")


@dataclasses.dataclass(frozen=True)
class ClassificationConfig:
    """datasets: the units; finite_datasets: those that also get the finite networks (None: all);
    the rest is ntk_rnn.apps.classification.ClassifyConfig's."""

    datasets: tuple[str, ...] = DATASETS
    finite_datasets: tuple[str, ...] | None = None
    widths: tuple[int, ...] = (32, 128, 512)
    seeds: tuple[int, ...] = (0,)
    readouts: tuple[str, ...] = ("last", "mean")
    sigma_w2s: tuple[float, ...] = (0.5, 1.0, 1.5)
    sigma_b2: float = 0.1
    folds: int = 5
    steps: int = 1000
    lr_scale: float = 0.5
    num_layers: int = 1
    bidirectional: bool = False

    def __post_init__(self) -> None:
        unknown = sorted((set(self.datasets) | set(self.finite_datasets or ())) - set(DATASETS))
        if unknown:
            raise ValueError(f"ClassificationConfig datasets must be among {DATASETS}, got unknown {unknown}")

    def classify_config(self, dataset: str) -> ClassifyConfig:
        finite = self.finite_datasets is None or dataset in self.finite_datasets
        return ClassifyConfig(
            predictors=LIMIT_PREDICTORS + (FINITE_PREDICTORS if finite else ()), widths=self.widths, seeds=self.seeds,
            readouts=self.readouts, sigma_w2s=self.sigma_w2s, sigma_b2=self.sigma_b2, folds=self.folds,
            steps=self.steps, lr_scale=self.lr_scale, num_layers=self.num_layers, bidirectional=self.bidirectional,
        )  # fmt: skip


def classification_table(config: ClassificationConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """ntk_rnn.classify's rows for every dataset of config (its columns; `dataset` first)."""

    def compute(unit: dict) -> pd.DataFrame:
        table = classify_dataset(unit["dataset"], config.classify_config(unit["dataset"])).drop(columns="dataset")
        train, test = load_splits(unit["dataset"])
        seconds = -time.perf_counter()
        accuracy = nearest_neighbour_accuracy(train, test)
        seconds += time.perf_counter()
        row = {"predictor": "1nn-ed (here)", "test_accuracy": accuracy, "fit_seconds": seconds}
        return pd.concat([table, pd.DataFrame([row])], ignore_index=True)

    units = [{"dataset": name} for name in config.datasets]
    return run_sweep("classification", config, units, compute, cache_dir, progress, AXES)


def nearest_neighbour_accuracy(train: LabeledSequences, test: LabeledSequences) -> float:
    """Test accuracy of 1NN with the Euclidean distance on the raw official split, as the archive's
    baseline computes it; NaN for sequences of unequal lengths, where it is undefined."""
    if not (train.equal_length and test.equal_length and train.length == test.length):
        return float("nan")
    a, b = train.x.reshape(train.n, -1), test.x.reshape(test.n, -1)
    distances = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None, :]
    return float(np.mean(train.labels[distances.argmin(axis=1)] == test.labels))


def baselines() -> pd.DataFrame:
    """The published test accuracies (dataset, classifier, accuracy, source) of baselines.csv."""
    return pd.read_csv(BASELINES, comment="#")
