"""What a run of the main job produced: one outcome per study and per figure, the run's result, and their
summaries (the end-of-run table, the JSON record cache_dir/suite.json, fitted numbers as tables)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from figures.suite.overrides import config_seeds
from figures.suite.registry import FigureSpec

RECORD_EXCLUDES = ("table", "config", "title", "description")


@dataclasses.dataclass
class StudyOutcome:
    """What became of one study in a run. status: computed, cached, failed or not run. title and
    description (the study function's docstring) are the registry's, for the report."""

    name: str
    config: Any
    key: str
    status: str
    rows: int | None = None
    seconds: float = 0.0  # spent in this run
    compute_seconds: float | None = None  # the computation's own time (from the cache record when cached)
    finished_utc: str | None = None
    error: str | None = None
    traceback: str | None = None
    table: pd.DataFrame | None = dataclasses.field(default=None, repr=False)
    title: str = ""
    description: str = ""

    def record(self) -> dict:
        """The outcome as JSON-ready fields: everything but the table, with the config as a dict and its seeds."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in RECORD_EXCLUDES}
        return out | {"config": dataclasses.asdict(self.config), "seeds": config_seeds(self.config)}


@dataclasses.dataclass
class FigureOutcome:
    """What became of one figure. status: rendered, failed or skipped (a study it needs has no table)."""

    spec: FigureSpec
    status: str
    paths: list[Path] = dataclasses.field(default_factory=list)
    fits: pd.DataFrame | None = None
    seconds: float = 0.0
    error: str | None = None
    traceback: str | None = None


@dataclasses.dataclass
class SuiteResult:
    """One run: its profile and override file, the study and figure outcomes in registry order, where the
    outputs went, the environment, code version and git commit, and the report's path once written."""

    profile: str
    config_source: str | None
    studies: list[StudyOutcome]
    figures: list[FigureOutcome]
    seconds: float
    out_dir: Path
    cache_dir: Path
    environment: dict
    code_version: str
    git_commit: str | None
    report_path: Path | None = None

    @property
    def failed(self) -> list[str]:
        """The names of the studies, then the figures, that failed."""
        return [s.name for s in self.studies if s.status == "failed"] + [
            f.spec.name for f in self.figures if f.status == "failed"
        ]

    @property
    def ok(self) -> bool:
        """No study and no figure failed."""
        return not self.failed


def fits_frame(fits: Any) -> pd.DataFrame:
    """Fitted numbers as a table: a DataFrame as it is; {quantity: {slope, ci95, ...}} one row per quantity."""
    if fits is None:
        return pd.DataFrame()
    if isinstance(fits, pd.DataFrame):
        return fits.reset_index(drop=True)
    rows = []
    for quantity, fit in fits.items():
        row = {"quantity": quantity}
        for key, value in fit.items() if isinstance(fit, Mapping) else [("value", fit)]:
            if key == "ci95":
                row["ci_low"], row["ci_high"] = value
            else:
                row[key] = value
        rows.append(row)
    return pd.DataFrame(rows)


def outcome_line(outcome: StudyOutcome) -> str:
    """One progress line for a study's outcome."""
    if outcome.status == "failed":
        return f"{outcome.name}: FAILED after {outcome.seconds:.1f} s: {outcome.error}"
    if outcome.status == "not run":
        return f"{outcome.name}: not run ({outcome.error})"
    return f"{outcome.name}: {outcome.status}, {outcome.rows} rows, {outcome.seconds:.1f} s"


def suite_record(result: SuiteResult) -> dict:
    """The JSON record of a run: profile, effective configs, outcomes, fitted numbers, environment."""
    return {
        "profile": result.profile,
        "config_source": result.config_source,
        "seconds": result.seconds,
        "ok": result.ok,
        "code_version": result.code_version,
        "git_commit": result.git_commit,
        "configs": {s.name: dataclasses.asdict(s.config) for s in result.studies},
        "studies": {s.name: s.record() for s in result.studies},
        "figures": {
            f.spec.name: {
                "status": f.status,
                "studies": list(f.spec.studies),
                "paths": [str(p) for p in f.paths],
                "seconds": f.seconds,
                "error": f.error,
                "fits": None if f.fits is None else f.fits.to_dict(orient="records"),
            }
            for f in result.figures
        },
        "report": None if result.report_path is None else str(result.report_path),
        "environment": result.environment,
    }


def format_seconds(seconds: float | None) -> str:
    """'12.3 s' under a minute, '4 min 05 s' above, '-' for None or a non-finite time."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def summary_table(result: SuiteResult) -> pd.DataFrame:
    """One row per study: status, rows, seconds in this run, the computation's own time, error."""
    return pd.DataFrame(
        [
            {
                "study": s.name,
                "status": s.status,
                "rows": "-" if s.rows is None else s.rows,
                "seconds": format_seconds(s.seconds),
                "computed in": format_seconds(s.compute_seconds),
                "cached": "yes" if s.status == "cached" else "no",
                "error": s.error or "",
            }
            for s in result.studies
        ]
    )


def format_summary(result: SuiteResult) -> str:
    """The end-of-run summary: the study table, failed figures, where the outputs are, the total time."""
    lines = [summary_table(result).to_string(index=False)]
    for figure in result.figures:
        if figure.status != "rendered":
            lines.append(f"figure {figure.spec.name}: {figure.status} ({figure.error})")
    done = sum(f.status == "rendered" for f in result.figures)
    lines.append(f"{done} of {len(result.figures)} figures in {result.out_dir}; report {result.report_path}")
    status = "ok" if result.ok else f"FAILED: {', '.join(result.failed)}"
    lines.append(f"total {format_seconds(result.seconds)} (profile {result.profile}); {status}")
    return "\n".join(lines)
