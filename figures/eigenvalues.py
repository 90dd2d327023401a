"""Figures for the kernel-eigenvalue studies: lambda_min heatmaps and empirical-to-limit convergence."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from figures.style import MARKERS, apply_style, power_law_panel
from ntk_rnn.training.fitting import power_law_fit


def separation_figure(table: pd.DataFrame) -> plt.Figure:
    """Heatmaps of log10 lambda_min(K)/m (mean over seeds): over (L, delta) and over (n, L) on synthetic
    data, and over (n, L) on digits, for the empirical kernel at the study's width and for the limit (one
    colour scale per row)."""
    apply_style()
    panels = [
        ("L-delta", "delta", "length", r"first-token separation $\delta$ (synthetic)"),
        ("n-L", "n", "length", "samples n (synthetic)"),
        ("digits n-L", "n", "length", "samples n (digits 3 vs 8, first L rows)"),
    ]
    panels = [panel for panel in panels if (table["grid"] == panel[0]).any()]
    fig, axes = plt.subplots(len(panels), 2, figsize=(10, 4 * len(panels)), squeeze=False)
    for row, (grid, x, y, xlabel) in enumerate(panels):
        scale = np.log10(table.loc[table["grid"] == grid, "lambda_min"])
        for col, kernel in enumerate(("empirical", "limit")):
            data = table[(table["grid"] == grid) & (table["kernel"] == kernel)]
            heat = np.log10(data.pivot_table(index=y, columns=x, values="lambda_min", aggfunc="mean"))
            sns.heatmap(heat.sort_index(ascending=False), annot=True, fmt=".2f", cmap="viridis", ax=axes[row, col],
                        vmin=scale.min(), vmax=scale.max(),
                        cbar_kws={"label": r"$\log_{10} \lambda_{\min}(K)/m$"})  # fmt: skip
            axes[row, col].set_xlabel(xlabel)
            axes[row, col].set_ylabel("sequence length L")
            axes[row, col].set_title(f"{kernel} kernel" + (" (finite width)" if kernel == "empirical" else ""))
    fig.tight_layout()
    return fig


def separation_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """table: separation rows. One row per kernel and L of the L-delta grid: the log-log slope of
    lambda_min/m against delta with its 95% interval."""
    rows = []
    grid = table[table["grid"] == "L-delta"]
    for (kernel, length), runs in grid.groupby(["kernel", "length"]):
        fit = power_law_fit(runs["delta"], runs["lambda_min"])
        rows.append({"kernel": kernel, "L": int(length), "slope vs delta": fit["slope"], "ci_low": fit["ci95"][0],
                     "ci_high": fit["ci95"][1]})  # fmt: skip
    return pd.DataFrame(rows)


def convergence_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Log-log slope of the relative error against width per activation, with its 95% interval."""
    rows = []
    for activation, runs in table.groupby("activation", sort=False):
        fit = power_law_fit(runs["width"], runs["relative_error"])
        rows.append({"activation": activation, "slope": fit["slope"], "intercept": fit["intercept"],
                     "ci_low": fit["ci95"][0], "ci_high": fit["ci95"][1]})  # fmt: skip
    return pd.DataFrame(rows)


def convergence_figure(table: pd.DataFrame) -> plt.Figure:
    """Relative Frobenius distance of the empirical kernel from the limit against width, log-log, one
    fitted slope per activation (theory: -1/2)."""
    apply_style()
    palette = dict(zip(dict.fromkeys(table["activation"]), sns.color_palette("colorblind"), strict=False))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for marker, (activation, runs) in zip(MARKERS, table.groupby("activation", sort=False), strict=False):
        power_law_panel(ax, runs["width"], runs["relative_error"], palette[activation], marker, f"{activation}: ")
    ax.set_xlabel("width m")
    ax.set_ylabel(r"$\|K/m - \Theta\|_F / \|\Theta\|_F$")
    ax.set_title("empirical kernel to its infinite-width limit (points: seeds)")
    ax.legend(fontsize=8, title=r"theory: slope $-1/2$", title_fontsize=8)
    fig.tight_layout()
    return fig


def conditioning_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """table: conditioning rows. The median condition number of the limit kernel, one row per
    parameterization and activation, one column L=LENGTH per sequence length."""
    limit = table[table["kernel"] == "limit"]
    wide = limit.pivot_table(index=["parameterization", "activation"], columns="length", values="condition",
                             aggfunc="median")  # fmt: skip
    wide.columns = [f"L={c}" for c in wide.columns]
    return wide.reset_index()


def conditioning_figure(table: pd.DataFrame) -> plt.Figure:
    """Condition number of the limit kernel (lines) and of the empirical kernel (markers, dotted)
    against L, per activation, one panel per parameterization; medians over seeds."""
    apply_style()
    parameterizations = list(dict.fromkeys(table["parameterization"]))
    fig, axes = plt.subplots(1, len(parameterizations), figsize=(5.5 * len(parameterizations), 4.3), squeeze=False)
    palette = dict(zip(dict.fromkeys(table["activation"]), sns.color_palette("colorblind"), strict=False))
    for ax, parameterization in zip(axes[0], parameterizations, strict=True):
        data = table[table["parameterization"] == parameterization]
        for marker, (activation, runs) in zip(MARKERS, data.groupby("activation", sort=False), strict=False):
            median = runs.groupby(["kernel", "length"])["condition"].median()
            ax.plot(median["limit"].index, median["limit"].values, color=palette[activation], label=activation)
            ax.plot(median["empirical"].index, median["empirical"].values, color=palette[activation], ls=":",
                    marker=marker, markerfacecolor="none")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel(r"condition number $\lambda_{\max}/\lambda_{\min}$ of $K$")
        ax.set_title(f'"{parameterization}" parameterization, ' + r"$\sigma_w^2 = \sigma_u^2 = 2$")
        widths = ", ".join(str(int(w)) for w in sorted(data["width"].dropna().unique()))
        ax.legend(fontsize=8, title=f"limit (lines), m = {widths} (dotted)", title_fontsize=8)
    fig.tight_layout()
    return fig
