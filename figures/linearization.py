"""Figures for the true against the linearized network: loss curves, gaps against width, and
trajectories in function space."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from figures.style import apply_style, power_law_panel, width_palette
from ntk_rnn.training.fitting import power_law_fit

MODEL_NAMES = {"true": "true network", "lin": "linearized", "closed_form": "closed form"}


def loss_comparison_figure(table: pd.DataFrame) -> plt.Figure:
    """Training loss of the true (solid) and linearized (dashed) model for the smallest, a middle and
    the largest width, one panel per dataset; medians over seeds."""
    apply_style()
    widths = sorted(table["width"].unique())
    chosen = sorted({widths[0], widths[len(widths) // 2], widths[-1]})
    data = table[table["width"].isin(chosen)].melt(
        id_vars=["dataset", "width", "seed", "step"], value_vars=["train_loss_true", "train_loss_lin"],
        var_name="model", value_name="loss",
    )  # fmt: skip
    data["model"] = data["model"].map({"train_loss_true": "true network", "train_loss_lin": "linearized"})
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        sns.lineplot(
            data=data[data["dataset"] == dataset], x="step", y="loss", hue="width", style="model",
            palette=width_palette(chosen), estimator="median", errorbar=None, ax=ax,
        )  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlabel("GD step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{dataset}: true (solid) vs linearized (dashed)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


GAPS = (
    ("gap_train", r"$\|f_{\rm true} - f_{\rm lin}\|$ on train outputs"),
    ("gap_test", r"$\|f_{\rm true} - f_{\rm lin}\|$ on test outputs"),
    ("kernel_drift", r"kernel drift $\|K_T - K_0\|_F / \|K_0\|_F$"),
    ("w_distance_true", r"weight movement $\|W_T - W_0\|_F$"),
)


def gap_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Log-log slope against width, with its 95% interval, of each end-of-training quantity, per
    dataset: one row per (dataset, quantity)."""
    final = table[table["step"] == table["step"].max()]
    rows = []
    for dataset, runs in final.groupby("dataset", sort=False):
        for column, _ in GAPS:
            fit = power_law_fit(runs["width"], runs[column])
            rows.append({"dataset": dataset, "quantity": column, "slope": fit["slope"], "intercept": fit["intercept"],
                         "ci_low": fit["ci95"][0], "ci_high": fit["ci95"][1], "points": fit["points"]})  # fmt: skip
    return pd.DataFrame(rows)


def gap_figure(table: pd.DataFrame) -> plt.Figure:
    """End-of-training gap, kernel drift and weight movement against width, log-log, fitted slopes."""
    apply_style()
    final = table[table["step"] == table["step"].max()]
    palette = dict(zip(dict.fromkeys(final["dataset"]), sns.color_palette("colorblind"), strict=False))
    markers = dict(zip(palette, ("o", "s", "^"), strict=False))
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for ax, (column, label) in zip(axes.ravel(), GAPS, strict=True):
        for dataset, runs in final.groupby("dataset", sort=False):
            power_law_panel(ax, runs["width"], runs[column], palette[dataset], markers[dataset], f"{dataset}: ")
        ax.set_xlabel("width m")
        ax.set_ylabel(label)
        ax.legend(fontsize=8, title=r"theory: slope $-1/2$", title_fontsize=8)
    steps = int(final["step"].max())
    fig.suptitle(f"true vs linearized after {steps} GD steps at $\\eta = c/\\lambda_{{\\max}}(K_0)$ (points: seeds)")
    fig.tight_layout()
    return fig


def trajectory_numbers(outputs: pd.DataFrame) -> pd.DataFrame:
    """outputs: trajectories rows (width, seed, split, point, step, model, value). One row per width and
    split: the largest |linearized - closed form| and |true - linearized| over seeds, points and steps."""
    wide = outputs.pivot_table(index=["width", "seed", "split", "point", "step"], columns="model", values="value")
    wide["|lin - closed form|"] = (wide["lin"] - wide["closed_form"]).abs()
    wide["|true - lin|"] = (wide["true"] - wide["lin"]).abs()
    return wide.groupby(["width", "split"])[["|lin - closed form|", "|true - lin|"]].max().reset_index()


def trajectory_figure(outputs: pd.DataFrame) -> plt.Figure:
    """Outputs f_t(x) against the step for a train and a test output, at each traced width: the true
    network, the trained linearized model and the closed form (which lies on the linearized curve)."""
    apply_style()
    data = outputs[outputs["point"] == 0].copy()
    data["model"] = data["model"].map(MODEL_NAMES)
    widths = sorted(data["width"].unique())
    fig, axes = plt.subplots(len(widths), 2, figsize=(9, 3.2 * len(widths)), squeeze=False, sharex=True)
    styles = {"true network": ("-", None), "linearized": ("--", None), "closed form": ("", "o")}
    colors = dict(zip(styles, sns.color_palette("colorblind"), strict=False))
    for row, width in enumerate(widths):
        for col, split in enumerate(("train", "test")):
            ax = axes[row, col]
            panel = data[(data["width"] == width) & (data["split"] == split) & (data["seed"] == data["seed"].min())]
            for model, (ls, marker) in styles.items():
                curve = panel[panel["model"] == model].sort_values("step")
                ax.plot(curve["step"], curve["value"], ls=ls, marker=marker, markersize=4, markevery=2,
                        markerfacecolor="none", color=colors[model], label=model)  # fmt: skip
            ax.set_title(f"m = {width}, a {split} output")
            ax.set_ylabel(r"$f_t(x)$")
            if row == len(widths) - 1:
                ax.set_xlabel("GD step")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
