"""One look for every figure: seaborn's colour-blind palettes, markers that survive grayscale, PNG + PDF."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import seaborn as sns

from ntk_rnn.storage import atomic_write
from ntk_rnn.training.fitting import power_law_fit

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def apply_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.15, rc={"figure.dpi": 110, "savefig.dpi": 160})


def width_palette(widths) -> dict:
    """Sequential palette over widths (ordered in lightness, so readable in grayscale)."""
    widths = sorted(set(int(w) for w in widths))
    return dict(zip(widths, sns.color_palette("viridis", len(widths)), strict=True))


def save_figure(fig: plt.Figure, out_dir: str | os.PathLike, name: str) -> list[Path]:
    """Write name.png and name.pdf into out_dir (created if missing), each atomically; close the figure.
    Returns the two paths."""
    paths = []
    for ext in ("png", "pdf"):
        write = partial(fig.savefig, format=ext, bbox_inches="tight")
        paths.append(atomic_write(Path(out_dir) / f"{name}.{ext}", write, binary=True))
    plt.close(fig)
    return paths


def slope_label(fit: dict, name: str = "slope") -> str:
    lo, hi = fit["ci95"]
    return f"{name} {fit['slope']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def power_law_panel(ax: plt.Axes, x, y, color, marker: str = "o", name: str = "") -> dict:
    """Scatter y against x on log-log axes with the fitted y = C x^slope, labelled with the slope and
    its 95% interval; returns the fit (ntk_rnn.training.fitting.power_law_fit)."""
    fit = power_law_fit(x, y)
    ax.scatter(x, y, color=color, marker=marker, s=22, alpha=0.7)
    ends = np.array([np.min(x), np.max(x)], float)
    ax.plot(ends, np.exp(fit["intercept"]) * ends ** fit["slope"], color=color, label=name + slope_label(fit))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    return fit
