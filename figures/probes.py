"""Figures for the perturbation probes: forward and backward stability, perturbations of
size omega, the gradient lower bound and sign flips along training."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from figures.style import MARKERS, apply_style, slope_label, width_palette
from ntk_rnn.fitting import power_law_fit

LIMIT_STYLE = {"color": "black", "ls": "--", "lw": 1.4}
# the paper's exponents in omega (docs/theory.md §1): hidden states move O(omega), O(omega^(2/3)) of the signs
# flip, and the first-order error is a factor omega^(1/3) below the first-order term (semi-smoothness)
PAPER_EXPONENTS = {"hidden_change": 1.0, "flip_fraction": 2 / 3, "first_order_error": 1 / 3}
MEASURES = {
    "hidden_change": r"$\max_l \|h'_l - h_l\|$",
    "flip_fraction": r"sign flips $\|D' - D\|_0 / m$ (steps $\geq 2$)",
    "first_order_error": r"$\|F(W{+}\Delta) - F(W) - J\Delta\| / \|J\Delta\|$",
}


def _width_panel(ax: plt.Axes, data: pd.DataFrame, x: str, y: str) -> None:
    """y against x per width (median line, band = range over seeds) and the limit (dashed), log y."""
    empirical = data[data["kernel"] == "empirical"].astype({"width": int})
    palette = width_palette(empirical["width"])
    for marker, (width, runs) in zip(MARKERS, empirical.groupby("width"), strict=False):
        stats = runs.groupby(x)[y].agg(["median", "min", "max"])
        ax.plot(stats.index, stats["median"], color=palette[width], marker=marker, markevery=4, ms=4, label=width)
        ax.fill_between(stats.index, stats["min"], stats["max"], color=palette[width], alpha=0.15, lw=0)
    limit = data[data["kernel"] == "limit"].groupby(x)[y].median()
    ax.plot(limit.index, limit.values, label="limit", **LIMIT_STYLE)
    ax.set_yscale("log")


def forward_figure(table: pd.DataFrame) -> plt.Figure:
    """||h_l|| against the step l per activation (columns) and sigma_w2 (rows), per width and the limit."""
    apply_style()
    activations = list(dict.fromkeys(table["activation"]))
    variances = list(dict.fromkeys(table["sigma_w2"]))
    fig, axes = plt.subplots(len(variances), len(activations), figsize=(3.6 * len(activations), 3.3 * len(variances)),
                             squeeze=False)  # fmt: skip
    table = table.assign(step=table["step"] + 1)  # the paper's 1-based steps
    for row, variance in enumerate(variances):
        for ax, activation in zip(axes[row], activations, strict=True):
            data = table[(table["sigma_w2"] == variance) & (table["activation"] == activation)]
            _width_panel(ax, data, "step", "norm")
            ax.set_title(rf"{activation}, $\sigma_w^2$ = {variance:g}", fontsize=10)
    for ax in axes.flat:
        ax.set_xlabel("step l")
        ax.set_ylabel(r"$\|h_l\|$ (mean over sequences)")
    axes[0, 0].legend(title="width m", fontsize=7, title_fontsize=8)
    fig.suptitle("forward stability at initialization (band: range over seeds; dashed: infinite width)", y=1.0)
    fig.tight_layout()
    return fig


def backward_figure(table: pd.DataFrame) -> plt.Figure:
    """||B D_l W ... D_a W||_2 / sqrt(m/d) against l - a per activation, per width and the limit; last panel:
    the intermediate-layer products ||D_l W ... D_1 W||_2 per activation."""
    apply_style()
    backward = table[table["quantity"] == "backward"]
    activations = list(dict.fromkeys(backward["activation"]))
    fig, axes = plt.subplots(1, len(activations) + 1, figsize=(3.6 * (len(activations) + 1), 3.6))
    for ax, activation in zip(axes[:-1], activations, strict=True):
        _width_panel(ax, backward[backward["activation"] == activation], "distance", "value")
        ax.set_title(activation, fontsize=10)
        ax.set_xlabel("distance l - a")
        ax.set_ylabel(r"$\|B D_l W \cdots D_a W\|_2 / \sqrt{m/d}$")
    axes[0].legend(title="width m", fontsize=7, title_fontsize=8)
    products = table[table["quantity"] == "product"]
    colors = dict(zip(activations, sns.color_palette("colorblind"), strict=False))
    for marker, ((activation, width), runs) in zip(MARKERS, products.groupby(["activation", "width"], sort=False),
                                                   strict=False):  # fmt: skip
        axes[-1].plot(runs["distance"] + 1, runs["value"], color=colors[activation], marker=marker, ms=4,
                      label=f"{activation} (m = {int(width)})")  # fmt: skip
    axes[-1].set_xscale("log", base=2)
    axes[-1].set_yscale("log")
    axes[-1].set_xlabel("number of factors l (from step 2)")
    axes[-1].set_ylabel(r"$\|D_l W \cdots D_2 W\|_2$")
    axes[-1].set_title("intermediate products (matrix-free)", fontsize=10)
    axes[-1].legend(fontsize=7)
    fig.suptitle(r"backward stability at initialization ($\sigma_w^2 = 2$; dashed: infinite width)", y=1.0)
    fig.tight_layout()
    return fig


def _perturbation_measures(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (kind, width, seed, omega): the max over steps of hidden_change, the mean over steps >= 1
    (the paper's l >= 2) of flip_fraction, and the first_order_error."""
    keys = ["kind", "width", "seed", "omega"]
    grouped = table.groupby(keys, sort=False)
    return pd.DataFrame(
        {
            "hidden_change": grouped["hidden_change"].max(),
            "flip_fraction": table[table["step"] >= 1].groupby(keys, sort=False)["flip_fraction"].mean(),
            "first_order_error": grouped["first_order_error"].first(),
        }
    ).reset_index()


def perturbation_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Log-log exponent in omega of each measure per (kind, width), with its 95% interval and the paper's
    exponent (zeros, e.g. no flips at tiny omega, are left out of the fit)."""
    rows = []
    for (kind, width), runs in _perturbation_measures(table).groupby(["kind", "width"], sort=False):
        for measure, paper in PAPER_EXPONENTS.items():
            keep = runs[measure] > 0
            if keep.sum() < 3:
                continue
            fit = power_law_fit(runs.loc[keep, "omega"], runs.loc[keep, measure])
            rows.append({"measure": measure, "kind": kind, "width": int(width), "exponent": fit["slope"],
                         "ci_low": fit["ci95"][0], "ci_high": fit["ci95"][1], "paper": paper,
                         "omega_min": runs.loc[keep, "omega"].min()})  # fmt: skip
    return pd.DataFrame(rows)


def perturbation_figure(table: pd.DataFrame) -> plt.Figure:
    """Top: each measure against omega per direction kind at the largest width, fitted exponents in the
    legend and the paper's exponent as a grey guide. Bottom: the same for the adversarial kind per width."""
    apply_style()
    measures = _perturbation_measures(table)
    widest = measures["width"].max()
    kinds = list(dict.fromkeys(measures["kind"]))
    colors = dict(zip(kinds, sns.color_palette("colorblind"), strict=False))
    palette = width_palette(measures["width"])
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    rows = (
        (measures[measures["width"] == widest], "kind", lambda v: colors[v], f"m = {widest}"),
        (measures[measures["kind"] == kinds[-1]], "width", lambda v: palette[int(v)], f"{kinds[-1]} direction"),
    )
    for row, (data, by, color, title) in enumerate(rows):
        for col, (measure, paper) in enumerate(PAPER_EXPONENTS.items()):
            ax = axes[row, col]
            for marker, (value, runs) in zip(MARKERS, data.groupby(by, sort=False), strict=False):
                median = runs.groupby("omega")[measure].median()
                positive = median[median > 0]
                label, points = f"{value}", runs[runs[measure] > 0]
                if points["omega"].nunique() >= 3:  # the same fit as perturbation_fits: every seed, zeros left out
                    label += ": " + slope_label(power_law_fit(points["omega"], points[measure]), "exponent")
                ax.plot(positive.index, positive.values, color=color(value), marker=marker, ms=4, label=label)
                ax.scatter(runs["omega"], runs[measure].where(runs[measure] > 0), color=color(value), s=8, alpha=0.35)
            guide = data.groupby("omega")[measure].median()
            guide = guide[guide > 0]
            if len(guide):
                ends = np.array([guide.index.min(), guide.index.max()])
                ax.plot(ends, guide.iloc[-1] * (ends / ends[-1]) ** paper, color="0.5", ls=":", lw=1.5,
                        label=f"paper: exponent {paper:.2g}")  # fmt: skip
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(r"$\omega = \sqrt{m}\,\|\Delta\|_2$")
            ax.set_ylabel(MEASURES[measure], fontsize=9)
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=7)
    fig.suptitle(r"perturbations $W \to W + \Delta$ at initialization (relu; points: seeds, lines: medians)", y=1.0)
    fig.tight_layout()
    return fig


def gradient_bound_figure(table: pd.DataFrame) -> plt.Figure:
    """||grad f||^2 / (f m) along GD and SGD (solid) beside its lower bound 2 lambda_min(K_t) / m (dashed),
    per first-token separation delta; medians over seeds."""
    apply_style()
    runs = table[table["source"].isin(["GD", "SGD"]) & table["grad_sq_norm"].notna()].copy()
    width = runs["width"]
    runs["ratio"] = runs["grad_sq_norm"] / runs["loss"] / width
    runs["bound"] = 2 * runs["lambda_min"] / width
    sources = list(dict.fromkeys(runs["source"]))
    deltas = sorted(runs["delta"].unique())
    colors = dict(zip(deltas, sns.color_palette("colorblind"), strict=False))
    fig, axes = plt.subplots(1, len(sources), figsize=(6 * len(sources), 4.3), sharey=True, squeeze=False)
    for ax, source in zip(axes[0], sources, strict=True):
        for marker, delta in zip(MARKERS, deltas, strict=False):
            data = runs[(runs["source"] == source) & (runs["delta"] == delta)].groupby("step")[["ratio", "bound"]]
            median = data.median()
            ax.plot(median.index, median["ratio"], color=colors[delta], marker=marker, ms=4,
                    label=rf"$\delta$ = {delta:g}")  # fmt: skip
            ax.plot(median.index, median["bound"], color=colors[delta], ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("training step t")
        ax.set_title(f"{source}", fontsize=10)
        ax.legend(fontsize=8, title="first-token separation", title_fontsize=8)
        ax.set_ylabel(r"solid: $\|\nabla f(W_t)\|_F^2 / (f(W_t)\, m)$;  dashed: $2\lambda_{\min}(K_t)/m$", fontsize=9)
    fig.suptitle(f"gradient lower bound along training (m = {int(width.iloc[0])}; medians over seeds)", y=1.0)
    fig.tight_layout()
    return fig


def sign_flip_figure(table: pd.DataFrame) -> plt.Figure:
    """Left: the fraction of ReLU signs changed since initialization against the step (GD, SGD; per delta).
    Right: the same against omega_t = sqrt(m) ||W_t - W_0||_2, beside a random perturbation of size omega."""
    apply_style()
    training = table[table["source"].isin(["GD", "SGD"]) & (table["step"] > 0)]
    random = table[table["source"] == "random"]
    deltas = sorted(training["delta"].unique())
    colors = dict(zip(deltas, sns.color_palette("colorblind"), strict=False))
    styles = {"GD": "-", "SGD": ":"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.3))
    for (source, delta), runs in training.groupby(["source", "delta"]):
        median = runs.groupby("step")[["pattern_flip_fraction", "omega"]].median()
        label = rf"{source}, $\delta$ = {delta:g}"
        left.plot(median.index, median["pattern_flip_fraction"], color=colors[delta], ls=styles[source], label=label)
        right.plot(median["omega"], median["pattern_flip_fraction"], color=colors[delta], ls=styles[source],
                   label=label)  # fmt: skip
    curve = random.groupby("omega")["pattern_flip_fraction"].median()
    curve = curve[curve > 0]
    fit = power_law_fit(curve.index, curve.values)
    right.plot(curve.index, curve.values, label="random direction, " + slope_label(fit, "exponent"),
               marker="o", ms=4, **LIMIT_STYLE)  # fmt: skip
    for ax in (left, right):
        ax.set_yscale("log")
        ax.set_ylabel(r"fraction of signs flipped since $W_0$ (steps $\geq 2$)")
        ax.legend(fontsize=7)
    left.set_xlabel("training step t")
    right.set_xscale("log")
    right.set_xlabel(r"$\omega = \sqrt{m}\,\|W_t - W_0\|_2$")
    right.set_title("training against a random perturbation of the same size", fontsize=10)
    fig.tight_layout()
    return fig


def forward_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """||h_L|| at the last step per (activation, sigma_w2): the median over seeds per width, and the limit."""
    last = table[table["step"] == table["step"].max()]
    empirical = last[last["kernel"] == "empirical"].pivot_table(
        index=["activation", "sigma_w2"], columns="width", values="norm", aggfunc="median"
    )
    empirical.columns = [f"m={int(c)}" for c in empirical.columns]
    limit = last[last["kernel"] == "limit"].groupby(["activation", "sigma_w2"])["norm"].median().rename("limit")
    return empirical.join(limit).reset_index()


def backward_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """||B D_l W ... D_a W||_2 / sqrt(m/d) at the largest distance per activation: median per width, and the limit."""
    backward = table[(table["quantity"] == "backward") & (table["distance"] == table["distance"].max())]
    empirical = backward[backward["kernel"] == "empirical"].pivot_table(
        index="activation", columns="width", values="value", aggfunc="median"
    )
    empirical.columns = [f"m={int(c)}" for c in empirical.columns]
    limit = backward[backward["kernel"] == "limit"].groupby("activation")["value"].median().rename("limit")
    return empirical.join(limit).reset_index()


def gradient_bound_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """Per (source, delta): lambda_min(K_0)/m, and over all kernel checkpoints of all seeds the smallest
    ||grad f||^2 / (f m) and the smallest ratio ||grad f||^2 / (2 lambda_min(K_t) f) (>= 1 by theory)."""
    runs = table[table["source"].isin(["GD", "SGD"]) & table["grad_sq_norm"].notna()]
    rows = []
    for (source, delta), data in runs.groupby(["source", "delta"]):
        m = data["width"].iloc[0]
        rows.append({"source": source, "delta": delta,
                     "lambda_min_0/m": data.loc[data["step"] == 0, "lambda_min"].median() / m,
                     "min grad^2/(f m)": (data["grad_sq_norm"] / data["loss"]).min() / m,
                     "min gradient_ratio": data["gradient_ratio"].min(),
                     "final loss / initial": (data.groupby("seed")["loss"].last()
                                              / data.groupby("seed")["loss"].first()).median()})  # fmt: skip
    return pd.DataFrame(rows)


def sign_flip_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """Per (source, delta): the final omega_t and flip fraction (medians over seeds), and the flip fraction a
    random perturbation of the same omega causes (log-log interpolation of the random curve)."""
    random = table[table["source"] == "random"].groupby("omega")["pattern_flip_fraction"].median()
    random = random[random > 0]
    runs = table[table["source"].isin(["GD", "SGD"])]
    final = (
        runs[runs["step"] == runs["step"].max()]
        .groupby(["source", "delta"])[["omega", "pattern_flip_fraction"]]
        .median()
    )
    final["random_at_same_omega"] = np.exp(
        np.interp(np.log(final["omega"]), np.log(random.index), np.log(random.values), left=np.nan, right=np.nan)
    )  # NaN outside the random curve's omega range
    final["training / random"] = final["pattern_flip_fraction"] / final["random_at_same_omega"]
    return final.reset_index()
