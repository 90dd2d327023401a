"""Figures 15 to 17 on synthetic tables with known slopes: the fits recover them and the figures render."""

import itertools

import numpy as np
import pandas as pd
import pytest

from figures.cells import (
    cell_conditioning_figure,
    cell_conditioning_fits,
    cell_lazy_figure,
    cell_lazy_fits,
    cell_spread_figure,
    cell_spread_fits,
)

NOISE = np.random.default_rng(0)
FLOORS = {"elman-relu": 0.0, "gru": 0.003}  # the limit's relative standard error: Elman exact, the GRU Monte Carlo


def _noisy(values):
    return np.asarray(values) * np.exp(0.01 * NOISE.standard_normal(np.shape(values)))


@pytest.fixture(scope="module")
def conditioning():
    rows = [{"model": model, "seed": s, "length": L, "width": 64} for model in ("elman-relu", "gru") for s in (0, 1)
            for L in (2, 4, 8, 16)]  # fmt: skip
    table = pd.DataFrame(rows)
    table["lambda_min"] = _noisy(0.1 * table["length"] ** -1.0)
    table["condition"] = _noisy(5.0 * np.exp(0.3 * table["length"]))
    table["lambda_min_limit"] = _noisy(0.2 * table["length"] ** -0.5)
    table["condition_limit"] = _noisy(2.0 * table["length"] ** 2.0)
    return table


@pytest.fixture(scope="module")
def lazy():
    table = pd.DataFrame([{"model": model, "width": m, "seed": s, "steps": 50} for model in ("gru", "lstm")
                          for m in (64, 128, 256, 512) for s in (0, 1)])  # fmt: skip
    for column, c in (("kernel_drift", 3.0), ("gap_train_rel", 1.0), ("gap_test_rel", 2.0)):
        table[column] = _noisy(c * table["width"] ** -0.5)
    return table


@pytest.fixture(scope="module")
def spread():
    rows = []
    for model, m in itertools.product(("elman-relu", "gru"), (64, 128, 256, 512)):
        rows += [{"model": model, "width": m, "quantity": "spread", "seed": a, "other_seed": float(b),
                  "value": 2.0 * m**-0.5} for a, b in itertools.combinations(range(3), 2)]  # fmt: skip
        rows += [{"model": model, "width": m, "quantity": "limit_distance", "seed": s, "other_seed": np.nan,
                  "value": 1.4 * m**-0.5} for s in range(3)]  # fmt: skip
        rows.append({"model": model, "width": m, "quantity": "limit_stderr", "seed": np.nan, "other_seed": np.nan,
                     "value": FLOORS[model]})  # fmt: skip
    table = pd.DataFrame(rows)
    noisy = table["quantity"] != "limit_stderr"
    table.loc[noisy, "value"] = _noisy(table.loc[noisy, "value"])
    return table


def test_conditioning_fits_recover_the_power_and_the_exponential_rate(conditioning):
    fits = cell_conditioning_fits(conditioning).set_index(["model", "quantity"])
    assert np.allclose(fits.xs("lambda_min", level="quantity")["slope"], -1.0, atol=0.02)
    assert np.allclose(fits.xs("condition", level="quantity")["rate_per_step"], 0.3, atol=0.01)
    assert np.allclose(fits.xs("lambda_min_limit", level="quantity")["slope"], -0.5, atol=0.02)
    assert np.allclose(fits.xs("condition_limit", level="quantity")["slope"], 2.0, atol=0.02)
    assert (fits["ci_low"] <= fits["slope"]).all() and (fits["slope"] <= fits["ci_high"]).all()
    assert len(cell_conditioning_fits(conditioning.drop(columns=["lambda_min_limit", "condition_limit"]))) == 4


def test_lazy_and_spread_fits_recover_minus_one_half(lazy, spread):
    fits = cell_lazy_fits(lazy)
    assert len(fits) == 6 and np.allclose(fits["slope"], -0.5, atol=0.02)
    assert (fits["ci_low"] <= fits["slope"]).all() and (fits["slope"] <= fits["ci_high"]).all()
    fits = cell_spread_fits(spread)
    assert set(zip(fits["model"], fits["quantity"], strict=True)) == set(
        itertools.product(("elman-relu", "gru"), ("spread", "limit_distance")))  # fmt: skip
    assert np.allclose(fits["slope"], -0.5, atol=0.02) and (fits["points"] >= 12).all()
    distance = fits[fits["quantity"] == "limit_distance"].set_index("model")
    assert distance["limit_stderr"].to_dict() == FLOORS
    assert fits.loc[fits["quantity"] == "spread", "limit_stderr"].isna().all()
    assert np.allclose(distance["min_value"], 1.4 * 512**-0.5, rtol=0.05)


def test_the_figures_render_on_log_axes_with_fitted_slopes(conditioning, lazy, spread):
    for fig, panels in ((cell_conditioning_figure(conditioning), 2), (cell_lazy_figure(lazy), 3),
                        (cell_spread_figure(spread), 2)):  # fmt: skip
        assert len(fig.axes) == panels
        assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in fig.axes)
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
        assert all(any("slope" in t.get_text() for t in ax.get_legend().get_texts()) for ax in fig.axes)
    assert len(cell_spread_figure(spread[spread["quantity"] == "spread"]).axes) == 1  # no limit, no right panel


def _legend(ax) -> str:
    return " ".join(t.get_text() for t in ax.get_legend().get_texts())


def test_the_limit_is_drawn_beside_the_seeds(conditioning, spread):
    for ax in cell_conditioning_figure(conditioning).axes:  # one dashed median line per model
        assert sum(line.get_linestyle() == "--" for line in ax.get_lines()) == 2 and "limit" in _legend(ax)
    left, right = cell_spread_figure(spread).axes
    assert "gru" in _legend(right) and "elman-relu" in _legend(right) and "Monte Carlo" in _legend(right)
    floors = [line.get_ydata()[0] for line in right.get_lines() if line.get_linestyle() == ":"]
    assert floors == [FLOORS["gru"]] and right.get_ylim()[0] < FLOORS["gru"]  # the floor only where it is > 0
    assert not [line for line in left.get_lines() if line.get_linestyle() == ":"]
