"""Straight-line fits with confidence intervals: convergence rates, log-log width exponents and joint
power laws in several variables."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import scipy.stats


def linear_fit(x, y) -> dict:
    """Least-squares y = slope * x + intercept with a 95% t-interval on the slope.

    Returns {"slope", "intercept", "ci95": [lo, hi], "points"}; NaNs when fewer than 3 finite points.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return {"slope": math.nan, "intercept": math.nan, "ci95": [math.nan, math.nan], "points": int(ok.sum())}
    fit = scipy.stats.linregress(x[ok], y[ok])
    half = float(scipy.stats.t.ppf(0.975, ok.sum() - 2) * fit.stderr)
    slope = float(fit.slope)
    return {
        "slope": slope,
        "intercept": float(fit.intercept),
        "ci95": [slope - half, slope + half],
        "points": int(ok.sum()),
    }


def power_law_fit(x, y) -> dict:
    """Fit y = C x^slope on log-log axes (positive values only); same keys as linear_fit."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    return linear_fit(np.log(x[ok]), np.log(y[ok]))


def joint_power_law_fit(y, factors: Mapping[str, object]) -> dict:
    """Fit y = C prod_k x_k^(a_k) by least squares on log y = log C + sum_k a_k log x_k (positive values only).

    factors: name -> x_k, each shaped like y. Returns {"exponents": {name: a_k}, "ci95": {name: [lo, hi]}
    (t-intervals from the residual variance), "intercept": log C, "points", "residual_sd": the standard
    deviation of the log residuals}; NaNs when there are not more points than parameters, or a factor is
    constant over them.
    """
    y = np.asarray(y, float).ravel()
    xs = {name: np.asarray(x, float).ravel() for name, x in factors.items()}
    for name, x in xs.items():
        if x.shape != y.shape:
            raise ValueError(f"factor {name!r} has {x.size} values, y has {y.size}")
    ok = y > 0
    for x in xs.values():
        ok &= x > 0
    names = list(xs)
    design = np.column_stack([np.ones(ok.sum())] + [np.log(xs[k][ok]) for k in names])
    dof = ok.sum() - design.shape[1]
    nan = {"exponents": dict.fromkeys(names, math.nan), "ci95": {k: [math.nan, math.nan] for k in names},
           "intercept": math.nan, "points": int(ok.sum()), "residual_sd": math.nan}  # fmt: skip
    if dof < 1 or np.linalg.matrix_rank(design) < design.shape[1]:
        return nan
    target = np.log(y[ok])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ coef
    variance = float(residual @ residual) / dof
    stderr = np.sqrt(np.diag(np.linalg.inv(design.T @ design)) * variance)
    half = scipy.stats.t.ppf(0.975, dof) * stderr
    return {
        "exponents": {k: float(coef[j + 1]) for j, k in enumerate(names)},
        "ci95": {k: [float(coef[j + 1] - half[j + 1]), float(coef[j + 1] + half[j + 1])] for j, k in enumerate(names)},
        "intercept": float(coef[0]),
        "points": int(ok.sum()),
        "residual_sd": math.sqrt(variance),
    }


def predicted_log_rate(lr: float, lambda_min: float) -> float:
    """Per-step slope of log-loss for GD on the linearized model, slowest mode: 2 log|1 - eta lambda_min|."""
    factor = abs(1.0 - lr * lambda_min)
    return 2.0 * math.log(factor) if factor > 0 else -math.inf


def fit_log_rate(steps: np.ndarray, losses: np.ndarray, floor: float = 1e-24) -> dict:
    """Least-squares slope of log(loss) against step over the second half of the run.

    Points whose loss fell below floor * initial loss (rounding noise) are dropped. Returns the
    slope per step and its 95% confidence interval; NaN when fewer than 3 points remain.
    """
    steps, losses = np.asarray(steps, float), np.asarray(losses, float)
    keep = (steps >= steps[-1] / 2) & (losses > floor * losses[0])
    fit = linear_fit(steps[keep], np.log(losses[keep]))
    return {"fitted_log_rate": fit["slope"], "fitted_log_rate_ci95": fit["ci95"]}
