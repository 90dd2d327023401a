"""Studies: the smallest eigenvalue and conditioning of the empirical and infinite-width kernels
against the data separation delta, the sequence length L, the sample count n, the width
and the activation."""

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

AXES = ("lengths", "deltas", "ns", "digits_lengths", "seeds", "widths", "activations", "parameterizations")


def clustered_first_tokens(x: np.ndarray, delta: float) -> np.ndarray:
    """x (n, L, d_x) in the paper's token form with first tokens moved toward a common direction until
    their minimum pairwise distance is exactly delta (by bisection), keeping the token form.

    The synthetic generator only guarantees a separation of at least delta; this makes delta the
    actual separation, so lambda_min can be studied as a function of it.
    """
    x = np.array(x, dtype=float)
    u = x[:, 0, :-1] * np.sqrt(2.0)  # unit vectors in R^{d_x - 1}
    center = np.zeros(u.shape[1])
    center[0] = 1.0

    def squeezed(t: float) -> np.ndarray:
        v = center + t * u
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def separation(t: float) -> float:
        v = squeezed(t) / np.sqrt(2.0)
        dist = np.linalg.norm(v[:, None] - v[None], axis=-1)
        return float(dist[~np.eye(len(v), dtype=bool)].min())

    lo, hi = 0.0, 1e3
    if separation(hi) < delta:
        raise ValueError(f"delta={delta} exceeds the separation these {len(u)} first tokens can reach")
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if separation(mid) < delta else (lo, mid)
    x[:, 0, :-1] = squeezed(hi) / np.sqrt(2.0)
    return x


def _spectrum_row(K: np.ndarray, scale: float) -> dict:
    eig = scipy.linalg.eigvalsh(K / scale)
    return {"lambda_min": eig[0], "lambda_max": eig[-1], "condition": eig[-1] / eig[0] if eig[0] > 0 else np.inf}


@dataclasses.dataclass(frozen=True)
class SeparationConfig:
    """lambda_min over (L, delta) at n sequences and over (n, L) at delta, empirical at `width` and limit.

    The first tokens are exactly delta apart (clustered_first_tokens). With shared_tail, tokens 2..L
    are the same for every sequence, so the sequences differ only in their first tokens: the case the
    paper's lambda_min bound is built for.
    """

    lengths: tuple[int, ...] = (2, 4, 8, 16)
    deltas: tuple[float, ...] = (0.025, 0.05, 0.1, 0.2, 0.4)
    ns: tuple[int, ...] = (4, 8, 16, 32)
    digits_lengths: tuple[int, ...] = (2, 4, 6, 8)
    seeds: tuple[int, ...] = (0, 1)
    n: int = 8
    delta: float = 0.4
    input_dim: int = 8
    width: int = 512
    shared_tail: bool = True


def separation_table(config: SeparationConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per (grid, n, length, delta, seed, kernel): lambda_min, lambda_max and condition of
    K/m (empirical, relu paper model) and of lim K/m (kernel "limit"). grid is "L-delta" or "n-L" (synthetic
    data) or "digits n-L" (n digits 3 vs 8, their first L rows as the sequence; delta is then NaN)."""

    def compute(unit: dict) -> pd.DataFrame:
        data_key, param_key = jax.random.split(jax.random.key(unit["seed"]))
        if unit["grid"] == "digits n-L":
            x = study_dataset("digits", unit["n"], 0, 0, 0.0, key=data_key).x[:, : unit["length"]]
        else:
            base = max(*config.deltas, config.delta)  # drawn at least this far apart, then squeezed to delta
            data = study_dataset("synthetic", unit["n"], unit["length"], config.input_dim, base, key=data_key)
            x = clustered_first_tokens(data.x, unit["delta"])
            if config.shared_tail:
                x[:, 1:] = x[0, 1:]
        cfg = ntk_rnn.RNNConfig(width=config.width, input_dim=x.shape[-1])
        empirical = ntk_rnn.empirical_ntk(cfg, ntk_rnn.init_params(cfg, key=param_key), x)
        rows = [
            {"kernel": "empirical", **_spectrum_row(empirical, config.width)},
            {"kernel": "limit", **_spectrum_row(limit_ntk(cfg, x), 1.0)},
        ]
        return pd.DataFrame(rows)

    units = (
        [
            {"grid": "L-delta", "n": config.n, "length": length, "delta": delta, "seed": seed}
            for length in config.lengths
            for delta in config.deltas
            for seed in config.seeds
        ]
        + [
            {"grid": "n-L", "n": n, "length": length, "delta": config.delta, "seed": seed}
            for n in config.ns
            for length in config.lengths
            for seed in config.seeds
        ]
        + [
            {"grid": "digits n-L", "n": n, "length": length, "seed": seed}
            for n in config.ns
            for length in config.digits_lengths
            for seed in config.seeds
        ]
    )
    return run_sweep("separation", config, units, compute, cache_dir, progress, AXES)


ACTIVATION_MODELS = {  # activation -> the parameterization whose limit applies at the paper's variances
    "relu": "paper",
    "linear": "paper",
    "erf": "standard",
    "tanh": "standard",
}


@dataclasses.dataclass(frozen=True)
class ConvergenceConfig:
    """Relative distance of the empirical kernel from its limit against width, per activation."""

    widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    seeds: tuple[int, ...] = (0, 1, 2)
    activations: tuple[str, ...] = ("relu", "erf", "tanh", "linear")
    n: int = 4
    length: int = 5
    input_dim: int = 6
    delta: float = 0.5
    sigma_w2: float = 1.0  # below the linear activation's explosion threshold at moderate L


def convergence_table(config: ConvergenceConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per (activation, width, seed): relative_error = ||K/s - Theta||_F / ||Theta||_F, where s
    is m for the "paper"/"standard" parameterizations (ACTIVATION_MODELS) and Theta = limit_ntk."""

    def compute(unit: dict) -> pd.DataFrame:
        data_key, param_key = jax.random.split(jax.random.key(unit["seed"]))
        data = study_dataset("synthetic", config.n, config.length, config.input_dim, config.delta, key=data_key)
        cfg = ntk_rnn.RNNConfig(
            width=unit["width"], input_dim=config.input_dim, activation=unit["activation"],
            parameterization=ACTIVATION_MODELS[unit["activation"]], sigma_w2=config.sigma_w2,
        )  # fmt: skip
        empirical = ntk_rnn.empirical_ntk(cfg, ntk_rnn.init_params(cfg, key=param_key), data.x) / unit["width"]
        limit = limit_ntk(cfg, data.x)
        return pd.DataFrame({"relative_error": [np.linalg.norm(empirical - limit) / np.linalg.norm(limit)]})

    units = [
        {"activation": a, "width": m, "seed": s}
        for a in config.activations
        for m in config.widths
        for s in config.seeds
    ]
    return run_sweep("convergence", config, units, compute, cache_dir, progress, AXES)


@dataclasses.dataclass(frozen=True)
class ConditioningConfig:
    """Condition number of K against L per activation at the paper's variances (sigma_w2 = sigma_u2 = 2),
    in the paper's parameterization (where tanh and erf act through their slope at 0) and the standard one."""

    lengths: tuple[int, ...] = (2, 4, 8, 16, 32)
    activations: tuple[str, ...] = ("relu", "erf", "tanh", "linear")
    parameterizations: tuple[str, ...] = ("paper", "standard")
    seeds: tuple[int, ...] = (0, 1)
    n: int = 8
    input_dim: int = 8
    delta: float = 0.4
    width: int = 512


def conditioning_table(config: ConditioningConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per (activation, parameterization, length, seed, kernel): lambda_min, lambda_max and
    condition of K/m at `width` (kernel "empirical", with its width) and of the limit (kernel "limit")."""

    def compute(unit: dict) -> pd.DataFrame:
        data_key, param_key = jax.random.split(jax.random.key(unit["seed"]))
        data = study_dataset("synthetic", config.n, unit["length"], config.input_dim, config.delta, key=data_key)
        cfg = ntk_rnn.RNNConfig(
            width=config.width, input_dim=config.input_dim, activation=unit["activation"],
            parameterization=unit["parameterization"],
        )  # fmt: skip
        empirical = ntk_rnn.empirical_ntk(cfg, ntk_rnn.init_params(cfg, key=param_key), data.x)
        return pd.DataFrame(
            [
                {"kernel": "empirical", "width": config.width, **_spectrum_row(empirical, config.width)},
                {"kernel": "limit", **_spectrum_row(limit_ntk(cfg, data.x), 1.0)},
            ]
        )

    units = [
        {"activation": a, "parameterization": p, "length": length, "seed": s}
        for a in config.activations
        for p in config.parameterizations
        for length in config.lengths
        for s in config.seeds
    ]
    return run_sweep("conditioning", config, units, compute, cache_dir, progress, AXES)
