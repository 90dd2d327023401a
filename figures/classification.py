"""Figures of the classification study (analysis.classification): test accuracy per dataset and predictor
beside the published baselines, and the trained against the linearized network as the width grows."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from analysis.classification import baselines
from figures.style import MARKERS, apply_style
from ntk_rnn.training.fitting import power_law_fit

ACCURACY_CAPTION = """Test accuracy on the official split of each UCR/UEA dataset: the infinite-width NTK and NNGP
    as the mean of an infinite ensemble trained to convergence on the squared error, SVMs on the same
    kernels, and at the largest width the finite network's linearization trained to convergence and the
    network trained by full-batch GD (colored markers); grey ticks: the bake-off's published single-split
    accuracies (1NN-ED, 1NN-DTW with full and cross-validated windows, linear and quadratic SVMs), for the
    multivariate sets DTW_I and DTW_D from a secondary table; crosses: 1NN-ED computed here on the raw split,
    which reproduces the published 1NN-ED. The readout and σ_w² (chosen by the limit
    NTK's 5-fold cross-validation), ridges and C come from the training split alone. The table gives
    every number beside the baselines. Tested: whether the kernel regime describes RNNs on real sequences, the question
    the RNTK papers made their headline. In the quick profile the RNN kernels beat every baseline on
    GunPoint and JapaneseVowels, tie DTW_I on BasicMotions, and lose to 1NN-ED and the linear SVM on
    ItalyPowerDemand (24 steps)."""
AGREEMENT_CAPTION = """The network trained by full-batch GD (η = 0.5/λ_max(K₀)) against its linearization trained the
    same steps (closed form from the empirical NTK at initialization), per dataset, against the width m:
    left, the fraction of test sequences both give the same class; right, the test output gap
    ‖f_true − f_lin‖/‖f_lin − f₀‖ with its fitted power law and the lazy regime's m^(−1/2) for reference.
    Tested: the kernel regime's prediction that the trained RNN stays near its linearization as m grows
    (docs/theory.md §4-5), here on real sequences rather than the paper's synthetic tokens. The quick
    profile has one dataset, three widths and one seed: agreement 87-90% and gaps of 5-10%, with no
    resolved trend in m. The full profile (five datasets, m to 512, three seeds) decides it."""
KERNEL_PREDICTORS = ("ntk", "nngp", "ntk-svm", "nngp-svm")
NETWORK_PREDICTORS = ("linearized-converged", "trained")


def accuracy_table(table: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy per dataset (rows) and predictor (columns): the limit kernels, at the largest width the
    linearized network trained to convergence and the trained one (seed mean), 1NN-ED computed here, then
    the published baselines."""
    limit = table[table["predictor"].isin((*KERNEL_PREDICTORS, "1nn-ed (here)"))]
    wide = table[table["predictor"].isin(NETWORK_PREDICTORS)]
    if len(wide):
        wide = wide[wide["width"] == wide.groupby("dataset")["width"].transform("max")]
    ours = pd.concat([limit, wide]).pivot_table(index="dataset", columns="predictor", values="test_accuracy",
                                                aggfunc="mean", sort=False)  # fmt: skip
    ours = ours[[p for p in (*KERNEL_PREDICTORS, *NETWORK_PREDICTORS, "1nn-ed (here)") if p in ours.columns]]
    published = baselines.pivot_table(index="dataset", columns="classifier", values="accuracy", sort=False)
    return ours.join(published, how="left")


def agreement_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: the trained network's test agreement with the linearized one (seed mean) at each width, and
    the fitted power law of the output gap ||f_true - f_lin|| / ||f_lin - f_0|| in the width, with its
    95% interval beside the lazy regime's m^(-1/2)."""
    trained = table[table["predictor"] == "trained"]
    rows = []
    for dataset, runs in trained.groupby("dataset", sort=False):
        fit = power_law_fit(runs["width"], runs["test_output_gap"])
        means = runs.groupby("width")[["test_agreement", "test_output_gap", "test_accuracy"]].mean()
        row = {"dataset": dataset, "gap_exponent": fit["slope"], "ci_low": fit["ci95"][0], "ci_high": fit["ci95"][1],
               "lazy_exponent": -0.5}  # fmt: skip
        for width, values in means.iterrows():
            row[f"agreement m={int(width)}"] = values["test_agreement"]
        rows.append(row)
    empty = ["dataset", "gap_exponent", "ci_low", "ci_high", "lazy_exponent"]
    return pd.DataFrame(rows, columns=None if rows else empty)


def accuracy_figure(table: pd.DataFrame) -> plt.Figure:
    """Test accuracy per dataset (one row of points each): the kernel predictors and the widest networks as
    colored markers, the published baselines (baselines.csv) as grey ticks, 1NN-ED computed here as a cross."""
    apply_style()
    accuracy = accuracy_table(table, baselines())
    ours = [c for c in accuracy.columns if c in (*KERNEL_PREDICTORS, *NETWORK_PREDICTORS)]
    published = [c for c in accuracy.columns if c not in (*ours, "1nn-ed (here)")]
    datasets = list(accuracy.index)
    fig, ax = plt.subplots(figsize=(10, 0.75 * len(datasets) + 1.8))
    colors = dict(zip(ours, sns.color_palette("colorblind", len(ours)), strict=True))
    offsets = np.linspace(-0.25, 0.25, len(ours))
    for offset, (i, name) in zip(offsets, enumerate(ours), strict=True):
        ax.scatter(accuracy[name], np.arange(len(datasets)) + offset, color=colors[name], marker=MARKERS[i % 8], s=36,
                   label=name if name in KERNEL_PREDICTORS else f"{name} (widest m)", zorder=3)  # fmt: skip
    for j, name in enumerate(published):
        ax.scatter(accuracy[name], np.arange(len(datasets)), color="0.55", marker="|", s=300 - 30 * j, lw=1.2,
                   label="published baselines" if j == 0 else None, zorder=2)  # fmt: skip
    if "1nn-ed (here)" in accuracy.columns:
        ax.scatter(accuracy["1nn-ed (here)"], np.arange(len(datasets)), color="k", marker="x", s=30, lw=1,
                   label="1NN-ED computed here", zorder=2)  # fmt: skip
    ax.set_yticks(np.arange(len(datasets)), datasets)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (official split)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("RNN kernels and RNNs against published baselines (grey: 1NN-ED, 1NN-DTW, SVMs)", fontsize=9)
    fig.tight_layout()
    return fig


def agreement_figure(table: pd.DataFrame) -> plt.Figure:
    """Left: the fraction of test sequences the trained network and its linearization (same steps) assign the
    same class, against width; right: their relative output gap, log-log, with m^(-1/2) for reference."""
    apply_style()
    trained = table[table["predictor"] == "trained"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    datasets = list(dict.fromkeys(trained["dataset"]))
    colors = dict(zip(datasets, sns.color_palette("colorblind", len(datasets)), strict=True))
    fits = agreement_fits(table).set_index("dataset")
    for i, dataset in enumerate(datasets):
        runs = trained[trained["dataset"] == dataset]
        means = runs.groupby("width")[["test_agreement", "test_output_gap"]].mean()
        marker = MARKERS[i % len(MARKERS)]
        axes[0].plot(means.index, means["test_agreement"], marker=marker, color=colors[dataset], label=dataset)
        fit = fits.loc[dataset]
        label = f"{dataset}: m^{fit['gap_exponent']:.2f}" if math.isfinite(fit["gap_exponent"]) else dataset
        axes[1].plot(means.index, means["test_output_gap"], marker=marker, color=colors[dataset], label=label)
    if len(trained):
        widths = np.sort(trained["width"].unique())
        ref = trained.loc[trained["width"] == widths[0], "test_output_gap"].mean()
        axes[1].plot(widths, ref * (widths / widths[0]) ** -0.5, "k--", lw=1, label=r"$m^{-1/2}$")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width m")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("test agreement, trained vs linearized")
    axes[1].set_yscale("log")
    axes[1].set_ylabel(r"$\|f_{true} - f_{lin}\| / \|f_{lin} - f_0\|$ on test")
    fig.tight_layout()
    return fig


def accuracy_fits(table: pd.DataFrame) -> pd.DataFrame:
    """accuracy_table beside the published baselines, one row per dataset."""
    return accuracy_table(table, baselines()).reset_index()
