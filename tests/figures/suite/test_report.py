"""report.html: self-contained, with the captions, fitted numbers, configs and environment; built from a run's
outcomes alone."""

from __future__ import annotations

import base64
import re

from analysis.kernel_spectrum import SpectrumConfig
from figures.suite.outcomes import StudyOutcome, SuiteResult
from figures.suite.report import render_report


def test_report_is_self_contained(toy, figures_cli, tmp_path):
    assert figures_cli() == 0
    report = (tmp_path / "out" / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', report)
    assert len(images) == 3 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert not re.search(r'(src|href)="(https?:|file:|/)', report)  # nothing loaded from elsewhere
    for text in ("Alpha against x: a toy caption.", "Fitted numbers", "ci_low", "[alpha]", "values = [1, 2, 3]",
                 "scale = 2.0", "jaxlib", "cpu_count", "Profile <b>quick</b>", "toy alpha", "seeds",
                 "A toy study: y = x * scale"):  # fmt: skip
        assert text in report, text
    assert report.rstrip().endswith("</html>")
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []


def test_the_report_takes_titles_and_descriptions_from_the_outcomes(tmp_path):
    config = SpectrumConfig(widths=(8,), seeds=(5,))
    outcome = StudyOutcome("not_registered", config, "0123abcd", "failed", seconds=2.0, error="ValueError: <no>",
                           traceback="Traceback: here", title="A study & its title",
                           description="What it\n    measures.")  # fmt: skip
    result = SuiteResult("full", "my.toml", [outcome], [], 3.0, tmp_path, tmp_path, {}, "c0de", "abc+dirty")
    report = render_report(result)
    assert "not_registered: A study &amp; its title" in report and "What it measures." in report
    assert '<span class="failed">failed: not_registered</span>' in report and "ValueError: &lt;no&gt;" in report
    assert "seeds 5" in report and "widths = [8]" in report and "<code>my.toml</code>" in report
    assert "abc+dirty" in report and "Profile <b>full</b>" in report
