"""Figures for the every-cell studies: conditioning against L, the lazy regime against width, and the
seed-to-seed spread of K_0/m against width."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from analysis.cells import MODELS
from figures.style import MARKERS, apply_style, power_law_panel
from ntk_rnn.training.fitting import linear_fit, power_law_fit

CONDITIONING = (
    ("lambda_min", r"$\lambda_{\min}(K_0)/m$"),
    ("condition", r"condition number $\lambda_{\max}/\lambda_{\min}$"),
)
LAZY = (
    ("kernel_drift", r"kernel drift $\|K_T - K_0\|_F / \|K_0\|_F$"),
    ("gap_train_rel", r"$\|f_{\rm true} - f_{\rm lin}\| / \|f_{\rm true} - f_0\|$, train"),
    ("gap_test_rel", r"$\|f_{\rm true} - f_{\rm lin}\| / \|f_{\rm true} - f_0\|$, test"),
)


def model_styles(models) -> dict[str, tuple]:
    """(colour, marker) per model, fixed by its place in analysis.cells.MODELS so every figure agrees."""
    colors = sns.color_palette("colorblind", len(MODELS))
    order = {name: i for i, name in enumerate(MODELS)}
    return {m: (colors[order[m] % len(colors)], MARKERS[order[m] % len(MARKERS)]) for m in dict.fromkeys(models)}


def _fit_row(fit: dict, **labels) -> dict:
    return {**labels, "slope": fit["slope"], "intercept": fit["intercept"], "ci_low": fit["ci95"][0],
            "ci_high": fit["ci95"][1], "points": fit["points"]}  # fmt: skip


def width_fits(table: pd.DataFrame, quantities) -> pd.DataFrame:
    """Log-log slope against width with its 95% interval per (model, quantity), over all seeds' points;
    table has columns model, width and the quantities."""
    rows = []
    for model, runs in table.groupby("model", sort=False):
        for column in quantities:
            rows.append(_fit_row(power_law_fit(runs["width"], runs[column]), model=model, quantity=column))
    return pd.DataFrame(rows)


def cell_conditioning_fits(table: pd.DataFrame) -> pd.DataFrame:
    """table: cell_conditioning rows. Per (model, quantity): the log-log slope against L ("slope",
    polynomial growth L^slope) and the slope of log y against L ("rate_per_step", exponential growth
    e^(rate L)), each with its 95% interval, over all seeds; for K_0/m and, where the table has them
    (columns *_limit), for the infinite-width limit on the same sequences."""
    quantities = [c for column, _ in CONDITIONING for c in (column, f"{column}_limit") if c in table]
    rows = []
    for model, runs in table.groupby("model", sort=False):
        for column in quantities:
            power = power_law_fit(runs["length"], runs[column])
            ok = runs[column] > 0
            rate = linear_fit(runs.loc[ok, "length"], np.log(runs.loc[ok, column]))
            rows.append(_fit_row(power, model=model, quantity=column)
                        | {"rate_per_step": rate["slope"], "rate_ci_low": rate["ci95"][0],
                           "rate_ci_high": rate["ci95"][1]})  # fmt: skip
    return pd.DataFrame(rows)


def _model_panels(axes, table: pd.DataFrame, x: str, panels, styles, xlabel: str, legend_title: str) -> None:
    """One log-log panel per (column, label) of panels: every model's points against table[x], with its
    fitted power law in the legend, and where the table has column_limit, the median over seeds of the
    infinite-width limit's value as a dashed line."""
    for ax, (column, label) in zip(axes, panels, strict=True):
        limit = f"{column}_limit"
        for model, runs in table.groupby("model", sort=False):
            color, marker = styles[model]
            power_law_panel(ax, runs[x], runs[column], color, marker, f"{model}: ")
            if limit in runs:
                median = runs.groupby(x)[limit].median()
                ax.plot(median.index, median.to_numpy(), color=color, linestyle="--", linewidth=1.2)
        handles, labels = ax.get_legend_handles_labels()
        if limit in table:
            handles.append(Line2D([], [], color="grey", linestyle="--"))
            labels.append("dashed: infinite-width limit")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.legend(handles, labels, fontsize=7, title=legend_title, title_fontsize=8)


def cell_conditioning_figure(table: pd.DataFrame) -> plt.Figure:
    """lambda_min(K_0)/m and the condition number against L, log-log, per model, seeds as points,
    fitted power laws in the legends, the infinite-width limit's (median over seeds) dashed where the table
    has it."""
    apply_style()
    styles = model_styles(table["model"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    _model_panels(axes, table, "length", CONDITIONING, styles, "sequence length L", "slope in log L, 95% interval")
    widths = ", ".join(str(int(w)) for w in sorted(table["width"].unique()))
    fig.suptitle(f"the kernel at initialization per cell, m = {widths} (points: seeds)")
    fig.tight_layout()
    return fig


def cell_lazy_fits(table: pd.DataFrame) -> pd.DataFrame:
    """table: cell_lazy rows. Log-log slope against width with its 95% interval of the kernel drift and
    the relative train and test gaps, per model."""
    return width_fits(table, [column for column, _ in LAZY])


def cell_lazy_figure(table: pd.DataFrame) -> plt.Figure:
    """Kernel drift and the relative true-vs-linearized gaps at the end of training against width,
    log-log, per model, seeds as points, fitted slopes in the legends."""
    apply_style()
    styles = model_styles(table["model"])
    fig, axes = plt.subplots(1, len(LAZY), figsize=(5.2 * len(LAZY), 4.5))
    _model_panels(axes, table, "width", LAZY, styles, "width m", r"lazy regime: slope $-1/2$")
    steps = int(table["steps"].max())
    fig.suptitle(f"after {steps} GD steps at $\\eta = c/\\lambda_{{\\max}}(K_0)$, true and linearized side by side")
    fig.tight_layout()
    return fig


def cell_spread_fits(table: pd.DataFrame) -> pd.DataFrame:
    """table: cell_spread rows. Log-log slope against width with its 95% interval per (model, quantity):
    the seed-to-seed spread, and the distance to the limit where the table has it, with the smallest value
    measured ("min_value") and, for the distance, the limit's own relative standard error ("limit_stderr",
    0 for an exact limit), the floor that min_value must stay well above."""
    floors = table[table["quantity"] == "limit_stderr"].groupby("model")["value"].max()
    rows = []
    measured = table[table["quantity"] != "limit_stderr"]
    for (model, quantity), runs in measured.groupby(["model", "quantity"], sort=False):
        floor = floors.get(model, np.nan) if quantity == "limit_distance" else np.nan
        rows.append(_fit_row(power_law_fit(runs["width"], runs["value"]), model=model, quantity=quantity)
                    | {"min_value": runs["value"].min(), "limit_stderr": floor})  # fmt: skip
    return pd.DataFrame(rows)


def cell_spread_figure(table: pd.DataFrame) -> plt.Figure:
    """Left: the seed-to-seed spread of K_0/m against width per model (points: seed pairs). Right, for the
    models with a limit: the distance to the limit (points: seeds, fitted slopes) beside spread/sqrt(2)
    (hollow), and a Monte Carlo limit's relative standard error as a dotted line (its floor)."""
    apply_style()
    styles = model_styles(table["model"])
    limited = table.loc[table["quantity"] == "limit_distance", "model"].unique()
    fig, axes = plt.subplots(1, 2 if len(limited) else 1, figsize=(12 if len(limited) else 6, 4.8), squeeze=False)
    spread = table[table["quantity"] == "spread"]
    for model, runs in spread.groupby("model", sort=False):
        color, marker = styles[model]
        power_law_panel(axes[0, 0], runs["width"], runs["value"], color, marker, f"{model}: ")
    axes[0, 0].set_ylabel(r"$\|K_s/m - K_{s'}/m\|_F \,/\, \mathrm{mean}_s \|K_s/m\|_F$")
    axes[0, 0].set_title("seed-to-seed spread (every cell)")
    extra = []
    if len(limited):
        ax = axes[0, 1]
        floors = table[table["quantity"] == "limit_stderr"].groupby("model")["value"].max()
        for model in limited:
            color, marker = styles[model]
            runs = table[(table["model"] == model) & (table["quantity"] == "limit_distance")]
            power_law_panel(ax, runs["width"], runs["value"], color, marker, f"{model}: ")
            pairs = spread[spread["model"] == model]
            ax.scatter(pairs["width"], pairs["value"] / np.sqrt(2), facecolors="none", edgecolors=color, marker=marker,
                       s=30)  # fmt: skip
            if floors.get(model, 0.0) > 0:
                ax.axhline(floors[model], color=color, linestyle=":", linewidth=1.2)
        extra.append(Line2D([], [], color="grey", marker="o", markerfacecolor="none", linestyle="none",
                            label=r"hollow: spread$/\sqrt{2}$"))  # fmt: skip
        if (floors > 0).any():
            extra.append(Line2D([], [], color="grey", linestyle=":", label="dotted: the Monte Carlo limit's error"))
        ax.set_ylabel(r"$\|K_s/m - \Theta\|_F / \|\Theta\|_F$")
        ax.set_title(r"distance to the infinite-width limit $\Theta$")
    for i, ax in enumerate(axes[0]):
        handles, labels = ax.get_legend_handles_labels()
        if i == 1:
            handles += extra
            labels += [h.get_label() for h in extra]
        ax.set_xlabel("width m")
        ax.legend(handles, labels, fontsize=7, title=r"concentration: slope $-1/2$", title_fontsize=8)
    fig.tight_layout()
    return fig
