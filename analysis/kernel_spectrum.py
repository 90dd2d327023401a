"""Study: the spectrum of K_0 against width, over seeds and datasets (figure 1)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd
import scipy.linalg

import ntk_rnn
from analysis.datasets import study_dataset
from analysis.sweep import run_sweep

AXES = ("widths", "seeds", "datasets")  # config fields that only list the units (left out of cache keys)


@dataclasses.dataclass(frozen=True)
class SpectrumConfig:
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    seeds: tuple[int, ...] = (0, 1, 2)
    datasets: tuple[str, ...] = ("synthetic", "digits")
    n: int = 16
    length: int = 8
    input_dim: int = 8
    delta: float = 0.5


def spectrum_table(config: SpectrumConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per eigenvalue of K_0: dataset, width, seed, rank (0 = smallest), eigenvalue,
    eigenvalue_over_m. The data depend on (dataset, seed), the weights on (width, seed)."""

    def compute(unit: dict) -> pd.DataFrame:
        data_key, param_key = jax.random.split(jax.random.key(unit["seed"]))
        data = study_dataset(unit["dataset"], data_key, config.n, config.length, config.input_dim, config.delta)
        cfg = ntk_rnn.RNNConfig(width=unit["width"], input_dim=data.input_dim, output_dim=data.output_dim)
        params = ntk_rnn.init_params(cfg, param_key)
        eig = scipy.linalg.eigvalsh(ntk_rnn.empirical_ntk(cfg, params, data.x))
        return pd.DataFrame({"rank": np.arange(eig.size), "eigenvalue": eig, "eigenvalue_over_m": eig / unit["width"]})

    units = [
        {"dataset": ds, "width": m, "seed": s} for ds in config.datasets for m in config.widths for s in config.seeds
    ]
    return run_sweep("kernel_spectrum", config, units, compute, cache_dir, progress, AXES)
