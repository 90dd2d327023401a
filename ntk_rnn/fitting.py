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
