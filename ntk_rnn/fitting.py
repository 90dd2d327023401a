"""Straight-line fits with confidence intervals: convergence rates and log-log width exponents."""

from __future__ import annotations

import math

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
