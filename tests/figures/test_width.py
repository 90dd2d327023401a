"""Figures 18 to 20 on synthetic tables generated from known laws: the fits recover them, the law choice
picks the law the data came from, and the figures render."""

import itertools

import numpy as np
import pandas as pd
import pytest

from figures.width import (
    fluctuation_figure,
    fluctuation_fits,
    law_fits,
    rate_figure,
    rate_fits,
    requirement_figure,
    requirement_fits,
)

NOISE = np.random.default_rng(0)
LENGTHS, WIDTHS = (2, 4, 8, 16, 32, 64), (64, 128, 256, 512, 1024, 2048)


def _grid():
    L, m = (np.array(v, float) for v in zip(*itertools.product(LENGTHS, WIDTHS), strict=True))
    return L, m


def _best(rows) -> str:
    frame = pd.DataFrame(rows)
    return frame.loc[frame["aic"].idxmin(), "law"]


def test_the_law_choice_recovers_a_power_law_in_l_and_m():
    L, m = _grid()
    d = 3.0 * L**0.9 * m**-0.4 * np.exp(0.02 * NOISE.standard_normal(L.size))
    rows, _ = law_fits(L, m, d)
    assert _best(rows).startswith("A:")
    fit = pd.DataFrame(rows).set_index(["law", "parameter"]).loc["A: C L^a m^-b"]
    assert (
        fit.loc["a", "ci_low"] < 0.9 < fit.loc["a", "ci_high"]
        and fit.loc["b", "ci_low"] < 0.4 < fit.loc["b", "ci_high"]
    )
    assert fit.loc["a_plus_e_m", "ci_low"] > 0  # not a function of L/m alone


def test_the_law_choice_recovers_the_exponential_law_in_l_over_m():
    L, m = _grid()
    c = 40.0  # c L/m from 0.04 to 40: the exponential bends the log-log line
    d = 0.5 * np.sqrt(np.expm1(c * L / m)) * np.exp(0.02 * NOISE.standard_normal(L.size))
    rows, curves = law_fits(L, m, d)
    assert _best(rows).startswith("B:")
    fit = pd.DataFrame(rows).set_index(["law", "parameter"]).loc["B: d^2 = P^2 (exp(c L/m) - 1)"]
    assert fit.loc["c", "ci_low"] < c < fit.loc["c", "ci_high"] and fit.loc["c", "value"] == pytest.approx(c, rel=0.05)
    assert curves["B: d^2 = P^2 (exp(c L/m) - 1)"](8.0, 256.0) == pytest.approx(0.5 * np.sqrt(np.expm1(1.25)), rel=0.05)


@pytest.fixture(scope="module")
def fluctuations():
    rows = []
    for L, m, s in itertools.product((2, 4, 8), (64, 128, 256), range(3)):
        base = 2.0 * L**0.5 * m**-0.5 * np.exp(0.1 * NOISE.standard_normal(2))
        rows.append({"n": 8, "delta": 0.5, "width": m, "length": L, "quantity": "limit_distance", "seed": s,
                     "other_seed": np.nan, "value": base[0]})  # fmt: skip
        rows.append({"n": 8, "delta": 0.5, "width": m, "length": L, "quantity": "spread", "seed": s,
                     "other_seed": float(s + 1), "value": 1.4 * base[1]})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def requirement():
    rows = [{"criterion": c, "length": L, "n": n, "delta": d, "cap": 4096} for c in ("spectrum", "training")
            for L, n, d in itertools.product((2, 4, 8), (4, 8), (0.25, 0.5))]  # fmt: skip
    table = pd.DataFrame(rows)
    table["m_star"] = 10.0 * table["length"] ** 1.5 * table["n"] ** 0.5 * table["delta"] ** -2.0
    table["censored"] = table["m_star"] > table["cap"]
    table.loc[table["censored"], "m_star"] = np.nan
    table["probed"], table["probes"] = "4096 8", 2
    return table


@pytest.fixture(scope="module")
def rate():
    rows = [{"n": n, "delta": d, "seed": s, "rule": r} for n in (4, 8, 16) for d in (0.1, 0.2, 0.4) for s in (0, 1)
            for r in ("lambda_max", "paper")]  # fmt: skip
    table = pd.DataFrame(rows)
    p = np.where(table["rule"] == "paper", 2.0, 1.5)
    table["steps"] = np.round(
        50.0 * table["delta"] ** -p * table["n"] ** 0.7 * np.exp(0.01 * NOISE.standard_normal(len(table)))
    )
    table["loss_ratio_true"] = np.where((table["seed"] == 0) & (table["rule"] == "lambda_max"), 1e-3, np.nan)
    table["gap_rel"] = table["loss_ratio_true"] * 10
    return table


def test_the_fluctuation_fits_use_medians_and_mark_one_best_law(fluctuations):
    fits = fluctuation_fits(fluctuations)
    assert set(fits["quantity"]) == {"limit_distance", "spread"}
    for _, part in fits.groupby("quantity"):
        assert part.loc[part["best"], "law"].nunique() == 1 and (part["points"] == 9).all()
    a = fits[(fits["quantity"] == "limit_distance") & fits["law"].str.startswith("A:")].set_index("parameter")
    assert a.loc["a", "value"] == pytest.approx(0.5, abs=0.15) and a.loc["b", "value"] == pytest.approx(0.5, abs=0.15)


def test_the_requirement_fits_recover_the_exponents_over_uncensored_rows(requirement):
    fits = requirement_fits(requirement).set_index(["criterion", "parameter"])
    assert (fits["censored"] == int(requirement["censored"].sum()) // 2).all() and requirement["censored"].any()
    for criterion in ("spectrum", "training"):
        for name, value in (("a (L)", 1.5), ("b (n)", 0.5), ("c (1/delta)", 2.0)):
            assert fits.loc[(criterion, name), "value"] == pytest.approx(value, abs=1e-9)


def test_the_rate_fits_recover_p_and_q(rate):
    fits = rate_fits(rate).set_index(["rule", "parameter"])
    assert fits.loc[("paper", "p (1/delta)"), "value"] == pytest.approx(2.0, abs=0.02)
    assert fits.loc[("lambda_max", "p (1/delta)"), "value"] == pytest.approx(1.5, abs=0.02)
    assert fits.loc[("lambda_max", "q (n)"), "value"] == pytest.approx(0.7, abs=0.02)
    assert fits.loc[("lambda_max", "max true loss ratio"), "value"] == pytest.approx(1e-3)


def test_the_figures_render_with_labelled_log_axes(fluctuations, requirement, rate):
    fig = fluctuation_figure(fluctuations)
    assert len(fig.axes) == 4 and all(ax.get_yscale() == "log" for ax in fig.axes[1:3])  # 3 panels + colour bar
    for fig, panels in ((requirement_figure(requirement), 2), (rate_figure(rate), 2)):
        assert len(fig.axes) == panels
        assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" and ax.get_xlabel() for ax in fig.axes)
