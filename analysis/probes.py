"""Studies: the paper's proof lemmas measured on real networks (docs/theory.md §6; ntk_rnn.apps.probes).

forward_table (forward stability), backward_table (backward stability and intermediate-layer
products), perturbation_table (omega-sized perturbations), training_probe_table (the gradient lower
bound and sign flips along GD and SGD runs, beside random perturbations of the same size).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd

import ntk_rnn
from analysis.datasets import study_dataset
from analysis.eigenvalues import clustered_first_tokens
from analysis.sweep import run_sweep
from ntk_rnn import probes
from ntk_rnn.network.data import SequenceData
from ntk_rnn.training.train import TrainConfig, train

AXES = (
    "activations",
    "sigma_w2s",
    "widths",
    "seeds",
    "kinds",
    "omegas",
    "deltas",
    "product_widths",
    "product_activations",
)
ACTIVATIONS = ("relu", "tanh", "erf", "linear")


@dataclasses.dataclass(frozen=True)
class ForwardConfig:
    """||h_l|| against l at initialization, per activation, at the paper's sigma_w2 = 2 and another."""

    activations: tuple[str, ...] = ACTIVATIONS
    sigma_w2s: tuple[float, ...] = (2.0, 1.0)
    widths: tuple[int, ...] = (64, 256, 1024, 4096)
    seeds: tuple[int, ...] = (0, 1, 2)
    n: int = 4
    length: int = 32
    input_dim: int = 8
    delta: float = 0.5


def forward_table(config: ForwardConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per (activation, sigma_w2, kernel, width, seed, step): norm = the mean over the n
    sequences of ||h_l|| (kernel "empirical"), or of its infinite-width value (kernel "limit", width
    NaN); paper parameterization, unit tokens (the paper's data)."""

    def compute(unit: dict) -> pd.DataFrame:
        data_key, param_key = jax.random.split(jax.random.key(unit["seed"]))
        data = study_dataset("synthetic", config.n, config.length, config.input_dim, config.delta, key=data_key)
        cfg = ntk_rnn.RNNConfig(unit.get("width", 1), config.input_dim, activation=unit["activation"],
                                sigma_w2=unit["sigma_w2"])  # fmt: skip
        if unit["kernel"] == "limit":
            norms = probes.limit_forward_norms(cfg, data.x)
        else:
            norms = probes.forward_norms(cfg, ntk_rnn.init_params(cfg, key=param_key), data.x)
        return pd.DataFrame({"step": np.arange(config.length), "norm": norms.mean(axis=0)})

    grid = [(a, s2, s) for a in config.activations for s2 in config.sigma_w2s for s in config.seeds]
    units = [
        {"activation": a, "sigma_w2": s2, "kernel": "empirical", "width": m, "seed": s}
        for a, s2, s in grid
        for m in config.widths
    ] + [{"activation": a, "sigma_w2": s2, "kernel": "limit", "seed": s} for a, s2, s in grid]
    return run_sweep("forward_stability", config, units, compute, cache_dir, progress, AXES)


@dataclasses.dataclass(frozen=True)
class BackwardConfig:
    """||B D_l W ... D_a W||_2 / sqrt(m/d) against l - a per activation and width, with the limit; and
    the intermediate-layer products ||D_l W ... D_1 W||_2 (one sample, matrix-free) per product_activations
    and product_widths, on sequences of product_length steps, at l - 1 = 0 and the powers of 2 below
    product_length - 1 (product_distances)."""

    activations: tuple[str, ...] = ACTIVATIONS
    widths: tuple[int, ...] = (256, 1024, 4096)
    product_widths: tuple[int, ...] = (256, 1024)
    product_activations: tuple[str, ...] = ("relu",)
    product_length: int = 66
    seeds: tuple[int, ...] = (0, 1, 2)
    n: int = 2
    length: int = 16
    input_dim: int = 8
    delta: float = 0.5


def product_distances(length: int) -> tuple[int, ...]:
    """The distances l - 1 at which the products D_l W ... D_1 W are measured on `length` steps: 0 and the
    powers of 2 up to length - 2."""
    if length < 2:
        raise ValueError(f"product_length must be >= 2 (a product needs steps 0 and 1), got {length}")
    return (0, *(2**k for k in range((length - 2).bit_length())))


def _by_distance(norms: np.ndarray) -> np.ndarray:
    """Mean over samples i and steps l of a (n, L, L) [i, l, a] array at each distance l - a, (L,)."""
    length = norms.shape[1]
    return np.array([np.mean(np.diagonal(norms, offset=-s, axis1=1, axis2=2)) for s in range(length)])


def backward_table(config: BackwardConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per (quantity, activation, kernel, width, seed, distance): value.

    quantity "backward": ||B D_l W ... D_a W||_2 / sqrt(m/d) averaged over samples and l at distance
    l - a (kernel "empirical"; kernel "limit" is its infinite-width value, width NaN); quantity
    "product": ||D_{1+s} W ... D_1 W||_2 (s + 1 factors) on the first sample at distance s in
    product_distances(product_length) (0-based steps, empirical only).
    """
    distances = product_distances(config.product_length)

    def compute(unit: dict) -> pd.DataFrame:
        data_key, param_key = jax.random.split(jax.random.key(unit["seed"]))
        length = config.product_length if unit["quantity"] == "product" else config.length
        data = study_dataset("synthetic", config.n, length, config.input_dim, config.delta, key=data_key)
        cfg = ntk_rnn.RNNConfig(unit.get("width", 1), config.input_dim, activation=unit["activation"])
        distance = np.arange(config.length)
        if unit["kernel"] == "limit":
            return pd.DataFrame({"distance": distance, "value": _by_distance(probes.limit_backward_norms(cfg, data.x))})
        params = ntk_rnn.init_params(cfg, key=param_key)
        if unit["quantity"] == "product":
            norms = probes.product_norms(cfg, params, data.x, start=1, distances=distances)
            return pd.DataFrame({"distance": distances, "value": norms[1 + np.array(distances)]})
        scale = np.sqrt(cfg.width / cfg.output_dim)
        return pd.DataFrame({"distance": distance, "value": _by_distance(probes.backward_norms(cfg, params, data.x))
                             / scale})  # fmt: skip

    units = []
    for a in config.activations:
        for s in config.seeds:
            units += [{"quantity": "backward", "activation": a, "kernel": "empirical", "width": m, "seed": s}
                      for m in config.widths]  # fmt: skip
            units.append({"quantity": "backward", "activation": a, "kernel": "limit", "seed": s})
    units += [{"quantity": "product", "activation": a, "kernel": "empirical", "width": m, "seed": config.seeds[0]}
              for a in config.product_activations for m in config.product_widths]  # fmt: skip
    return run_sweep("backward_stability", config, units, compute, cache_dir, progress, AXES)


@dataclasses.dataclass(frozen=True)
class PerturbationConfig:
    """W -> W + Delta, ||Delta||_2 = omega / sqrt(m), in each direction kind, over omega and width; the
    adversarial kind (a full SVD per ascent step, O(m^3)) only at the widths <= adversarial_max_width."""

    kinds: tuple[str, ...] = probes.KINDS
    widths: tuple[int, ...] = (128, 256, 512, 1024)
    adversarial_max_width: int = 512
    omegas: tuple[float, ...] = tuple(float(w) for w in np.logspace(-1.5, 0.5, 5))
    seeds: tuple[int, ...] = (0, 1)
    n: int = 8
    length: int = 6
    input_dim: int = 8
    delta: float = 0.5
    ascent_steps: int = 5


PERTURBATION_MEASURES = ("max_flip_count", "flip_fraction", "hidden_change", "backward_change_mean",
                         "backward_change_max", "first_order_error")  # fmt: skip


def perturbation_table(config: PerturbationConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per (kind, width, seed, omega), relu paper model on the paper's data, steps l >= 1 (the
    paper's l >= 2; step 0 does not see W): max_flip_count = max over (i, l) of ||D'_{i,l} - D_{i,l}||_0;
    flip_fraction = its mean over (i, l) divided by m; hidden_change = max over (i, l) of ||h'_{i,l} - h_{i,l}||;
    backward_change_mean / _max = mean / max over (i, l >= a) of ||R' - R||_2 / ||B||_2 for the backward
    products R = B D_l W ... D_a W; first_order_error = ||F(W+Delta) - F(W) - J Delta|| / ||J Delta|| and
    first_order = ||J Delta|| over the outputs at the loss positions."""

    def compute(unit: dict) -> pd.DataFrame:
        data_key, param_key, direction_key = jax.random.split(jax.random.key(unit["seed"]), 3)
        data = study_dataset("synthetic", config.n, config.length, config.input_dim, config.delta, key=data_key)
        cfg = ntk_rnn.RNNConfig(unit["width"], config.input_dim)
        params = ntk_rnn.init_params(cfg, key=param_key)
        rows = []
        for omega in config.omegas:
            delta = probes.perturbation_direction(cfg, params, data.x, unit["kind"], omega, key=direction_key, y=data.y,
                                                  ascent_steps=config.ascent_steps)  # fmt: skip
            r = probes.perturbation_response(cfg, params, data.x, delta)
            backward = r.backward_change[:, 1:]
            rows.append({"omega": omega, "max_flip_count": int(r.flip_count[:, 1:].max()),
                         "flip_fraction": float(r.flip_fraction[1:].mean()),
                         "hidden_change": float(r.hidden_change[:, 1:].max()),
                         "backward_change_mean": float(np.nanmean(backward)),
                         "backward_change_max": float(np.nanmax(backward)),
                         "first_order_error": r.first_order_error, "first_order": r.first_order})  # fmt: skip
        return pd.DataFrame(rows)

    units = [{"kind": k, "width": m, "seed": s} for k in config.kinds for m in config.widths for s in config.seeds
             if k != "adversarial" or m <= config.adversarial_max_width]  # fmt: skip
    return run_sweep("perturbation", config, units, compute, cache_dir, progress, AXES)


@dataclasses.dataclass(frozen=True)
class TrainingProbeConfig:
    """GD and SGD runs on sequences whose first tokens are exactly delta apart (shared later tokens),
    tracking ||grad f||^2 / f against 2 lambda_min(K_t), and the sign flips against omega_t."""

    deltas: tuple[float, ...] = (0.05, 0.15, 0.4)
    seeds: tuple[int, ...] = (0, 1)
    width: int = 256
    n: int = 8
    length: int = 6
    input_dim: int = 8
    steps: int = 300
    gd_lr_scale: float = 1.0
    sgd_lr_scale: float = 0.2
    sgd_batch_size: int = 1
    record_every: int = 10
    kernel_every: int = 20
    omegas: tuple[float, ...] = tuple(float(w) for w in np.logspace(-2, 1, 7))


def training_probe_table(config: TrainingProbeConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per (source, delta, seed, record): source "GD" or "SGD" rows are training records
    (step, loss, omega, pattern_flip_fraction, width, and at kernel checkpoints lambda_min, grad_sq_norm,
    gradient_ratio); source "random" rows hold the sign-flip fraction (steps 1..L-1) of a random
    perturbation of the initial W at each omega of the config, on the same data."""

    def compute(unit: dict) -> pd.DataFrame:
        data_key, param_key, batch_key = jax.random.split(jax.random.key(unit["seed"]), 3)
        base = study_dataset("synthetic", config.n, config.length, config.input_dim, max(config.deltas), key=data_key)
        x = clustered_first_tokens(base.x, unit["delta"])
        x[:, 1:] = x[0, 1:]
        data = SequenceData(x, base.y, "synthetic")
        cfg = ntk_rnn.RNNConfig(config.width, config.input_dim)
        params = ntk_rnn.init_params(cfg, key=param_key)
        if unit["source"] == "random":
            flips = []
            for omega in config.omegas:
                delta = probes.perturbation_direction(cfg, params, data.x, "random", omega, key=batch_key)
                flips.append(probes.perturbation_response(cfg, params, data.x, delta).flip_fraction[1:].mean())
            return pd.DataFrame({"omega": config.omegas, "pattern_flip_fraction": flips})
        sgd = unit["source"] == "SGD"
        tcfg = TrainConfig(steps=config.steps, lr_scale=config.sgd_lr_scale if sgd else config.gd_lr_scale,
                           batch_size=config.sgd_batch_size if sgd else None, record_every=config.record_every,
                           kernel_every=config.kernel_every)  # fmt: skip
        return train(cfg, params, data, tcfg, key=batch_key, progress=False).history.assign(width=config.width)

    units = [
        {"source": source, "delta": d, "seed": s}
        for source in ("GD", "SGD", "random")
        for d in config.deltas
        for s in config.seeds
    ]
    return run_sweep("training_probes", config, units, compute, cache_dir, progress, AXES)
