"""report.html: one self-contained page per run of the main job (figures embedded as base64 PNG, captions,
fitted numbers, the effective configs, seeds, run times, packages and machine)."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

import figures
from figures.suite.outcomes import SuiteResult, format_seconds, summary_table
from figures.suite.overrides import config_seeds, configs_toml
from ntk_rnn.storage import write_text

PAPER = (
    "Z. Allen-Zhu, Y. Li, Z. Song, <i>On the Convergence Rate of Training Recurrent Neural Networks</i>, "
    "NeurIPS 2019 (arXiv:1810.12065)"
)

# the results page of the documentation site (mkdocs.yml) that discusses each figure, by page: (title, figures)
RESULTS_PAGES = {
    "results/training": ("Kernels and training", (
        "fig1_kernel_spectrum", "fig2_gd_loss_curves", "fig3_movement_vs_width", "fig4_true_vs_linearized_loss",
        "fig5_linearization_gap_vs_width", "fig6_function_space_trajectories")),
    "results/eigenvalues": ("Eigenvalues and the limit", (
        "fig7_lambda_min_heatmaps", "fig8_limit_convergence", "fig9_conditioning_vs_length")),
    "results/probes": ("Perturbation probes", (
        "fig10_forward_stability", "fig11_backward_stability", "fig12_perturbation", "fig13_gradient_bound",
        "fig14_sign_flips_in_training", "fig21_lemmas_vs_width")),
    "results/cells": ("Every cell", ("fig15_cell_conditioning", "fig16_cell_lazy_regime", "fig17_cell_spread")),
    "results/width": ("How wide is wide enough", (
        "fig18_width_fluctuations", "fig19_width_requirement", "fig20_width_rate")),
    "results/sequences": ("Real sequences", ("fig22_classification_accuracy", "fig23_classification_agreement")),
}  # fmt: skip
# the site `make docs` builds (mkdocs.yml's site_dir, beside the figures package)
SITE_DIR = Path(figures.__file__).resolve().parent.parent / "site"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1050px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0 2.5em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { margin-top: 0.5em; } .meta { color: #555; font-size: 0.92em; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 0.7em; overflow-x: auto; font-size: 0.85em; }
.failed { color: #b00020; font-weight: bold; } .ok { color: #1b5e20; font-weight: bold; }
.notrun { color: #8a6d00; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    """Numbers with 4 significant digits (scientific notation when very small or large)."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, np.integer):
        return str(int(value))
    if isinstance(value, np.floating):
        return _fmt(float(value))
    return str(value)


def html_table(table: pd.DataFrame) -> str:
    """A DataFrame as an HTML table, numbers right-aligned and rounded."""
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    rows = []
    for record in table.itertuples(index=False):
        cells = []
        for value in record:
            numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))
            cells.append(f'<td class="num">{_e(_fmt(value))}</td>' if numeric else f"<td>{_e(value)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _display_width(path: Path, dpi: float = 160.0) -> int:
    """CSS width showing a PNG saved at `dpi` at its physical size (96 CSS px per inch)."""
    with open(path, "rb") as handle:
        header = handle.read(24)
    return round(int.from_bytes(header[16:20], "big") * 96 / dpi)


def _status_class(status: str) -> str:
    return {"failed": "failed", "not run": "notrun", "skipped": "notrun"}.get(status, "ok")


def docs_link(name: str, docs: str | None) -> tuple[str, str] | None:
    """(address, page title) of figure `name`'s discussion in the documentation site at `docs` (a URL, or a path
    relative to the report), or None when there is no site or no page discusses the figure."""
    for page, (title, names) in RESULTS_PAGES.items():
        if docs is not None and name in names:
            return f"{docs.rstrip('/')}/{page}.html#{name}", title
    return None


def docs_base(report_dir: str | os.PathLike, docs: str | None = None) -> str:
    """The documentation site as seen from a report in `report_dir`: an http(s) URL as is; otherwise a local site
    directory (default SITE_DIR, what `make docs` builds) as a relative URL, so the report works from the disk."""
    if docs is not None and docs.startswith(("http://", "https://")):
        return docs
    site = Path(docs) if docs is not None else SITE_DIR
    try:
        return quote(Path(os.path.relpath(site.resolve(), Path(report_dir).resolve())).as_posix())
    except ValueError:  # another drive (Windows): no relative path
        return site.resolve().as_uri()


def render_report(result: SuiteResult, docs: str | None = None) -> str:
    """The report as one HTML string; `docs` is the documentation site's base URL (see docs_base), None for no
    links to it."""
    status = (
        '<span class="ok">all studies and figures succeeded</span>'
        if result.ok
        else (f'<span class="failed">failed: {_e(", ".join(result.failed))}</span>')
    )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ntk-rnn report ({_e(result.profile)} profile)</title><style>{STYLE}</style></head><body>",
        "<h1>ntk-rnn: the neural tangent kernel of wide Elman RNNs, measured</h1>",
        f'<p class="meta">Figures testing the claims of {PAPER}. The model is the paper\'s: '
        "h<sub>l</sub> = relu(W h<sub>l-1</sub> + A x<sub>l</sub>), y<sub>l</sub> = B h<sub>l</sub>, "
        "W, A ~ N(0, 2/m), B ~ N(0, 1/d), only W trained, unless a study says otherwise.</p>",
        "<p>",
        f"Profile <b>{_e(result.profile)}</b>"
        + (f", overrides from <code>{_e(result.config_source)}</code>" if result.config_source else "")
        + f"; total run time <b>{_e(format_seconds(result.seconds))}</b>; {status}.<br>",
        f"Generated {_e(result.environment.get('time_utc', ''))} by <code>ntk-rnn figures</code>; "
        f"code version {_e(result.code_version)}, git commit {_e(result.git_commit or 'unknown')}.",
        "</p>",
        "<h2>Summary</h2>",
        html_table(_summary_with_figures(result, summary_table(result))),
        '<p class="meta">status: computed (in this run), cached (read back: the key over the config and the '
        "code version matched; <i>computed in</i> is the original computation's time), failed, or not run "
        "(outside <code>--only</code> and not cached).</p>",
        "<h2>Figures</h2><ol>",
    ]
    out += [f'<li><a href="#{_e(f.spec.name)}">{_e(f.spec.title or f.spec.name)}</a></li>' for f in result.figures]
    out.append("</ol>")
    for number, figure in enumerate(result.figures, start=1):
        spec = figure.spec
        out.append(f'<figure id="{_e(spec.name)}"><h3>Figure {number}. {_e(spec.title or spec.name)}</h3>')
        png = figure.paths[0] if figure.paths else None
        if figure.status == "rendered" and png is not None and png.exists():
            out.append(
                f'<img src="{_png_data_uri(png)}" alt="{_e(spec.title or spec.name)}" '
                f'style="width: {_display_width(png)}px">'
            )
        else:
            out.append(f'<p class="{_status_class(figure.status)}">Figure {_e(figure.status)}: {_e(figure.error)}</p>')
            if figure.traceback:
                out.append(f"<pre>{_e(figure.traceback)}</pre>")
        sources = ", ".join(f'<a href="#study-{_e(s)}">{_e(s)}</a>' for s in spec.studies)
        files = f"<code>{_e(spec.name)}.png</code> / <code>.pdf</code>"
        link = docs_link(spec.name, docs)
        discussion = f'<br>Discussion: <a href="{_e(link[0])}">{_e(link[1])}</a>' if link else ""
        out.append(f'<figcaption>{_e(spec.caption)}<br><span class="meta">File {files}; data: {sources}.'
                   f"{discussion}</span></figcaption>")  # fmt: skip
        if figure.fits is not None and not figure.fits.empty:
            out.append("<p><b>Fitted numbers</b></p>" + html_table(figure.fits))
        out.append("</figure>")

    out.append("<h2>Studies</h2>")
    for outcome in result.studies:
        heading = _e(outcome.name) + (f": {_e(outcome.title)}" if outcome.title else "")
        out.append(f'<h3 id="study-{_e(outcome.name)}">{heading}</h3>')
        if outcome.description:
            out.append(f'<p class="meta">{_e(" ".join(outcome.description.split()))}</p>')
        seeds = config_seeds(outcome.config)
        out.append(
            f'<p>Status <span class="{_status_class(outcome.status)}">{_e(outcome.status)}</span>; '
            f"rows {_e(outcome.rows if outcome.rows is not None else '-')}; "
            f"time in this run {_e(format_seconds(outcome.seconds))}; "
            f"computation {_e(format_seconds(outcome.compute_seconds))}"
            + (f" (finished {_e(outcome.finished_utc)})" if outcome.finished_utc else "")
            + f"; seeds {_e(', '.join(map(str, seeds)) or '-')}; cache key <code>{_e(outcome.key)}</code>.</p>"
        )
        if outcome.error and outcome.status == "failed":
            out.append(f'<p class="failed">{_e(outcome.error)}</p><pre>{_e(outcome.traceback or "")}</pre>')
        out.append(f"<pre>{_e(configs_toml({outcome.name: outcome.config}).strip())}</pre>")

    configs = {s.name: s.config for s in result.studies}
    out += [
        "<h2>Effective configuration</h2>",
        "<p>Every study's parameters in this run (each is also under its study above). Saved as a file, the "
        "TOML below reproduces the run: "
        f"<code>ntk-rnn figures --profile {_e(result.profile)} --config FILE.toml</code>. "
        "Each unit (one width, seed, dataset, ...) draws its data, weights and batches from "
        "<code>jax.random.key(seed)</code>.</p>",
        f"<details><summary>as one TOML file</summary><pre>{_e(configs_toml(configs))}</pre></details>",
        "<details><summary>as JSON</summary>",
        f"<pre>{_e(json.dumps({k: dataclasses.asdict(v) for k, v in configs.items()}, indent=2))}</pre></details>",
        "<h2>Environment</h2>",
        _environment_html(result.environment),
        "</body></html>",
    ]
    return "\n".join(out)


def _summary_with_figures(result: SuiteResult, table: pd.DataFrame) -> pd.DataFrame:
    figures = {s.name: [] for s in result.studies}
    for figure in result.figures:
        for study in figure.spec.studies:
            figures.setdefault(study, []).append(figure.spec.name.split("_")[0])
    table = table.copy()
    table.insert(3, "figures", [", ".join(figures.get(name, [])) for name in table["study"]])
    return table


def _environment_html(env: dict) -> str:
    packages = pd.DataFrame(
        [{"package": k, "version": v or "not installed"} for k, v in env.get("packages", {}).items()]
    )
    machine = dict(env.get("machine", {}))
    machine["jax_devices"] = ", ".join(machine.get("jax_devices", []))
    rows = pd.DataFrame([{"machine": "python", "value": str(env.get("python"))}] +
                        [{"machine": k, "value": str(v)} for k, v in machine.items()])  # fmt: skip
    return html_table(rows) + html_table(packages)


def write_report(result: SuiteResult, path: str | os.PathLike, docs: str | None = None) -> Path:
    """Render the report and write it atomically. Each figure links to its discussion in the documentation site
    `docs`: an http(s) URL (a hosted site), a local site directory, or None for the one `make docs` builds at the
    repository root (SITE_DIR), linked relatively from the report's directory."""
    return write_text(render_report(result, docs_base(Path(path).parent, docs)), path)
