"""Studies: the true against the linearized network as the width grows (docs/theory.md §4-5).

Each run trains both models from the same initialization with full-batch GD at
eta = lr_scale / lambda_max(K_0) for a fixed number of steps, so eta * lambda_max * steps, the
training time in the kernel's units, is the same at every width.
"""

from __future__ import annotations

import dataclasses

import jax
import pandas as pd

import ntk_rnn
from analysis.datasets import study_dataset
from analysis.sweep import run_sweep
from ntk_rnn.network.data import train_test_split
from ntk_rnn.training.paired import PairedResult, train_paired
from ntk_rnn.training.train import TrainConfig

AXES = ("widths", "seeds", "datasets")  # config fields that only list the units (left out of cache keys)


@dataclasses.dataclass(frozen=True)
class LinearizationConfig:
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    seeds: tuple[int, ...] = (0, 1, 2)
    datasets: tuple[str, ...] = ("synthetic", "digits")
    n_train: int = 8
    n_test: int = 8
    length: int = 6
    input_dim: int = 8
    delta: float = 0.5
    steps: int = 200
    lr_scale: float = 1.0
    record_every: int = 10
    trace_points: int = 0


def _paired_run(config: LinearizationConfig, dataset: str, width: int, seed: int) -> PairedResult:
    data_key, split_key, param_key, batch_key = jax.random.split(jax.random.key(seed), 4)
    n = config.n_train + config.n_test
    data = study_dataset(dataset, n, config.length, config.input_dim, config.delta, key=data_key)
    train, test = train_test_split(data, config.n_test, key=split_key)
    cfg = ntk_rnn.RNNConfig(width=width, input_dim=data.input_dim, output_dim=data.output_dim)
    tcfg = TrainConfig(steps=config.steps, lr_scale=config.lr_scale, record_every=config.record_every, kernel_every=0)
    params = ntk_rnn.init_params(cfg, key=param_key)
    return train_paired(cfg, params, train, test, tcfg, key=batch_key, trace_points=config.trace_points, progress=False)


def linearization_table(config: LinearizationConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """The paired histories of every (dataset, width, seed), one row per recorded step (columns of
    ntk_rnn.training.linearized.train_paired), with the run's lr and lambda_max_0 as constant columns."""

    def compute(unit: dict) -> pd.DataFrame:
        result = _paired_run(config, **unit)
        table = result.history
        table["lr"] = result.summary["lr"]
        table["lambda_max_0"] = result.summary["lambda_max_0"]
        return table

    units = [
        {"dataset": d, "width": m, "seed": s} for d in config.datasets for m in config.widths for s in config.seeds
    ]
    return run_sweep("linearization", config, units, compute, cache_dir, progress, AXES)


def trajectory_table(config: LinearizationConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """Traced outputs f_t of the first config.trace_points train and test outputs, for the true
    model, the trained linearized model and the closed form: dataset, width, seed, step, split,
    point, model, value."""

    def compute(unit: dict) -> pd.DataFrame:
        return _paired_run(config, **unit).outputs

    units = [
        {"dataset": d, "width": m, "seed": s} for d in config.datasets for m in config.widths for s in config.seeds
    ]
    return run_sweep("trajectories", config, units, compute, cache_dir, progress, AXES)
