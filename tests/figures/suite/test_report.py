"""report.html: self-contained, with the captions, fitted numbers, configs and environment; built from a run's
outcomes alone."""

from __future__ import annotations

import base64
import html
import re
from urllib.parse import unquote

from analysis.kernel_spectrum import SpectrumConfig
from figures.suite import catalogue  # noqa: F401  (registers the studies and figures)
from figures.suite.outcomes import FigureOutcome, StudyOutcome, SuiteResult
from figures.suite.registry import FIGURES, STUDIES, FigureSpec
from figures.suite.report import RESULTS_PAGES, SITE_DIR, docs_link, render_report, write_report

DOCS = SITE_DIR.parent / "docs"


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


def _catalogue_result(tmp_path, extra=()) -> SuiteResult:
    """A run in which every catalogued figure (and `extra` specs) was skipped: the report without any PNG."""
    specs = [*FIGURES.values(), *extra]
    studies = [StudyOutcome(s.name, s.quick, "0123abcd", "not run") for s in STUDIES.values()]
    outcomes = [FigureOutcome(spec, "skipped", error="a study it needs has no table") for spec in specs]
    return SuiteResult("quick", None, studies, outcomes, 1.0, tmp_path, tmp_path, {}, "c0de", None)


def _figure_block(report: str, name: str) -> str:
    return re.search(rf'<figure id="{name}">.*?</figure>', report, re.S).group(0)


def test_every_catalogued_figure_has_a_results_page_with_its_anchor_once():
    assert "fig1_kernel_spectrum" in FIGURES and len(FIGURES) >= 23  # the real catalogue, not the toy registry
    mapped = [name for _, names in RESULTS_PAGES.values() for name in names]
    assert len(mapped) == len(set(mapped)), "a figure is mapped to two pages"
    assert sorted(mapped) == sorted(FIGURES), "RESULTS_PAGES and the catalogue name different figures"
    pages = {path: path.read_text() for path in (DOCS / "results").glob("*.md")}
    for page, (title, names) in RESULTS_PAGES.items():
        path = DOCS / f"{page}.md"
        assert path.exists(), path
        assert pages[path].splitlines()[0] == f"# {title}", f"{path}'s title is not {title!r}"
        for name in names:
            anchor = re.compile(r"\{\s*#" + re.escape(name) + r"\s*\}")
            found = {p.name: len(anchor.findall(text)) for p, text in pages.items() if anchor.search(text)}
            assert found == {path.name: 1}, f"{name}'s anchor {{ #{name} }}: {found}, expected once in {path.name}"


def test_each_figure_links_to_its_discussion_relative_to_the_report(tmp_path):
    path = write_report(_catalogue_result(tmp_path), tmp_path / "out" / "report.html")
    report = path.read_text()
    for page, (title, names) in RESULTS_PAGES.items():
        for name in names:
            hrefs = re.findall(r'Discussion: <a href="([^"]+)">([^<]+)</a>', _figure_block(report, name))
            assert len(hrefs) == 1 and hrefs[0][1] == html.escape(title), (name, hrefs)
            target, anchor = unquote(hrefs[0][0]).split("#")
            assert not target.startswith("/") and anchor == name
            assert (path.parent / target).resolve() == SITE_DIR / f"{page}.html"


def test_a_hosted_site_is_linked_as_given(tmp_path):
    path = write_report(_catalogue_result(tmp_path), tmp_path / "report.html", docs="https://example.org/ntk-rnn/")
    report = path.read_text()
    for page, (_, names) in RESULTS_PAGES.items():
        for name in names:
            assert f'<a href="https://example.org/ntk-rnn/{page}.html#{name}">' in _figure_block(report, name)


def test_a_figure_no_page_discusses_gets_no_link(tmp_path):
    mine = FigureSpec("fig99_mine", ("my_study",), lambda t: None, "My own figure.", "Mine")
    path = write_report(_catalogue_result(tmp_path, [mine]), tmp_path / "report.html", docs="https://example.org")
    assert "Discussion:" not in _figure_block(path.read_text(), "fig99_mine")
    assert docs_link("fig99_mine", "https://example.org") is None
    assert "Discussion:" not in render_report(_catalogue_result(tmp_path))  # no site given: no links at all
