"""Figures for the perturbation probes: forward and backward stability, perturbations of
size omega, the gradient lower bound and sign flips along training."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from figures.style import MARKERS, apply_style, slope_label, width_palette
from ntk_rnn.training.fitting import joint_power_law_fit, power_law_fit

LIMIT_STYLE = {"color": "black", "ls": "--", "lw": 1.4}
# the paper's exponents (a, b) in y ~ omega^a m^b (docs/theory.md §6 and §10): Lemma C.2 (flips, hidden change),
# Lemma C.9 (backward change relative to ||B|| ~ sqrt(m)), Thm 4's first term over the first-order term (caption)
PAPER_EXPONENTS = {
    "max_flip_count": (2 / 3, 2 / 3),
    "flip_fraction": (2 / 3, -1 / 3),
    "hidden_change": (1.0, -1 / 2),
    "backward_change_mean": (1 / 3, -1 / 6),
    "backward_change_max": (1 / 3, -1 / 6),
    "first_order_error": (1 / 3, -1 / 6),
}
MEASURES = {
    "max_flip_count": r"$\max_{i,l} \|D'_{i,l} - D_{i,l}\|_0$",
    "flip_fraction": r"mean flip fraction $\|D'_{i,l} - D_{i,l}\|_0 / m$",
    "hidden_change": r"$\max_{i,l} \|h'_{i,l} - h_{i,l}\|$",
    "backward_change_mean": r"mean $\|R' - R\|_2 / \|B\|_2$, $R = B D_l W \cdots D_a W$",
    "backward_change_max": r"max $\|R' - R\|_2 / \|B\|_2$",
    "first_order_error": r"$\|F(W{+}\Delta) - F(W) - J\Delta\| / \|J\Delta\|$",
}
# intermediate products ||D_l W ... D_a W||_2: Lemma B.11 bounds them by O(L^3), Remark 4.1 conjectures O(1)
PRODUCT_BOUND, PRODUCT_CONJECTURE = 3.0, 0.0


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
    palette = width_palette(products["width"]) if len(products) else {}
    fits = product_fits(table)
    for marker, ((activation, width), runs) in zip(MARKERS, products.groupby(["activation", "width"], sort=False),
                                                   strict=False):  # fmt: skip
        fit = fits[(fits["activation"] == activation) & (fits["width"] == width)]
        label = f"{activation}, m = {int(width)}"
        if len(fit) and np.isfinite(fit["exponent"].iloc[0]):
            row = fit.iloc[0]
            label += f": exponent {row['exponent']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
        axes[-1].plot(runs["distance"] + 1, runs["value"], color=palette[int(width)], marker=marker, ms=4, label=label)
    if len(products):
        ends = np.array([1.0, products["distance"].max() + 1.0])
        level = products.loc[products["distance"] == 0, "value"].median()
        axes[-1].plot(ends, level * ends**PRODUCT_BOUND, color="0.5", ls=":", lw=1.5, label="paper's bound: $L^3$")
        axes[-1].plot(ends, level * ends**PRODUCT_CONJECTURE, color="0.3", ls="--", lw=1.2, label="conjecture: O(1)")
        axes[-1].set_ylim(products["value"].min() / 2, products["value"].max() * 4)
    axes[-1].set_xscale("log", base=2)
    axes[-1].set_yscale("log")
    axes[-1].set_xlabel("number of factors l - a + 1 (a = 2)")
    axes[-1].set_ylabel(r"$\|D_l W \cdots D_a W\|_2$")
    axes[-1].set_title("intermediate products (one sequence)", fontsize=10)
    axes[-1].legend(fontsize=7)
    fig.suptitle(r"backward stability at initialization ($\sigma_w^2 = 2$; dashed: infinite width)", y=1.0)
    fig.tight_layout()
    return fig


def product_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Per (activation, width) of the intermediate products: the log-log exponent of ||D_l W ... D_a W||_2 in the
    number of factors l - a + 1 (points with >= 2 factors) with its 95% interval, beside the paper's bound's
    exponent (3) and the conjecture's (0); the value at the most factors, and the largest value and where."""
    rows = []
    products = table[(table["quantity"] == "product") & (table["distance"] >= 1)]
    for (activation, width), runs in products.groupby(["activation", "width"], sort=False):
        fit = power_law_fit(runs["distance"] + 1, runs["value"])
        rows.append({"activation": activation, "width": int(width), "exponent": fit["slope"], "ci_low": fit["ci95"][0],
                     "ci_high": fit["ci95"][1], "paper_bound": PRODUCT_BOUND, "conjecture": PRODUCT_CONJECTURE,
                     "max_factors": int(runs["distance"].max() + 1), "value_at_max": runs["value"].iloc[-1],
                     "peak": runs["value"].max(),
                     "peak_factors": int(runs.loc[runs["value"].idxmax(), "distance"] + 1)})  # fmt: skip
    columns = ["activation", "width", "exponent", "ci_low", "ci_high", "paper_bound", "conjecture", "max_factors",
               "value_at_max", "peak", "peak_factors"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def backward_fits(table: pd.DataFrame) -> pd.DataFrame:
    """fig11's numbers, long form: the backward norms at the largest distance per (activation, width) and the
    limit (backward_numbers), then the intermediate products' growth exponents (product_fits)."""
    wide = backward_numbers(table).set_index("activation")
    rows = [{"quantity": "backward / sqrt(m/d) at the largest l - a", "activation": a, "width": c, "value": v}
            for a, row in wide.iterrows() for c, v in row.items()]  # fmt: skip
    products = product_fits(table).rename(columns={"exponent": "value"})
    products.insert(0, "quantity", "product: exponent in l - a + 1")
    return pd.concat([pd.DataFrame(rows), products.astype({"width": str})], ignore_index=True)


def _fixed_omega(table: pd.DataFrame) -> float:
    """The omega of the grid closest to 1 on a log scale: where the m-dependence is read."""
    omegas = np.unique(table["omega"])
    return float(omegas[np.argmin(np.abs(np.log(omegas)))])


def perturbation_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Per (measure, kind): the joint law y ~ C omega^a m^b over every (width, seed, omega) with 95% intervals
    (ntk_rnn.training.fitting.joint_power_law_fit; zeros, e.g. no flips at small omega, left out), and the
    paper's (a, b)."""
    rows = []
    for kind, runs in table.groupby("kind", sort=False):
        for measure, (paper_a, paper_b) in PAPER_EXPONENTS.items():
            fit = joint_power_law_fit(runs[measure], {"omega": runs["omega"], "m": runs["width"]})
            (a_lo, a_hi), (b_lo, b_hi) = fit["ci95"]["omega"], fit["ci95"]["m"]
            rows.append({"measure": measure, "kind": kind, "a (omega)": fit["exponents"]["omega"], "a_low": a_lo,
                         "a_high": a_hi, "paper a": paper_a, "b (m)": fit["exponents"]["m"], "b_low": b_lo,
                         "b_high": b_hi, "paper b": paper_b, "points": fit["points"],
                         "residual_sd": fit["residual_sd"]})  # fmt: skip
    return pd.DataFrame(rows)


def _widest(table: pd.DataFrame) -> pd.DataFrame:
    """The rows at each kind's own largest width (the adversarial kind may stop below the others)."""
    return table[table["width"] == table.groupby("kind")["width"].transform("max")]


def perturbation_slice_fits(table: pd.DataFrame) -> pd.DataFrame:
    """Per (measure, kind): the exponent in omega at the kind's largest width and the exponent in m at the omega
    closest to 1 (power_law_fit over seeds, zeros left out), with 95% intervals, beside the paper's."""
    omega = _fixed_omega(table)
    rows = []
    for kind, runs in table.groupby("kind", sort=False):
        widest = runs["width"].max()
        for measure, (paper_a, paper_b) in PAPER_EXPONENTS.items():
            in_omega = runs[runs["width"] == widest]
            in_m = runs[np.isclose(runs["omega"], omega)]
            for axis, data, x, paper in (("omega", in_omega, "omega", paper_a), ("m", in_m, "width", paper_b)):
                fit = power_law_fit(data[x], data[measure])
                rows.append({"measure": measure, "kind": kind, "against": axis,
                             "at": f"m = {int(widest)}" if axis == "omega" else f"omega = {omega:.3g}",
                             "exponent": fit["slope"], "ci_low": fit["ci95"][0], "ci_high": fit["ci95"][1],
                             "paper": paper, "points": fit["points"]})  # fmt: skip
    return pd.DataFrame(rows)


def _perturbation_panels(table: pd.DataFrame, x: str, exponent: int, xlabel: str, title: str) -> plt.Figure:
    """One log-log panel per measure against x, one line per kind (median over seeds; points: seeds), the
    fitted exponent in the legend and the paper's exponent (PAPER_EXPONENTS[measure][exponent]) as a guide."""
    apply_style()
    kinds = list(dict.fromkeys(table["kind"]))
    colors = dict(zip(kinds, sns.color_palette("colorblind"), strict=False))
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (measure, paper) in zip(axes.flat, PAPER_EXPONENTS.items(), strict=True):
        for marker, kind in zip(MARKERS, kinds, strict=False):
            runs = table[(table["kind"] == kind) & (table[measure] > 0)]
            if runs.empty:
                continue
            median = runs.groupby(x)[measure].median()
            label = kind if x == "width" else f"{kind} (m = {int(runs['width'].max())})"
            if runs[x].nunique() >= 3:
                label += ": " + slope_label(power_law_fit(runs[x], runs[measure]), "exponent")
            ax.plot(median.index, median.values, color=colors[kind], marker=marker, ms=4, label=label)
            ax.scatter(runs[x], runs[measure], color=colors[kind], s=8, alpha=0.35)
        guide = table[table[measure] > 0].groupby(x)[measure].median()
        if len(guide) >= 2:
            ends = np.array([guide.index.min(), guide.index.max()], float)
            ax.plot(ends, guide.iloc[-1] * (ends / ends[-1]) ** paper[exponent], color="0.5", ls=":", lw=1.5,
                    label=f"paper: exponent {paper[exponent]:+.2g}")  # fmt: skip
        ax.set_xscale("log", base=2 if x == "width" else 10)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(MEASURES[measure], fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def perturbation_figure(table: pd.DataFrame) -> plt.Figure:
    """Each perturbation measure against omega at each kind's largest width (fitted exponents in omega in the
    legends, the paper's as grey guides)."""
    return _perturbation_panels(_widest(table), "omega", 0, r"$\omega = \sqrt{m}\,\|\Delta\|_2$",
                                r"perturbations $W \to W + \Delta$ against $\omega$ (relu, each direction at its "
                                "largest width; points: seeds, lines: medians)")  # fmt: skip


def perturbation_width_figure(table: pd.DataFrame) -> plt.Figure:
    """Each perturbation measure against the width m at the omega closest to 1, per direction kind (fitted
    exponents in m in the legends, the paper's as grey guides)."""
    omega = _fixed_omega(table)
    return _perturbation_panels(table[np.isclose(table["omega"], omega)], "width", 1, "width m",
                                rf"perturbations $W \to W + \Delta$ against m at $\omega$ = {omega:.3g} (relu; "
                                "points: seeds, lines: medians)")  # fmt: skip


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
    backward = table[table["quantity"] == "backward"]
    backward = backward[backward["distance"] == backward["distance"].max()]
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
