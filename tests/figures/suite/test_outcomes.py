"""Outcomes of a run: fitted numbers as tables, times, the end-of-run summary and the JSON record."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.kernel_spectrum import SpectrumConfig
from figures.suite.outcomes import (
    FigureOutcome,
    StudyOutcome,
    SuiteResult,
    fits_frame,
    format_seconds,
    format_summary,
    suite_record,
)
from figures.suite.registry import FigureSpec


def test_fits_frame_tables_every_form_of_fitted_numbers():
    table = fits_frame({"drift": {"slope": -0.5, "ci95": (-0.6, -0.4)}, "count": 3})
    assert list(table.columns) == ["quantity", "slope", "ci_low", "ci_high", "value"]
    assert table.loc[0, "ci_low"] == -0.6 and table.loc[1, "value"] == 3 and pd.isna(table.loc[1, "slope"])
    frame = pd.DataFrame({"a": [1, 2]}, index=[5, 7])
    assert fits_frame(frame).index.tolist() == [0, 1] and fits_frame(None).empty


def test_format_seconds():
    assert [format_seconds(s) for s in (0.04, 59.94, 60, 125.4, None, float("nan"))] == [
        "0.0 s", "59.9 s", "1 min 00 s", "2 min 05 s", "-", "-"
    ]  # fmt: skip


def _result(tmp_path: Path) -> SuiteResult:
    config = SpectrumConfig(widths=(8,), seeds=(3, 4))
    studies = [
        StudyOutcome("alpha", config, "k1", "computed", rows=4, seconds=75.0, compute_seconds=75.0, title="A",
                     description="The alpha study.", table=pd.DataFrame({"x": [1]})),
        StudyOutcome("beta", config, "k2", "failed", seconds=0.5, error="RuntimeError: no"),
    ]  # fmt: skip
    spec = FigureSpec("figB", ("beta",), lambda t: None, "caption")
    figures = [FigureOutcome(spec, "skipped", error="no table for beta")]
    return SuiteResult("quick", None, studies, figures, 80.0, tmp_path / "out", tmp_path / "cache", {}, "c0de", None)


def test_the_summary_and_the_record_of_a_run_with_a_failure(tmp_path):
    result = _result(tmp_path)
    assert not result.ok and result.failed == ["beta"]
    summary = format_summary(result)
    assert "1 min 15 s" in summary and "figure figB: skipped (no table for beta)" in summary
    assert summary.splitlines()[-1] == "total 1 min 20 s (profile quick); FAILED: beta"
    assert "0 of 1 figures" in summary
    record = suite_record(result)
    assert record["ok"] is False and record["studies"]["alpha"]["seeds"] == [3, 4]
    assert record["configs"]["alpha"]["widths"] == (8,) and record["figures"]["figB"]["fits"] is None
    assert not {"table", "title", "description"} & set(record["studies"]["alpha"])
    result.studies.pop()
    assert result.ok and format_summary(result).endswith("; ok")
