"""Figure 1: the spectrum of K_0/m against width and its limit, lambda_min(K_0)/m against width, and how
the labels spread over the kernel's eigenvectors."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from figures.style import MARKERS, apply_style, width_palette
from ntk_rnn.training.fitting import power_law_fit

LIMIT_STYLE = {"color": "black", "ls": "--", "lw": 1.5}


def spectrum_figure(table: pd.DataFrame, dataset: str = "synthetic") -> plt.Figure:
    """table: kernel_spectrum rows (dataset, kernel, width, seed, rank, eigenvalue_over_m, label_energy,
    random_label_energy). Left: the spectrum on `dataset` per width and the limit's; middle:
    lambda_min/m against width per dataset, the limit as a dashed line; right: the cumulative fraction of
    ||y||^2 in the limit kernel's eigendirections up to each eigenvalue, dataset labels against random."""
    apply_style()
    empirical, limit = table[table["kernel"] == "empirical"], table[table["kernel"] == "limit"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.3))

    data = empirical[empirical["dataset"] == dataset].astype({"width": int})
    palette = width_palette(data["width"])
    sns.lineplot(data=data, x="rank", y="eigenvalue_over_m", hue="width", palette=palette, style="width",
                 markers=list(MARKERS[: len(palette)]), markevery=8, dashes=False, errorbar=("pi", 100),
                 markersize=5, err_kws={"alpha": 0.15}, ax=left)  # fmt: skip
    left.plot(*limit[limit["dataset"] == dataset].groupby("rank")["eigenvalue_over_m"].median().reset_index().values.T,
              label="limit", **LIMIT_STYLE)  # fmt: skip
    left.set_yscale("log")
    left.set_xlabel("eigenvalue rank (0 = smallest)")
    left.set_ylabel(r"eigenvalue of $K_0/m$")
    left.set_title(f"spectrum ({dataset}; band = range over seeds)")
    left.legend(title="width m", fontsize=8, ncols=2)

    colors = dict(zip(dict.fromkeys(table["dataset"]), sns.color_palette("colorblind"), strict=False))
    lam = empirical[empirical["rank"] == 0]
    for marker, (name, runs) in zip(MARKERS, lam.groupby("dataset", sort=False), strict=False):
        median = runs.groupby("width")["eigenvalue_over_m"].median()
        middle.plot(median.index, median.values, color=colors[name], marker=marker, label=f"{name}, empirical")
        middle.scatter(runs["width"], runs["eigenvalue_over_m"], color=colors[name], marker=marker, s=12, alpha=0.4)
        lim = limit[(limit["dataset"] == name) & (limit["rank"] == 0)]["eigenvalue_over_m"].median()
        middle.axhline(lim, color=colors[name], ls="--", lw=1.2, label=f"{name}, limit")
    middle.set_xscale("log", base=2)
    middle.set_yscale("log")
    middle.set_xlabel("width m")
    middle.set_ylabel(r"$\lambda_{\min}(K_0)/m$")
    middle.set_title("smallest eigenvalue (points = seeds)")
    middle.legend(fontsize=8)

    for (name, labels), ls in zip((("dataset", "label_energy"), ("random", "random_label_energy")), ("-", ":"),
                                  strict=True):  # fmt: skip
        for ds, runs in limit.groupby("dataset", sort=False):
            for i, (_, run) in enumerate(runs.groupby("seed")):
                run = run.sort_values("rank")
                right.plot(run["eigenvalue_over_m"], np.cumsum(run[labels]), color=colors[ds], ls=ls, alpha=0.8,
                           label=f"{ds}, {name} labels" if i == 0 else None)  # fmt: skip
    right.set_xscale("log")
    right.set_xlabel(r"eigenvalue $\lambda$ of $\lim K_0/m$")
    right.set_ylabel(r"fraction of $\|y\|^2$ in eigendirections $\leq \lambda$")
    right.set_title("where the labels sit (limit kernel; lines = seeds)")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lambda_min_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """table: kernel_spectrum rows. One row per dataset: the median over seeds of lambda_min(K_0)/m at each
    width (columns m=WIDTH), of the limit kernel's when the table has it (column limit), and the log-log
    slope of lambda_min/m against width with its 95% interval (near 0 once K_0/m has levelled off)."""
    kernels = table["kernel"] if "kernel" in table else pd.Series("empirical", index=table.index)
    lam = table[table["rank"] == 0].assign(kernel=kernels)
    rows = []
    for dataset, runs in lam.groupby("dataset", sort=False):
        empirical = runs[runs["kernel"] == "empirical"]
        fit = power_law_fit(empirical["width"], empirical["eigenvalue_over_m"])
        row = {"dataset": dataset}
        row |= {f"m={int(w)}": v for w, v in empirical.groupby("width")["eigenvalue_over_m"].median().items()}
        if (runs["kernel"] == "limit").any():
            row["limit"] = runs.loc[runs["kernel"] == "limit", "eigenvalue_over_m"].median()
        rows.append(row | {"slope vs width": fit["slope"], "ci_low": fit["ci95"][0], "ci_high": fit["ci95"][1]})
    return pd.DataFrame(rows)
