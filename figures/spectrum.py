"""Figure 1: the spectrum of K_0 / m and lambda_min(K_0) / m against width."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from figures.style import MARKERS, apply_style, width_palette


def spectrum_figure(table: pd.DataFrame, dataset: str = "synthetic") -> plt.Figure:
    """table: kernel_spectrum rows (dataset, width, seed, rank, eigenvalue_over_m)."""
    apply_style()
    data = table[table["dataset"] == dataset]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    palette = width_palette(data["width"])
    sns.lineplot(
        data=data,
        x="rank",
        y="eigenvalue_over_m",
        hue="width",
        palette=palette,
        style="width",
        markers=list(MARKERS[: len(palette)]),
        markevery=8,
        dashes=False,
        errorbar=("pi", 100),
        markersize=5,
        err_kws={"alpha": 0.15},
        ax=left,
    )
    left.set_yscale("log")
    left.set_xlabel("eigenvalue rank (0 = smallest)")
    left.set_ylabel(r"eigenvalue of $K_0$ / m")
    left.set_title(f"spectrum ({dataset}; band = range over seeds)")
    left.legend(title="width m", fontsize=8)

    lam = table[table["rank"] == 0]
    sns.lineplot(
        data=lam,
        x="width",
        y="eigenvalue_over_m",
        hue="dataset",
        style="dataset",
        markers=True,
        dashes=False,
        errorbar=("pi", 100),
        palette="colorblind",
        ax=right,
    )
    sns.stripplot(
        data=lam,
        x="width",
        y="eigenvalue_over_m",
        hue="dataset",
        palette="colorblind",
        native_scale=True,
        legend=False,
        alpha=0.5,
        size=3,
        jitter=False,
        ax=right,
    )
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("width m")
    right.set_ylabel(r"$\lambda_{\min}(K_0)$ / m")
    right.set_title(r"smallest eigenvalue (points = seeds)")
    fig.tight_layout()
    return fig
