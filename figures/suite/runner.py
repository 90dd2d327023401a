"""Running the main job: every study of a profile (read from the cache when finished), then every figure,
then report.html and the record cache_dir/suite.json. A study or figure that raises is recorded and the
run goes on; an interrupt stops it between studies or figures with what finished on disk."""

from __future__ import annotations

import os
import subprocess
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from tqdm.auto import tqdm

from analysis.sweep import code_version, recomputing, stop_if_interrupted
from figures.style import save_figure
from figures.suite.cache import (
    cached_study,
    compilation_cache,
    locked,
    remove_stale_temporaries,
    save_study,
    study_key,
    study_paths,
)
from figures.suite.outcomes import FigureOutcome, StudyOutcome, SuiteResult, fits_frame, outcome_line, suite_record
from figures.suite.overrides import effective_configs
from figures.suite.registry import FIGURES, STUDIES, FigureSpec, Study
from figures.suite.report import write_report
from ntk_rnn.storage import environment, read_table, write_json

FIGURES_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = FIGURES_DIR.parent


def git_commit() -> str | None:
    """The checkout's commit (with '+dirty' when the tracked sources differ from it), or None outside git."""
    try:
        run = lambda *args: subprocess.run(  # noqa: E731
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        commit = run("rev-parse", "--short=12", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no", "--", "ntk_rnn", "analysis", "figures")
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _outcome(study: Study, config: Any, key: str, status: str, **fields: Any) -> StudyOutcome:
    return StudyOutcome(study.name, config, key, status, title=study.title, description=study.run.__doc__ or "",
                        **fields)  # fmt: skip


def _cached(study: Study, config: Any, key: str, cache_dir: Path) -> StudyOutcome | None:
    """The 'cached' outcome (seconds 0) when the cache holds the study's table for this key, else None."""
    hit = cached_study(cache_dir, study.name, key)
    if hit is None:
        return None
    table, record = hit
    return _outcome(study, config, key, "cached", rows=len(table), compute_seconds=record.get("seconds"),
                    finished_utc=record.get("finished_utc"), table=table)  # fmt: skip


def _run_study(study: Study, config: Any, cache_dir: Path, force: bool, progress: bool) -> StudyOutcome:
    key = study_key(study.name, config)
    start = time.perf_counter()
    if not force and (hit := _cached(study, config, key, cache_dir)) is not None:
        hit.seconds = time.perf_counter() - start
        return hit
    try:
        if force:
            with recomputing():
                table = study.run(config, cache_dir=cache_dir, progress=progress)
        else:
            table = study.run(config, cache_dir=cache_dir, progress=progress)
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"study {study.name!r} returned {type(table).__name__}, not a pandas DataFrame")
        seconds = time.perf_counter() - start
        record = save_study(cache_dir, study.name, key, config, table, seconds)
        table = read_table(study_paths(cache_dir, study.name)[0])  # the figures see what a cached run sees
    except Exception as err:
        return _outcome(study, config, key, "failed", seconds=time.perf_counter() - start, error=_error(err),
                        traceback=traceback.format_exc())  # fmt: skip
    return _outcome(study, config, key, "computed", rows=len(table), seconds=seconds, compute_seconds=seconds,
                    finished_utc=record["finished_utc"], table=table)  # fmt: skip


def _run_study_cached_only(study: Study, config: Any, cache_dir: Path) -> StudyOutcome:
    """A study outside --only: its cached table when the key matches, else 'not run'."""
    key = study_key(study.name, config)
    hit = _cached(study, config, key, cache_dir)
    if hit is None:
        return _outcome(study, config, key, "not run", error="not selected by --only and not cached")
    return hit


def _render(spec: FigureSpec, tables: list[pd.DataFrame], out_dir: Path) -> FigureOutcome:
    start = time.perf_counter()
    try:
        paths = save_figure(spec.render(*tables), out_dir, spec.name)
        fits = fits_frame(spec.fits(*tables)) if spec.fits is not None else None
    except Exception as err:
        plt.close("all")
        return FigureOutcome(spec, "failed", seconds=time.perf_counter() - start, error=_error(err),
                             traceback=traceback.format_exc())  # fmt: skip
    return FigureOutcome(spec, "rendered", paths, fits, time.perf_counter() - start)


def parse_only(only: str | Sequence[str] | None, studies: Mapping[str, Study] | None = None) -> list[str] | None:
    """'a,b' or ['a', 'b'] -> ['a', 'b'], every name checked against `studies` (default: the registry)."""
    if only is None:
        return None
    studies = STUDIES if studies is None else studies
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    unknown = [n for n in names if n not in studies]
    if unknown or not names:
        raise ValueError(f"--only: unknown study {unknown[0] if unknown else '(none given)'!r}; "
                         f"the studies are: {', '.join(studies)}")  # fmt: skip
    return names


def run_suite(
    profile: str = "quick",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    only: str | Sequence[str] | None = None,
    force: bool = False,
    out_dir: str | os.PathLike = FIGURES_DIR,
    cache_dir: str | os.PathLike = "results",
    progress: bool = True,
    config_source: str | None = None,
    studies: Mapping[str, Study] | None = None,
    figures: Mapping[str, FigureSpec] | None = None,
) -> SuiteResult:
    """Run the studies of a profile (with overrides, as from load_overrides), render the figures and
    write out_dir/report.html and cache_dir/suite.json; `studies` and `figures` default to the registry.

    Finished studies are read from cache_dir, and what JAX compiles is cached in cache_dir/jax (JAX's
    persistent compilation cache, on for the run). `only` restricts the computation to those studies (the
    others' cached tables still go into the figures and the report when their key matches); `force`
    recomputes the studies that run, their cached units included, but not the compiled programs. A study
    or figure that raises is recorded and the run goes on (SuiteResult.ok is then False). KeyboardInterrupt
    propagates; what finished is on disk, and the next run resumes from it. SuiteBusyError: another run
    holds cache_dir.
    """
    studies = STUDIES if studies is None else studies
    figures = FIGURES if figures is None else figures
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    configs = effective_configs(profile, overrides, studies, config_source or "--config")
    selected = parse_only(only, studies) or list(studies)
    start = time.perf_counter()
    outcomes: dict[str, StudyOutcome] = {}
    rendered: list[FigureOutcome] = []
    with locked(cache_dir), compilation_cache(cache_dir):
        remove_stale_temporaries(cache_dir, out_dir)
        bar = tqdm(total=len(studies) + len(figures) + 1, desc="suite", disable=not progress, position=0)
        with bar:
            for name, study in studies.items():
                stop_if_interrupted()
                bar.set_postfix_str(name)
                if name in selected:
                    outcome = _run_study(study, configs[name], cache_dir, force, progress)
                else:
                    outcome = _run_study_cached_only(study, configs[name], cache_dir)
                outcomes[name] = outcome
                if progress:
                    bar.write(outcome_line(outcome))
                bar.update()
            for spec in figures.values():
                stop_if_interrupted()
                bar.set_postfix_str(spec.name)
                missing = [s for s in spec.studies if outcomes[s].table is None]
                if missing:
                    rendered.append(FigureOutcome(spec, "skipped", error=f"no table for {', '.join(missing)}"))
                else:
                    rendered.append(_render(spec, [outcomes[s].table for s in spec.studies], out_dir))
                bar.update()
            stop_if_interrupted()
            bar.set_postfix_str("report")
            result = SuiteResult(profile, config_source, list(outcomes.values()), rendered,
                                 time.perf_counter() - start, out_dir, cache_dir, environment(), code_version(),
                                 git_commit())  # fmt: skip
            result.report_path = write_report(result, out_dir / "report.html")
            result.seconds = time.perf_counter() - start
            write_json(suite_record(result), cache_dir / "suite.json")
            bar.update()
    return result
