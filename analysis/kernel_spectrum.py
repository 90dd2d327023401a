"""Study: the spectrum of K_0 against width and of its infinite-width limit, over seeds and datasets,
with how the labels (the dataset's, and the same labels permuted at random) spread over its
eigenvectors (figure 1)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd
import scipy.linalg

import ntk_rnn
from analysis.datasets import study_dataset
from analysis.sweep import run_sweep
from ntk_rnn.kernels.limit import limit_ntk
from ntk_rnn.network.checks import loss_positions
from ntk_rnn.network.model import select_targets

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


def label_energy(eigenvectors: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fraction of ||y||^2 along each eigenvector: (v_i . y)^2 / ||y||^2, shape (N,), summing to 1.

    eigenvectors: (N, N) columns; y: (N,) targets in the kernel's row order.
    """
    return (eigenvectors.T @ y) ** 2 / (y @ y)


def spectrum_table(config: SpectrumConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per eigenvalue: dataset, kernel ("empirical" at `width`, or "limit" with width NaN), seed,
    rank (0 = smallest), eigenvalue_over_m (of K_0/m, or of lim K_0/m), and the fractions of the squared
    label norm along its eigenvector for the dataset's labels (label_energy) and for the same labels
    permuted over the samples (random_label_energy). The data depend on (dataset, seed), the weights on
    (width, seed); labels are those of the paper's loss positions 1..L-1."""

    def compute(unit: dict) -> pd.DataFrame:
        data_key, param_key = jax.random.split(jax.random.key(unit["seed"]))
        data = study_dataset(unit["dataset"], config.n, config.length, config.input_dim, config.delta, key=data_key)
        cfg = ntk_rnn.RNNConfig(width=unit.get("width", 1), input_dim=data.input_dim, output_dim=data.output_dim)
        if unit["kernel"] == "limit":
            K = limit_ntk(cfg, data.x)
        else:
            K = ntk_rnn.empirical_ntk(cfg, ntk_rnn.init_params(cfg, key=param_key), data.x) / cfg.width
        eig, vectors = scipy.linalg.eigh(K)
        positions = loss_positions(cfg, None, data.length, "positions")
        shuffled = np.random.default_rng(unit["seed"]).permutation(data.n)
        labels = {
            "label_energy": np.asarray(select_targets(data.y, positions)),
            "random_label_energy": np.asarray(select_targets(data.y[shuffled], positions)),
        }
        return pd.DataFrame(
            {
                "rank": np.arange(eig.size),
                "eigenvalue_over_m": eig,
                **{name: label_energy(vectors, y.reshape(-1)) for name, y in labels.items()},
            }
        )

    units = [
        {"dataset": ds, "kernel": "empirical", "width": m, "seed": s}
        for ds in config.datasets
        for m in config.widths
        for s in config.seeds
    ] + [{"dataset": ds, "kernel": "limit", "seed": s} for ds in config.datasets for s in config.seeds]
    return run_sweep("kernel_spectrum", config, units, compute, cache_dir, progress, AXES)
