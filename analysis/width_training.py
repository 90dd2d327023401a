"""Study: GD at several widths with kernel tracking (figures 2 and 3).

The step size is eta = lr_scale / lambda_max(K_0), which scales like 1/m, and the number of steps is
fixed, so every width trains for the same time in the kernel regime (docs/theory.md §5).
"""

from __future__ import annotations

import dataclasses

import jax

import ntk_rnn
from analysis.datasets import study_dataset
from analysis.sweep import run_sweep
from ntk_rnn.training.train import TrainConfig, train

AXES = ("widths", "seeds")  # config fields that only list the units (left out of cache keys)


@dataclasses.dataclass(frozen=True)
class WidthTrainingConfig:
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    seeds: tuple[int, ...] = (0, 1, 2)
    dataset: str = "synthetic"
    n: int = 8
    length: int = 6
    input_dim: int = 8
    delta: float = 0.5
    steps: int = 400
    lr_scale: float = 1.0
    record_every: int = 10
    kernel_every: int = 100
    batch_size: int | None = None


def training_table(config: WidthTrainingConfig, cache_dir=None, progress: bool = True):
    """The training histories of every (width, seed), one row per recorded step, with the run's
    lr, lambda_min_0, lambda_max_0, predicted_log_rate and fitted_log_rate as constant columns."""
    tcfg = TrainConfig(
        steps=config.steps,
        lr_scale=config.lr_scale,
        record_every=config.record_every,
        kernel_every=config.kernel_every,
        batch_size=config.batch_size,
    )

    def compute(unit: dict):
        data_key, param_key, batch_key = jax.random.split(jax.random.key(unit["seed"]), 3)
        data = study_dataset(config.dataset, config.n, config.length, config.input_dim, config.delta, key=data_key)
        cfg = ntk_rnn.RNNConfig(width=unit["width"], input_dim=data.input_dim, output_dim=data.output_dim)
        result = train(cfg, ntk_rnn.init_params(cfg, key=param_key), data, tcfg, key=batch_key, progress=progress)
        table = result.history
        for name in ("lr", "lambda_min_0", "lambda_max_0", "predicted_log_rate", "fitted_log_rate"):
            table[name] = result.summary[name]
        return table

    units = [{"width": m, "seed": s} for m in config.widths for s in config.seeds]
    return run_sweep("width_training", config, units, compute, cache_dir, progress, AXES)
