"""Figures 2 and 3: GD loss curves across widths, and movement from initialization against width."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from figures.style import MARKERS, apply_style, power_law_panel, width_palette
from ntk_rnn.training.fitting import power_law_fit


def loss_curves_figure(table: pd.DataFrame) -> plt.Figure:
    """table: width_training rows. Loss against step on a log axis, median over seeds, and each width's
    predicted linear rate 2 log(1 - eta lambda_min(K_0)) dashed from the middle of the run."""
    apply_style()
    palette = width_palette(table["width"])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sns.lineplot(
        data=table,
        x="step",
        y="loss",
        hue="width",
        palette=palette,
        style="width",
        markers=list(MARKERS[: len(palette)]),
        markevery=5,
        dashes=False,
        estimator="median",
        errorbar=None,
        ax=ax,
    )
    for width, runs in table.groupby("width"):
        # the predicted slope, drawn through the median loss where the rate fit starts (half-way)
        start, end = runs["step"].max() // 2, runs["step"].max()
        anchor = runs[runs["step"] == runs.loc[runs["step"] >= start, "step"].min()]["loss"].median()
        rate = runs["predicted_log_rate"].median()
        steps = np.array([start, end], float)
        ax.plot(steps, anchor * np.exp(rate * (steps - start)), ls="--", lw=1.5, color=palette[int(width)])
    ax.set_yscale("log")
    ax.set_xlabel("GD step")
    ax.set_ylabel(r"training loss $\frac{1}{2}\sum\|y - y^*\|^2$ (median of seeds)")
    ax.set_title(
        r"GD, $\eta = c/\lambda_{\max}(K_0)$; dashed: slowest-mode rate from $\lambda_{\min}(K_0)$", fontsize=10
    )
    handles, labels = ax.get_legend_handles_labels()
    rates = table.groupby("width")[["fitted_log_rate", "predicted_log_rate"]].median()
    labels = [
        f"m={w}: fit {rates.loc[int(w), 'fitted_log_rate']:.2e}, pred {rates.loc[int(w), 'predicted_log_rate']:.2e}"
        for w in labels
    ]
    ax.legend(handles, labels, title="log-loss slope per step", fontsize=8)
    fig.tight_layout()
    return fig


def loss_rate_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """table: width_training rows. One row per width, medians over seeds: the fitted slope of log loss per
    step (second half), the slowest-mode rate 2 log(1 - eta lambda_min(K_0)), their ratio, the final loss."""
    final = table[table["step"] == table["step"].max()]
    rates = table.groupby("width")[["fitted_log_rate", "predicted_log_rate"]].median()
    rates["fitted / predicted"] = rates["fitted_log_rate"] / rates["predicted_log_rate"]
    rates["final loss"] = final.groupby("width")["loss"].median()
    return rates.reset_index()


MOVEMENT = (
    ("kernel_drift", r"kernel drift $\|K_T - K_0\|_F / \|K_0\|_F$"),
    ("w_distance_fro", r"weight movement $\|W_T - W_0\|_F$"),
)


def movement_fits(table: pd.DataFrame) -> dict[str, dict]:
    """Log-log slopes against width of the end-of-training movement columns, over all seeds."""
    final = table[table["step"] == table["step"].max()]
    return {column: power_law_fit(final["width"], final[column]) for column, _ in MOVEMENT}


def movement_figure(table: pd.DataFrame) -> plt.Figure:
    """Kernel drift and weight movement at the last step against width, log-log, fitted slopes."""
    apply_style()
    final = table[table["step"] == table["step"].max()]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (column, label) in zip(axes, MOVEMENT, strict=True):
        power_law_panel(ax, final["width"], final[column], sns.color_palette("colorblind")[0], name="seeds, ")
        ax.set_xlabel("width m")
        ax.set_ylabel(label)
        ax.legend(fontsize=9, title=r"theory: slope $-1/2$")
    steps = int(final["step"].max())
    fig.suptitle(f"movement from initialization after {steps} GD steps at $\\eta = c/\\lambda_{{\\max}}(K_0)$")
    fig.tight_layout()
    return fig
