"""Studies: how wide is wide enough? The finite-width fluctuations of K_0/m over (m, L), the smallest width
m* at which the kernel regime holds, found by bisection, and the number of GD steps against the
separation delta and the sample count n past m* (docs/theory.md §6 and §10: the paper's width requirement is
m >= C varrho^C, varrho = n L d delta^-1 log(m/eps), C unstated).

All on the relu paper model (RNNConfig defaults) through the core: ntk_rnn.empirical_ntk for K_0,
ntk_rnn.run_steps for GD and KernelGD for the linearized model, on nested widths (analysis.nested: one draw
per seed at the config's largest width, each width its leading block rescaled).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence

import jax
import numpy as np
import pandas as pd
import scipy.linalg

import ntk_rnn
from analysis.cells import prefix_rows
from analysis.datasets import study_dataset
from analysis.eigenvalues import clustered_first_tokens
from analysis.nested import gd_until, linearized_steps, nested_params, paper_kernel, paper_model, paper_outputs
from analysis.sweep import run_sweep
from ntk_rnn import KernelGD, limit_ntk

Params = dict[str, jax.Array]


def _positive(config, name: str, values: Sequence, integer: bool = True) -> None:
    ok = len(values) > 0 and all((isinstance(v, int) and not isinstance(v, bool)) if integer else
                                 (isinstance(v, (int, float)) and math.isfinite(v)) for v in values)  # fmt: skip
    if not ok or min(values) <= 0:
        raise ValueError(
            f"{type(config).__name__}.{name} must be a non-empty tuple of positive numbers, got {values!r}"
        )


def width_grid(min_width: int, cap: int, per_octave: int = 4) -> tuple[int, ...]:
    """The widths round(2^(k/per_octave)) in [min_width, cap], deduplicated and ascending, with cap last."""
    if not 1 <= min_width <= cap:
        raise ValueError(f"need 1 <= min_width <= cap, got min_width={min_width}, cap={cap}")
    k0, k1 = math.ceil(per_octave * math.log2(min_width) - 1e-9), math.floor(per_octave * math.log2(cap) + 1e-9)
    grid = sorted({round(2 ** (k / per_octave)) for k in range(k0, k1 + 1)} | {cap})
    return tuple(w for w in grid if min_width <= w <= cap)


def bisect_width(passes: Callable[[int], bool], widths: Sequence[int]) -> tuple[int | None, list[int]]:
    """The smallest width of the ascending grid `widths` at which passes(width) is True, by bisection, and
    the widths probed (in order). The cap (the last width) is checked first: if it fails, the result is
    (None, probed), censored at ">cap". Assumes the criterion is monotone in m (False below m*, True from
    m* on); a criterion that is not gives some width where it switches from False to True."""
    probed: list[int] = []

    def check(index: int) -> bool:
        probed.append(int(widths[index]))
        return bool(passes(int(widths[index])))

    hi = len(widths) - 1
    if not check(hi):
        return None, probed
    if check(0):
        return int(widths[0]), probed
    lo = 0  # passes(widths[lo]) is False, passes(widths[hi]) True
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if check(mid) else (mid, hi)
    return int(widths[hi]), probed


def separated_data(n: int, length: int, input_dim: int, delta: float, seed: int, shared_tail: bool = True):
    """(x (n, L, d_x), y (n (L-1),)): the paper's synthetic sequences with first tokens exactly delta apart
    (analysis.eigenvalues.clustered_first_tokens), later tokens shared by every sequence when shared_tail,
    and N(0, 1) targets at the loss positions 1..L-1; drawn with jax.random.key(seed)."""
    base = study_dataset("synthetic", n, length, input_dim, max(delta, 0.5), key=jax.random.key(seed))
    x = clustered_first_tokens(base.x, delta)
    if shared_tail:
        x[:, 1:] = x[0, 1:]
    return x, np.asarray(base.y[:, 1:, 0], dtype=float).reshape(-1)


def relative_distance(K: np.ndarray, reference: np.ndarray) -> float:
    """||K - reference||_F / ||reference||_F."""
    return float(np.linalg.norm(K - reference) / np.linalg.norm(reference))


# ----------------------------------------------------------------------------- 1. fluctuations


@dataclasses.dataclass(frozen=True)
class FluctuationConfig:
    """||K_0/m - Theta||_F/||Theta||_F and the seed-to-seed spread over (m, L), optionally n and delta.

    One data set per (n, delta) (data_seed; the synthetic generator's first tokens at least delta apart,
    independent tails), `seeds` initializations per width; lengths are prefixes of the longest sequences."""

    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    lengths: tuple[int, ...] = (2, 4, 8, 16)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    ns: tuple[int, ...] = (8,)
    deltas: tuple[float, ...] = (0.5,)
    input_dim: int = 8
    data_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("widths", "lengths", "ns"):
            _positive(self, name, getattr(self, name))
        _positive(self, "deltas", self.deltas, integer=False)
        if min(self.lengths) < 2:
            raise ValueError(f"FluctuationConfig.lengths must be >= 2 (loss positions 2..L), got {self.lengths}")
        if len(self.seeds) < 2:
            raise ValueError(f"FluctuationConfig.seeds needs at least two seeds (the spread), got {self.seeds}")


def fluctuation_table(config: FluctuationConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """Rows (n, delta, width, length, quantity, seed, other_seed, value). quantity "limit_distance": one row
    per seed, ||K_s/m - Theta||_F / ||Theta||_F with Theta = limit_ntk on the same sequences (other_seed
    NaN); "spread": one row per seed pair, ||K_s/m - K_s'/m||_F / ||Theta||_F. One unit per (n, delta, width)."""
    full = max(config.lengths)
    cap = max(config.widths)

    def compute(unit: dict) -> pd.DataFrame:
        n, width = unit["n"], unit["width"]
        data = study_dataset(
            "synthetic", n, full, config.input_dim, unit["delta"], key=jax.random.key(config.data_seed)
        )
        x = np.asarray(data.x)
        cfg = paper_model(width, config.input_dim)
        theta = limit_ntk(cfg, x)
        kernels = {s: paper_kernel(cfg, nested_params(cfg, cap, key=jax.random.key(s)), x) / width
                   for s in config.seeds}  # fmt: skip
        rows = []
        for length in config.lengths:
            keep = np.ix_(prefix_rows(length, full, n), prefix_rows(length, full, n))
            limit = theta[keep]
            rows += [{"length": length, "quantity": "limit_distance", "seed": s, "other_seed": np.nan,
                      "value": relative_distance(K[keep], limit)} for s, K in kernels.items()]  # fmt: skip
            rows += [{"length": length, "quantity": "spread", "seed": a, "other_seed": float(b),
                      "value": float(np.linalg.norm(kernels[a][keep] - kernels[b][keep]) / np.linalg.norm(limit))}
                     for a, b in itertools.combinations(config.seeds, 2)]  # fmt: skip
        return pd.DataFrame(rows)

    units = [{"n": n, "delta": d, "width": m} for n in config.ns for d in config.deltas for m in config.widths]
    return run_sweep("width_fluctuations", config, units, compute, cache_dir, progress, ("widths", "ns", "deltas"))


# ----------------------------------------------------------------------------- 2. the width requirement


@dataclasses.dataclass(frozen=True)
class RequirementConfig:
    """The smallest width m* per (criterion, L, n, delta), by bisection on width_grid(min_width, cap).

    "spectrum": lambda_min(K_0)/m within a factor `factor` of lambda_min(Theta) (limit_ntk) for at least a
    fraction `fraction` of the seeds, over the grid (lengths, ns, deltas). "training", over the grid
    (train_lengths, train_ns, train_deltas), capped at train_cap: GD at eta = 1/lambda_max(K_0) on the true
    network reaches eps of its initial loss within max_steps steps, at a step T where it stays within
    gap_tol of the linearized model (closed form) at T, ||f_true,T - f_lin,T|| <= gap_tol ||f_true,T - f_0||,
    for at least `fraction` of the seeds. Data:
    separated_data (first tokens exactly delta apart, shared tails), one draw per (L, n, delta). The seeds
    are common to every width (nested_params under the cap), and the bisection assumes
    the criterion is monotone in m; a noisy criterion makes m* uncertain by a grid step or more."""

    lengths: tuple[int, ...] = (2, 4, 8)
    ns: tuple[int, ...] = (4, 8)
    deltas: tuple[float, ...] = (0.25, 0.5)
    train_lengths: tuple[int, ...] = (2, 4)
    train_ns: tuple[int, ...] = (4,)
    train_deltas: tuple[float, ...] = (0.5,)
    seeds: tuple[int, ...] = tuple(range(10))
    input_dim: int = 8
    data_seed: int = 0
    min_width: int = 8
    cap: int = 1024
    train_cap: int = 512
    per_octave: int = 4
    factor: float = 2.0
    fraction: float = 0.9
    eps: float = 1e-3
    gap_tol: float = 0.1
    max_steps: int = 2000

    def __post_init__(self) -> None:
        for name in ("lengths", "ns", "train_lengths", "train_ns"):
            if getattr(self, name):
                _positive(self, name, getattr(self, name))
        for name in ("deltas", "train_deltas"):
            if getattr(self, name):
                _positive(self, name, getattr(self, name), integer=False)
        if min((*self.lengths, *self.train_lengths), default=2) < 2:
            raise ValueError("RequirementConfig.lengths and train_lengths must be >= 2 (loss positions 2..L)")
        if not self.seeds:
            raise ValueError("RequirementConfig.seeds must not be empty")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"RequirementConfig.fraction must lie in (0, 1], got {self.fraction!r}")
        if not self.factor > 1:
            raise ValueError(f"RequirementConfig.factor must exceed 1, got {self.factor!r}")
        for name in ("cap", "train_cap", "min_width", "per_octave", "max_steps"):
            _positive(self, name, (getattr(self, name),))
        if not 1 <= self.min_width <= min(self.cap, self.train_cap):
            raise ValueError(f"RequirementConfig.min_width={self.min_width} must lie in [1, min(cap, train_cap)]")


def spectrum_passes(config: RequirementConfig, x: np.ndarray, cap: int, seen: dict) -> Callable[[int], bool]:
    """passes(m): lambda_min(K_0)/m within config.factor of the limit's lambda_min for >= config.fraction
    of the seeds (widths nested under cap); seen[m] gets {"pass_fraction"} of each probed width."""
    target = float(scipy.linalg.eigvalsh(limit_ntk(paper_model(8, x.shape[-1]), x))[0])

    def passes(width: int) -> bool:
        cfg = paper_model(width, x.shape[-1])
        ok = 0
        for s in config.seeds:
            K = paper_kernel(cfg, nested_params(cfg, cap, key=jax.random.key(s)), x)
            ratio = float(scipy.linalg.eigvalsh(K)[0]) / width / target
            ok += 1.0 / config.factor <= ratio <= config.factor
        seen[width] = {"pass_fraction": ok / len(config.seeds), "slow_fraction": np.nan}
        return ok >= config.fraction * len(config.seeds)

    return passes


def training_run(
    cfg: ntk_rnn.RNNConfig,
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    lr_scale: float,
    eps: float,
    max_steps: int,
    own_steps: bool = False,
) -> dict:
    """GD at eta = lr_scale / lambda_max(K_0) for T steps, the true network against the linearized one (closed
    form) at T: gap_rel = ||f_true,T - f_lin,T|| / ||f_true,T - f_0|| and loss_ratio_true = the true loss over
    the initial loss. T ("steps") is the linearized model's step count to eps of its initial loss, or with
    own_steps the true network's; NaN (and the rest NaN) when it needs more than max_steps."""
    K = paper_kernel(cfg, params, x)
    f0 = paper_outputs(cfg, params, x)
    lam_max = float(scipy.linalg.eigvalsh(K)[-1])
    lr = lr_scale / lam_max
    row = {"steps": np.nan, "lr": lr, "gap_rel": np.nan, "loss_ratio_true": np.nan}
    if own_steps:
        trained, steps = gd_until(cfg, params, x, y, lr, max_steps + 1, until=eps)
        if steps > max_steps:
            return row
    else:
        steps = linearized_steps(K, f0, y, lr, eps, max_steps)
        if steps is None:
            return row
        trained, _ = gd_until(cfg, params, x, y, lr, steps)
    row["steps"] = steps
    f_lin = KernelGD.from_kernel(K, f0, y, lr).train_outputs([steps])[0]
    f_true = paper_outputs(cfg, trained, x)
    moved = np.linalg.norm(f_true - f0)
    row["gap_rel"] = float(np.linalg.norm(f_true - f_lin) / moved) if moved > 0 else np.nan
    row["loss_ratio_true"] = float(np.sum((f_true - y) ** 2) / np.sum((f0 - y) ** 2))
    return row


def training_passes(config: RequirementConfig, x: np.ndarray, y: np.ndarray, cap: int, seen: dict
                    ) -> Callable[[int], bool]:  # fmt: skip
    """passes(m): true GD at eta = 1/lambda_max reaches eps of its initial loss within max_steps, at a step T
    where gap_rel <= gap_tol against the linearized model at T, for >= config.fraction of the seeds; seen[m]
    gets {"pass_fraction", "slow_fraction" (seeds whose true GD needs more than max_steps)} of each probed
    width."""

    def passes(width: int) -> bool:
        cfg = paper_model(width, x.shape[-1])
        ok = slow = 0
        for s in config.seeds:
            run = training_run(cfg, nested_params(cfg, cap, key=jax.random.key(s)), x, y, 1.0, config.eps,
                               config.max_steps, own_steps=True)  # fmt: skip
            ok += bool(run["gap_rel"] <= config.gap_tol)  # NaN (too slow) fails
            slow += bool(np.isnan(run["steps"]))
        seen[width] = {"pass_fraction": ok / len(config.seeds), "slow_fraction": slow / len(config.seeds)}
        return ok >= config.fraction * len(config.seeds)

    return passes


def requirement_table(config: RequirementConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per (criterion, length, n, delta): m_star (NaN when censored), censored (the cap failed),
    cap, the probed widths ("w1 w2 ..." in probing order), probes (their count), and at the cap the
    fraction of seeds that pass (pass_at_cap) and, for "training", that need more than max_steps steps
    (slow_at_cap: a censoring by the step cap, not by the width)."""

    def compute(unit: dict) -> pd.DataFrame:
        training = unit["criterion"] == "training"
        cap = config.train_cap if training else config.cap
        x, y = separated_data(unit["n"], unit["length"], config.input_dim, unit["delta"], config.data_seed)
        seen: dict = {}
        passes = training_passes(config, x, y, cap, seen) if training else spectrum_passes(config, x, cap, seen)
        m_star, probed = bisect_width(passes, width_grid(config.min_width, cap, config.per_octave))
        row = {"m_star": np.nan if m_star is None else m_star, "censored": m_star is None, "cap": cap,
               "probed": " ".join(map(str, probed)), "probes": len(probed)}  # fmt: skip
        row |= {"pass_at_cap": seen[cap]["pass_fraction"], "slow_at_cap": seen[cap]["slow_fraction"]}
        return pd.DataFrame([row])

    grids = {"spectrum": (config.lengths, config.ns, config.deltas),
             "training": (config.train_lengths, config.train_ns, config.train_deltas)}  # fmt: skip
    units = [{"criterion": c, "length": L, "n": n, "delta": d}
             for c, axes in grids.items() for L, n, d in itertools.product(*axes)]  # fmt: skip
    axes = ("lengths", "ns", "deltas", "train_lengths", "train_ns", "train_deltas")
    return run_sweep("width_requirement", config, units, compute, cache_dir, progress, axes)


# ----------------------------------------------------------------------------- 6. the rate against delta and n


@dataclasses.dataclass(frozen=True)
class RateConfig:
    """GD steps to eps of the initial loss against delta and n at one width past m*, for two step sizes:
    "lambda_max": eta = lr_scale / lambda_max(K_0); "paper": eta = kappa delta / m (Thm 1's delta/m, its
    rho^-44 absorbed into kappa), kappa = paper_lr_scale / max over the grid of delta lambda_max(Theta), so
    eta lambda_max(K_0) ~ paper_lr_scale at the grid's least stable point. T from the linearized closed
    form (steps past max_steps: NaN); the true network is trained T steps at eta = c/lambda_max for the
    first seed where T <= train_max_steps. Data: separated_data, drawn per seed."""

    deltas: tuple[float, ...] = (0.1, 0.2, 0.4)
    ns: tuple[int, ...] = (4, 8, 16)
    seeds: tuple[int, ...] = (0, 1, 2)
    width: int = 512
    length: int = 4
    input_dim: int = 8
    eps: float = 1e-3
    lr_scale: float = 1.0
    paper_lr_scale: float = 1.0
    max_steps: int = 10**7
    train_max_steps: int = 1500

    def __post_init__(self) -> None:
        _positive(self, "deltas", self.deltas, integer=False)
        _positive(self, "ns", self.ns)
        if not self.seeds:
            raise ValueError("RateConfig.seeds must not be empty")
        if self.length < 2:
            raise ValueError(f"RateConfig.length must be >= 2, got {self.length}")
        _positive(self, "width", (self.width,))
        if not (0 < self.lr_scale < 2 and 0 < self.paper_lr_scale < 2):
            raise ValueError("RateConfig.lr_scale and paper_lr_scale must lie in (0, 2) (stable GD)")


def paper_kappa(config: RateConfig) -> float:
    """kappa of eta = kappa delta / m: paper_lr_scale / max_{n, delta} delta lambda_max(Theta), Theta the limit
    kernel on the first seed's data (lambda_max(K_0)/m is close to it past m*)."""
    worst = 0.0
    for n, delta in itertools.product(config.ns, config.deltas):
        x, _ = separated_data(n, config.length, config.input_dim, delta, config.seeds[0])
        theta = limit_ntk(paper_model(config.width, config.input_dim), x)
        worst = max(worst, delta * float(scipy.linalg.eigvalsh(theta)[-1]))
    return config.paper_lr_scale / worst


def rate_table(config: RateConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per (n, delta, seed, rule): rule "lambda_max" or "paper", lr, eta_lambda_max = eta
    lambda_max(K_0) (< 2: stable), steps (the linearized T to eps; NaN past max_steps or unstable),
    lambda_min, lambda_max (of K_0/m), and for rule "lambda_max" at the first seed with T <=
    train_max_steps, loss_ratio_true and gap_rel of the true network after T steps (else NaN)."""
    kappa = paper_kappa(config)

    def compute(unit: dict) -> pd.DataFrame:
        n, delta, seed = unit["n"], unit["delta"], unit["seed"]
        x, y = separated_data(n, config.length, config.input_dim, delta, seed)
        cfg = paper_model(config.width, config.input_dim)
        params = ntk_rnn.init_params(cfg, key=jax.random.key(seed))
        K, f0 = paper_kernel(cfg, params, x), paper_outputs(cfg, params, x)
        eig = scipy.linalg.eigvalsh(K)
        rows = []
        for rule, lr in (("lambda_max", config.lr_scale / eig[-1]), ("paper", unit["kappa"] * delta / config.width)):
            steps = linearized_steps(K, f0, y, lr, config.eps, config.max_steps)
            row = {"rule": rule, "lr": lr, "eta_lambda_max": lr * eig[-1], "steps": np.nan if steps is None else steps,
                   "lambda_min": eig[0] / config.width, "lambda_max": eig[-1] / config.width,
                   "loss_ratio_true": np.nan, "gap_rel": np.nan}  # fmt: skip
            if (
                rule == "lambda_max"
                and seed == config.seeds[0]
                and steps is not None
                and steps <= config.train_max_steps
            ):
                run = training_run(cfg, params, x, y, config.lr_scale, config.eps, config.train_max_steps)
                row |= {"loss_ratio_true": run["loss_ratio_true"], "gap_rel": run["gap_rel"]}
            rows.append(row)
        return pd.DataFrame(rows)

    units = [{"n": n, "delta": d, "seed": s, "kappa": kappa} for n in config.ns for d in config.deltas
             for s in config.seeds]  # fmt: skip
    return run_sweep("width_rate", config, units, compute, cache_dir, progress, ("ns", "deltas", "seeds"))
