"""Figures for the width studies (analysis.width): the finite-width fluctuations of K_0/m over (m, L) with
two candidate laws, the width requirement m* against (L, n, delta), and the GD step count against delta
and n."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.optimize
import scipy.stats
import seaborn as sns

from figures.style import MARKERS, apply_style
from ntk_rnn.training.fitting import joint_power_law_fit

QUANTITIES = {"limit_distance": r"$\|K_0/m - \Theta\|_F / \|\Theta\|_F$",
              "spread": r"$\|K_s/m - K_{s'}/m\|_F / \|\Theta\|_F$"}  # fmt: skip


def median_distances(table: pd.DataFrame, quantity: str = "limit_distance") -> pd.DataFrame:
    """Median, 10% and 90% quantiles over seeds (or seed pairs) per (n, delta, length, width) of one
    quantity of a width_fluctuations table."""
    rows = table[table["quantity"] == quantity].groupby(["n", "delta", "length", "width"])["value"]
    out = rows.agg(median="median", q10=lambda v: v.quantile(0.1), q90=lambda v: v.quantile(0.9), count="size")
    return out.reset_index()


def hanin_nica_log(ratio, log_prefactor: float, c: float):
    """log d for d^2 = P^2 (exp(c L/m) - 1): 0.5 log(expm1(c r)) + log P, r = L/m."""
    return log_prefactor + 0.5 * np.log(np.expm1(np.clip(c * np.asarray(ratio, float), 1e-300, 700)))


def law_fits(length, width, d) -> tuple[list[dict], dict]:
    """Fit log d to (A) log C + a log L - b log m, (A') log C + a log(L/m) and (B) the Hanin-Nica form
    hanin_nica_log; rows (law, parameter, value, 95% interval, rss, aic, points) and {law: fitted callable
    of (L, m)}. AIC = N log(RSS/N) + 2k (k = 3, 2, 2); "a_plus_e_m" is the exponent of m at fixed L/m (0
    when d depends on L/m only)."""
    length, width, d = (np.asarray(v, float) for v in (length, width, d))
    ok = d > 0
    length, width, d = length[ok], width[ok], d[ok]
    y, n = np.log(d), int(ok.sum())
    rows: list[dict] = []
    curves = {}
    a = joint_power_law_fit(d, {"L": length, "m": width})
    collapse = joint_power_law_fit(d, {"L/m": length / width, "m": width})
    one = joint_power_law_fit(d, {"L/m": length / width})
    for law, fit, k in (("A: C L^a m^-b", a, 3), ("A': C (L/m)^a", one, 2)):
        names = list(fit["exponents"])
        columns = {"L": length, "m": width, "L/m": length / width}
        pred = fit["intercept"] + sum(fit["exponents"][k_] * np.log(columns[k_]) for k_ in names)
        rss = float(np.sum((y - pred) ** 2))
        extra = {"rss": rss, "aic": n * math.log(rss / n) + 2 * k if rss > 0 else -math.inf, "points": n}
        for name in names:
            sign = -1.0 if name == "m" else 1.0
            label = {"L": "a", "m": "b", "L/m": "a"}[name]
            ci = sorted(sign * np.asarray(fit["ci95"][name]))
            rows.append({"law": law, "parameter": label, "value": sign * fit["exponents"][name], "ci_low": ci[0],
                         "ci_high": ci[1], **extra})  # fmt: skip
        if law.startswith("A:"):
            rows.append({"law": law, "parameter": "a_plus_e_m", "value": collapse["exponents"]["m"],
                         "ci_low": collapse["ci95"]["m"][0], "ci_high": collapse["ci95"]["m"][1], **extra})  # fmt: skip
            curves[law] = lambda L, m, f=fit: (
                np.exp(f["intercept"]) * L ** f["exponents"]["L"] * m ** f["exponents"]["m"]
            )
        else:
            curves[law] = lambda L, m, f=fit: np.exp(f["intercept"]) * (L / m) ** f["exponents"]["L/m"]
    ratio = length / width
    law = "B: d^2 = P^2 (exp(c L/m) - 1)"
    try:
        start = (float(np.mean(y - 0.5 * np.log(ratio))), 1.0)
        popt, pcov = scipy.optimize.curve_fit(hanin_nica_log, ratio, y, p0=start, bounds=([-50, 1e-6], [50, 1e4]))
        rss = float(np.sum((y - hanin_nica_log(ratio, *popt)) ** 2))
        half = scipy.stats.t.ppf(0.975, max(n - 2, 1)) * np.sqrt(np.maximum(np.diag(pcov), 0))
        extra = {"rss": rss, "aic": n * math.log(rss / n) + 4 if rss > 0 else -math.inf, "points": n}
        rows.append({"law": law, "parameter": "c", "value": popt[1], "ci_low": popt[1] - half[1],
                     "ci_high": popt[1] + half[1], **extra})  # fmt: skip
        rows.append({"law": law, "parameter": "P", "value": math.exp(popt[0]), "ci_low": math.exp(popt[0] - half[0]),
                     "ci_high": math.exp(popt[0] + half[0]), **extra})  # fmt: skip
        curves[law] = lambda L, m, p=popt: np.exp(hanin_nica_log(L / m, *p))
    except (RuntimeError, ValueError):
        rows.append({"law": law, "parameter": "c", "value": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                     "rss": math.nan, "aic": math.nan, "points": n})  # fmt: skip
    return rows, curves


def fluctuation_fits(table: pd.DataFrame) -> pd.DataFrame:
    """table: width_fluctuations rows. Per (quantity, n, delta), the laws of law_fits fitted to the medians
    over seeds (heavy tails: medians, not means), with "best" marking the lowest AIC."""
    out = []
    for quantity in QUANTITIES:
        medians = median_distances(table, quantity)
        for (n, delta), cell in medians.groupby(["n", "delta"]):
            rows, _ = law_fits(cell["length"], cell["width"], cell["median"])
            frame = pd.DataFrame(rows).assign(quantity=quantity, n=n, delta=delta)
            best = frame.loc[frame["aic"].idxmin(), "law"] if frame["aic"].notna().any() else None
            out.append(frame.assign(best=frame["law"] == best))
    columns = ["quantity", "n", "delta", "law", "parameter", "value", "ci_low", "ci_high", "rss", "aic", "points",
               "best"]  # fmt: skip
    return pd.concat(out, ignore_index=True)[columns]


def fluctuation_figure(table: pd.DataFrame) -> plt.Figure:
    """Left: heatmap of the median distance to the limit over (L, m) at the first (n, delta). Middle: the
    medians (10-90% bars over seeds) against L/m, log-log, coloured by L, with laws A (per L, dotted) and
    B (black). Right: the seed-to-seed spread against L/m."""
    apply_style()
    medians = median_distances(table)
    n, delta = medians[["n", "delta"]].iloc[0]
    cell = medians[(medians["n"] == n) & (medians["delta"] == delta)]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    grid = cell.pivot(index="length", columns="width", values="median")
    sns.heatmap(np.log10(grid), annot=grid.round(2).to_numpy(), fmt="", cmap="viridis", ax=axes[0],
                cbar_kws={"label": r"$\log_{10}$ median distance"})  # fmt: skip
    axes[0].set_title(f"median over seeds, n = {int(n)}, δ = {delta:g}")
    axes[0].set_xlabel("width m")
    axes[0].set_ylabel("sequence length L")
    _, curves = law_fits(cell["length"], cell["width"], cell["median"])
    lengths = sorted(cell["length"].unique())
    colors = dict(zip(lengths, sns.color_palette("viridis", len(lengths)), strict=True))
    for ax, quantity in zip(axes[1:], QUANTITIES, strict=True):
        part = median_distances(table, quantity)
        part = part[(part["n"] == n) & (part["delta"] == delta)]
        for i, (L, runs) in enumerate(part.groupby("length")):
            r = runs["length"] / runs["width"]
            bars = [runs["median"] - runs["q10"], runs["q90"] - runs["median"]]
            ax.errorbar(r, runs["median"], yerr=bars, fmt=MARKERS[i % len(MARKERS)], color=colors[L], ms=5,
                        capsize=2, label=f"L = {int(L)}")  # fmt: skip
            if quantity == "limit_distance":
                m = np.sort(runs["width"].to_numpy(float))
                ax.plot(L / m, curves["A: C L^a m^-b"](L, m), ":", color=colors[L])
        if quantity == "limit_distance" and "B: d^2 = P^2 (exp(c L/m) - 1)" in curves:
            r = np.geomspace((cell["length"] / cell["width"]).min(), (cell["length"] / cell["width"]).max(), 100)
            ax.plot(r, curves["B: d^2 = P^2 (exp(c L/m) - 1)"](r, 1.0), "k-", label=r"B: $P\sqrt{e^{cL/m}-1}$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("L / m")
        ax.set_ylabel(QUANTITIES[quantity])
        ax.legend(fontsize=7, title="median, 10–90% over seeds", title_fontsize=7)
    axes[1].set_title("collapse test: A (dotted, per L) and B (black)")
    axes[2].set_title("seed-to-seed spread")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the width requirement


def requirement_fits(table: pd.DataFrame) -> pd.DataFrame:
    """table: width_requirement rows. Per criterion, m* ~ C L^a n^b delta^(-c) fitted jointly over the
    uncensored rows (factors constant over them left out): rows (criterion, parameter, value, 95%
    interval, points, censored = the count of censored rows)."""
    rows = []
    for criterion, runs in table.groupby("criterion", sort=False):
        ok = runs[~runs["censored"].astype(bool)]
        factors = {k: ok[col] for k, col in (("L", "length"), ("n", "n"), ("delta", "delta")) if ok[col].nunique() > 1}
        fit = joint_power_law_fit(ok["m_star"], factors) if factors else None
        for name, column in (("a (L)", "L"), ("b (n)", "n"), ("c (1/delta)", "delta")):
            if fit is None or column not in factors:
                value, ci = math.nan, (math.nan, math.nan)
            else:
                sign = -1.0 if column == "delta" else 1.0
                value, ci = sign * fit["exponents"][column], sorted(sign * np.asarray(fit["ci95"][column]))
            rows.append({"criterion": criterion, "parameter": name, "value": value, "ci_low": ci[0], "ci_high": ci[1],
                         "points": len(ok), "censored": int(runs["censored"].astype(bool).sum())})  # fmt: skip
    return pd.DataFrame(rows)


def requirement_figure(table: pd.DataFrame) -> plt.Figure:
    """m* against L, log-log, one panel per criterion, one line per (n, delta); censored rows as open
    triangles at the cap; grey guides m* ∝ L and L² (the paper's poly(n, L, 1/delta) has an unstated
    degree); the fitted exponents in the titles."""
    apply_style()
    criteria = list(dict.fromkeys(table["criterion"]))
    fits = requirement_fits(table).set_index(["criterion", "parameter"])
    fig, axes = plt.subplots(1, len(criteria), figsize=(6 * len(criteria), 4.6), squeeze=False)
    for ax, criterion in zip(axes[0], criteria, strict=True):
        runs = table[table["criterion"] == criterion]
        groups = list(runs.groupby(["n", "delta"]))
        colors = sns.color_palette("colorblind", len(groups))
        for i, ((n, delta), cell) in enumerate(groups):
            cell = cell.sort_values("length")
            done = ~cell["censored"].astype(bool)
            ax.plot(cell.loc[done, "length"], cell.loc[done, "m_star"], marker=MARKERS[i % len(MARKERS)],
                    color=colors[i], label=f"n = {int(n)}, δ = {delta:g}")  # fmt: skip
            ax.scatter(cell.loc[~done, "length"], cell.loc[~done, "cap"], marker="^", facecolors="none",
                       edgecolors=colors[i], s=50)  # fmt: skip
        lengths = np.sort(runs["length"].unique()).astype(float)
        start = runs.loc[runs["length"] == lengths[0], "m_star"].median()
        if np.isfinite(start):  # guides through the median at the shortest L: m* growing like rho^1 and rho^2
            for power, style in ((1, ":"), (2, "--")):
                ax.plot(lengths, start * (lengths / lengths[0]) ** power, style, color="grey", lw=1,
                        label=f"∝ L^{power} (ϱ^{power} in L)")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("m* (open triangles: > cap)")
        parts = []
        for name in ("a (L)", "b (n)", "c (1/delta)"):
            f = fits.loc[(criterion, name)]
            if np.isfinite(f["value"]):
                parts.append(f"{name.split()[0]} = {f['value']:.2f} [{f['ci_low']:.2f}, {f['ci_high']:.2f}]")
        ax.set_title(f"{criterion}: m* ~ L^a n^b δ^-c\n" + ", ".join(parts), fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("the smallest width of the kernel regime (the paper: m ≥ C ϱ^C, ϱ = nLdδ⁻¹log(m/ε), C unstated)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the rate


def rate_fits(table: pd.DataFrame) -> pd.DataFrame:
    """table: width_rate rows. Per step-size rule, T ~ C delta^(-p) n^q over every (n, delta, seed) with a
    finite T, beside the paper's p = 2 (Thm 1); and "true/linearized" rows: the largest true-network loss
    ratio over eps's target and the largest relative gap where the true network was trained."""
    rows = []
    for rule, runs in table.groupby("rule", sort=False):
        ok = runs[np.isfinite(runs["steps"]) & (runs["steps"] > 0)]
        fit = joint_power_law_fit(ok["steps"], {"delta": ok["delta"], "n": ok["n"]})
        for name, column, sign in (("p (1/delta)", "delta", -1.0), ("q (n)", "n", 1.0)):
            ci = sorted(sign * np.asarray(fit["ci95"][column]))
            paper = 2.0 if column == "delta" else math.nan
            rows.append({"rule": rule, "parameter": name, "value": sign * fit["exponents"][column], "ci_low": ci[0],
                         "ci_high": ci[1], "points": fit["points"], "paper": paper})  # fmt: skip
        trained = runs[runs["loss_ratio_true"].notna()]
        if len(trained):
            for name, column in (("max true loss ratio", "loss_ratio_true"), ("max gap_rel", "gap_rel")):
                rows.append({"rule": rule, "parameter": name, "value": float(trained[column].max()), "ci_low": math.nan,
                             "ci_high": math.nan, "points": len(trained), "paper": math.nan})  # fmt: skip
    return pd.DataFrame(rows)


def rate_figure(table: pd.DataFrame) -> plt.Figure:
    """T (linearized, to eps of the initial loss) against delta, log-log, per n, one panel per step-size
    rule, seeds as points and their median as lines; stars: the true network's loss ratio after T steps
    (right axis of the legend text) where it was trained."""
    apply_style()
    rules = list(dict.fromkeys(table["rule"]))
    fits = rate_fits(table).set_index(["rule", "parameter"])
    fig, axes = plt.subplots(1, len(rules), figsize=(6 * len(rules), 4.6), squeeze=False)
    ns = sorted(table["n"].unique())
    colors = dict(zip(ns, sns.color_palette("colorblind", len(ns)), strict=True))
    for ax, rule in zip(axes[0], rules, strict=True):
        runs = table[table["rule"] == rule]
        for i, n in enumerate(ns):
            cell = runs[runs["n"] == n]
            ax.scatter(cell["delta"], cell["steps"], color=colors[n], marker=MARKERS[i % len(MARKERS)], s=18, alpha=0.6)
            med = cell.groupby("delta")["steps"].median()
            ax.plot(med.index, med.to_numpy(), color=colors[n], label=f"n = {int(n)}")
            trained = cell[cell["loss_ratio_true"].notna()]
            ax.scatter(trained["delta"], trained["steps"], marker="*", s=120, facecolors="none", edgecolors="k")
        deltas = np.sort(runs["delta"].unique())
        ref = runs.loc[runs["delta"] == deltas[-1], "steps"].median()
        ax.plot(deltas, ref * (deltas / deltas[-1]) ** -2.0, "k--", lw=1, label=r"paper: $\delta^{-2}$")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("separation δ of the first tokens")
        ax.set_ylabel("GD steps T to ε of the initial loss")
        p, q = fits.loc[(rule, "p (1/delta)")], fits.loc[(rule, "q (n)")]
        ax.set_title(f"η rule {rule}: T ~ δ^-p n^q, p = {p['value']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}], "
                     f"q = {q['value']:.2f} [{q['ci_low']:.2f}, {q['ci_high']:.2f}]", fontsize=8)  # fmt: skip
        ax.legend(fontsize=7, title="stars: true network trained T steps", title_fontsize=7)
    fig.tight_layout()
    return fig
