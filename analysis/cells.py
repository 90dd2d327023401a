"""Studies: the kernel regime for every cell (Elman, GRU, LSTM, stacked Elman; docs/theory.md §8).

Three questions per model: how the kernel's conditioning grows with the sequence length L, whether
training is lazy (kernel drift and true-vs-linearized gap falling with width), and whether K_0/m
concentrates as the width grows: the spread between seeds, which needs no limit, and the distance to the
infinite-width Theta (ntk_rnn.limit_ntk: exact for Elman, a Monte Carlo estimate over the per-unit process for
the GRU and LSTM, docs/theory.md §15). The models are named in MODELS; the gated cells use the "standard"
parameterization, where K/m is the normalized kernel, as it is in the paper's for the relu Elman.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import numpy as np
import pandas as pd
import scipy.linalg

import ntk_rnn
from analysis.datasets import study_dataset
from analysis.sweep import run_sweep
from ntk_rnn.kernels.limit import limit_ntk
from ntk_rnn.network.data import train_test_split
from ntk_rnn.training.paired import train_paired
from ntk_rnn.training.train import TrainConfig

AXES = ("models", "widths", "seeds")  # config fields that only list the units (left out of cache keys)

MODELS = {  # name -> RNNConfig fields besides width and input_dim
    "elman-relu": {"cell": "elman", "activation": "relu", "parameterization": "paper"},  # the paper's model
    "elman-tanh": {"cell": "elman", "activation": "tanh", "parameterization": "standard"},
    "gru": {"cell": "gru", "parameterization": "standard"},
    "lstm": {"cell": "lstm", "parameterization": "standard"},
    "elman-relu-2layer": {"cell": "elman", "activation": "relu", "parameterization": "paper", "num_layers": 2},
}
QUICK_MODELS = ("elman-relu", "elman-tanh", "gru", "lstm")


def model_config(model: str, width: int, input_dim: int) -> ntk_rnn.RNNConfig:
    """The RNNConfig of a named model (MODELS) at width m; one output, only W trained."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {tuple(MODELS)}, got {model!r}")
    return ntk_rnn.RNNConfig(width=width, input_dim=input_dim, **MODELS[model])


def prefix_rows(length: int, full_length: int, n: int) -> np.ndarray:
    """Rows of the kernel at positions 1..full_length-1 (ordered (sample, position)) that belong to the
    positions 1..length-1 of each of the n samples."""
    positions = full_length - 1
    return (np.arange(n)[:, None] * positions + np.arange(length - 1)[None, :]).ravel()


def spectrum_row(K: np.ndarray, scale: float) -> dict:
    """lambda_min, lambda_max and condition of K / scale."""
    eig = scipy.linalg.eigvalsh(K / scale)
    return {"lambda_min": eig[0], "lambda_max": eig[-1], "condition": eig[-1] / eig[0] if eig[0] > 0 else np.inf}


@dataclasses.dataclass(frozen=True)
class CellConditioningConfig:
    """lambda_min(K_0)/m and lambda_max/lambda_min against L per model, at one width."""

    models: tuple[str, ...] = tuple(MODELS)
    seeds: tuple[int, ...] = (0, 1, 2)
    lengths: tuple[int, ...] = (2, 3, 4, 6, 8)
    width: int = 256
    n: int = 6
    input_dim: int = 6
    delta: float = 0.5
    limit_samples: int = 2**16  # units of a gated cell's Monte Carlo limit (its lambda_min moves by 1-2% between keys)
    limit_replicates: int = 8


def cell_conditioning_table(config: CellConditioningConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per (model, seed, length): lambda_min, lambda_max and condition of K_0/m at config.width, and
    lambda_min_limit, lambda_max_limit, condition_limit of the infinite-width Theta on the same sequences
    (ntk_rnn.limit_ntk: exact for Elman, a Monte Carlo mean for gated cells).

    The networks are causal, so the kernel of the first L steps of each sequence is the block of the
    kernel at max(lengths) on positions 1..L-1: one kernel per (model, seed) gives every L, on nested
    sequences (the same n sequences, cut at L)."""
    full = max(config.lengths)
    if min(config.lengths) < 2:
        raise ValueError(f"lengths must be >= 2 (the loss positions are 2..L), got {config.lengths}")

    def compute(unit: dict) -> pd.DataFrame:
        data_key, param_key = jax.random.split(jax.random.key(unit["seed"]))
        data = study_dataset("synthetic", config.n, full, config.input_dim, config.delta, key=data_key)
        cfg = model_config(unit["model"], config.width, config.input_dim)
        K = ntk_rnn.empirical_ntk(cfg, ntk_rnn.init_params(cfg, key=param_key), data.x)
        if cfg.cell == "elman":
            theta = limit_ntk(cfg, data.x)
        else:
            key = jax.random.fold_in(jax.random.key(unit["seed"]), 1)  # apart from the data's and weights' keys
            theta = limit_ntk(cfg, data.x, key=key, samples=config.limit_samples,
                              replicates=config.limit_replicates).mean  # fmt: skip
        rows = []
        for length in sorted(config.lengths):
            keep = np.ix_(*2 * [prefix_rows(length, full, config.n)])
            limit = {f"{k}_limit": v for k, v in spectrum_row(np.asarray(theta)[keep], 1.0).items()}
            rows.append({"length": length, "width": config.width, **spectrum_row(K[keep], config.width), **limit})
        return pd.DataFrame(rows)

    units = [{"model": m, "seed": s} for m in config.models for s in config.seeds]
    return run_sweep("cell_conditioning", config, units, compute, cache_dir, progress, AXES)


@dataclasses.dataclass(frozen=True)
class CellLazyConfig:
    """The true and the linearized network trained side by side with full-batch GD at
    eta = lr_scale / lambda_max(K_0) for `steps` steps, per model, width and seed."""

    models: tuple[str, ...] = QUICK_MODELS
    widths: tuple[int, ...] = (64, 128, 256, 512)
    seeds: tuple[int, ...] = (0, 1, 2)
    n_train: int = 6
    n_test: int = 6
    length: int = 8
    input_dim: int = 6
    delta: float = 0.5
    steps: int = 100
    lr_scale: float = 1.0


LAZY_COLUMNS = ("kernel_drift", "gap_train", "gap_test", "gap_train_rel", "gap_test_rel", "w_distance_true",
                "train_loss_true", "train_loss_lin")  # fmt: skip


def cell_lazy_table(config: CellLazyConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per (model, width, seed) at the end of training: kernel_drift = ||K_T - K_0||_F/||K_0||_F,
    gap_train/gap_test = ||f_true - f_lin|| and gap_*_rel = gap / ||f_true - f_0|| (ntk_rnn.training.paired),
    w_distance_true, the final train losses of both models, loss_0, lr, lambda_min_0 and lambda_max_0."""
    tcfg = TrainConfig(steps=config.steps, lr_scale=config.lr_scale, record_every=config.steps, kernel_every=0)

    def compute(unit: dict) -> pd.DataFrame:
        data_key, split_key, param_key, batch_key = jax.random.split(jax.random.key(unit["seed"]), 4)
        n = config.n_train + config.n_test
        data = study_dataset("synthetic", n, config.length, config.input_dim, config.delta, key=data_key)
        train, test = train_test_split(data, config.n_test, key=split_key)
        cfg = model_config(unit["model"], unit["width"], config.input_dim)
        params = ntk_rnn.init_params(cfg, key=param_key)
        result = train_paired(cfg, params, train, test, tcfg, key=batch_key, progress=False)
        final = result.history.iloc[-1]
        row = {"steps": int(final["step"]), **{c: float(final[c]) for c in LAZY_COLUMNS}}
        row["loss_0"] = float(result.history["train_loss_true"].iloc[0])
        row |= {k: result.summary[k] for k in ("lr", "lambda_min_0", "lambda_max_0")}
        return pd.DataFrame([row])

    units = [{"model": m, "width": w, "seed": s} for m in config.models for w in config.widths for s in config.seeds]
    return run_sweep("cell_lazy", config, units, compute, cache_dir, progress, AXES)


@dataclasses.dataclass(frozen=True)
class CellSpreadConfig:
    """K_0/m of several initializations on one fixed data set, per model and width. `seeds` enter
    every unit (the spread is over seed pairs), so they are part of the cache key."""

    models: tuple[str, ...] = QUICK_MODELS
    widths: tuple[int, ...] = (64, 128, 256, 512)
    seeds: tuple[int, ...] = (0, 1, 2)
    data_seed: int = 0
    n: int = 6
    length: int = 8
    input_dim: int = 6
    delta: float = 0.5
    limit_samples: int = 2**18  # units of a gated cell's Monte Carlo limit: relative error about 3 / sqrt(samples)
    limit_replicates: int = 8
    limit_seed: int = 0


def spread_limit(cfg: ntk_rnn.RNNConfig, x, config: CellSpreadConfig) -> tuple[np.ndarray, float]:
    """The infinite-width K/m of cfg on x and its relative standard error ||stderr||_F / ||mean||_F: exact (0) for
    Elman models, a Monte Carlo estimate for gated cells, drawn from jax.random.key(config.limit_seed)."""
    if cfg.cell == "elman":
        return np.asarray(limit_ntk(cfg, x)), 0.0
    est = limit_ntk(cfg, x, key=jax.random.key(config.limit_seed), samples=config.limit_samples,
                    replicates=config.limit_replicates)  # fmt: skip
    return est.mean, float(np.linalg.norm(est.stderr) / np.linalg.norm(est.mean))


def cell_spread_table(config: CellSpreadConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """Rows (model, width, quantity, seed, other_seed, value). quantity "spread": one row per seed pair,
    ||K_s/m - K_s'/m||_F / mean_s ||K_s/m||_F (mean over config.seeds); "limit_distance": one row per seed,
    ||K_s/m - Theta||_F / ||Theta||_F against the infinite-width Theta of spread_limit, other_seed NaN;
    "limit_stderr": one row, seed and other_seed NaN, Theta's relative standard error (0 where it is exact),
    the floor below which a distance is Monte Carlo noise. For independent kernels spread ~ sqrt(2) x the
    distance to their mean. Theta does not depend on the width: it is computed once per model and call."""
    if len(config.seeds) < 2:
        raise ValueError(f"the spread needs at least two seeds, got {config.seeds}")
    data = study_dataset("synthetic", config.n, config.length, config.input_dim, config.delta,
                         key=jax.random.key(config.data_seed))  # fmt: skip
    limits: dict[str, tuple[np.ndarray, float]] = {}

    def compute(unit: dict) -> pd.DataFrame:
        cfg = model_config(unit["model"], unit["width"], config.input_dim)
        kernels = {
            s: ntk_rnn.empirical_ntk(cfg, ntk_rnn.init_params(cfg, key=jax.random.key(s)), data.x) / cfg.width
            for s in config.seeds
        }
        scale = np.mean([np.linalg.norm(K) for K in kernels.values()])
        rows = [
            {"quantity": "spread", "seed": a, "other_seed": float(b),
             "value": float(np.linalg.norm(kernels[a] - kernels[b]) / scale)}
            for a, b in itertools.combinations(config.seeds, 2)
        ]  # fmt: skip
        if unit["model"] not in limits:
            limits[unit["model"]] = spread_limit(cfg, data.x, config)
        theta, stderr = limits[unit["model"]]
        rows += [
            {"quantity": "limit_distance", "seed": s, "other_seed": np.nan,
             "value": float(np.linalg.norm(K - theta) / np.linalg.norm(theta))}
            for s, K in kernels.items()
        ]  # fmt: skip
        rows.append({"quantity": "limit_stderr", "seed": np.nan, "other_seed": np.nan, "value": stderr})
        return pd.DataFrame(rows)

    units = [{"model": m, "width": w} for m in config.models for w in config.widths]
    return run_sweep("cell_spread", config, units, compute, cache_dir, progress, ("models", "widths"))
