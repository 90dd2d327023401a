"""The main job: run every registered study, render every registered figure, write figures/report.html.

A study is a name, one frozen config per profile and a function config -> tidy table; a figure is a
file name, the study (or studies) whose table it draws, a function table -> matplotlib Figure, a
caption and optionally a function table -> fitted numbers. Adding either is one call at the bottom
of this file:

    add_study("my_study", my_table, MyConfig(), full=MyConfig(widths=(64, ..., 4096)), title="...")
    add_figure("fig10_my_figure", "my_study", my_figure, caption="...", title="...", fits=my_fits)

where my_table(config, cache_dir=..., progress=...) returns a pandas table (analysis/ has the studies).

Every study's table is saved atomically under the cache directory with a key over its effective
config and the code version (analysis.sweep.code_version); a rerun reads a finished study back
instead of computing it, and studies cache their own units (analysis.sweep.run_sweep), so a run
killed halfway resumes where it stopped. A study that raises is reported and the run goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import subprocess
import time
import tomllib
import traceback
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from analysis.eigenvalues import (
    ConditioningConfig,
    ConvergenceConfig,
    SeparationConfig,
    conditioning_table,
    convergence_table,
    separation_table,
)
from analysis.kernel_spectrum import SpectrumConfig, spectrum_table
from analysis.linearization import LinearizationConfig, linearization_table, trajectory_table
from analysis.probes import (
    BackwardConfig,
    ForwardConfig,
    PerturbationConfig,
    TrainingProbeConfig,
    backward_table,
    forward_table,
    perturbation_table,
    training_probe_table,
)
from analysis.sweep import cache_key, code_version, recomputing, stop_if_interrupted
from analysis.width_training import WidthTrainingConfig, training_table
from figures.eigenvalues import conditioning_figure, convergence_figure, convergence_fits, separation_figure
from figures.linearization import gap_figure, gap_fits, loss_comparison_figure, trajectory_figure
from figures.probes import (
    backward_figure,
    backward_numbers,
    forward_figure,
    forward_numbers,
    gradient_bound_figure,
    gradient_bound_numbers,
    perturbation_figure,
    perturbation_fits,
    sign_flip_figure,
    sign_flip_numbers,
)
from figures.spectrum import spectrum_figure
from figures.style import save_figure
from figures.training import loss_curves_figure, movement_figure, movement_fits
from ntk_rnn.fitting import power_law_fit
from ntk_rnn.storage import environment, read_table, write_json, write_table

FIGURES_DIR = Path(__file__).resolve().parent
REPO_ROOT = FIGURES_DIR.parent
PROFILES = ("quick", "full")


# --------------------------------------------------------------------------------------------------
# The registry


@dataclasses.dataclass(frozen=True)
class Study:
    """A study: `run(config, cache_dir=Path, progress=bool) -> pd.DataFrame`, with a frozen dataclass
    config per profile ("full" falls back to "quick" when not given)."""

    name: str
    run: Callable[..., pd.DataFrame]
    quick: Any
    full: Any = None
    title: str = ""

    def config(self, profile: str) -> Any:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        return self.full if profile == "full" and self.full is not None else self.quick


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """A figure: `render(*tables) -> matplotlib Figure` over the tables of `studies` (in that order),
    saved as name.png and name.pdf; `fits(*tables)` gives its fitted numbers (a DataFrame, or a dict
    of {quantity: {slope, ci95, ...}}) for the report."""

    name: str
    studies: tuple[str, ...]
    render: Callable[..., Any]
    caption: str
    title: str = ""
    fits: Callable[..., Any] | None = None


STUDIES: dict[str, Study] = {}
FIGURES: dict[str, FigureSpec] = {}


def add_study(name: str, run: Callable[..., pd.DataFrame], quick: Any, full: Any = None, title: str = "") -> Study:
    """Register a study (name unique; its table goes to <cache>/<name>.csv)."""
    if name in STUDIES or name == "suite" or not name.isidentifier():
        raise ValueError(f"study name {name!r} is taken or not an identifier")
    for config in (quick, full):
        if config is not None and not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
            raise TypeError(f"study {name!r}: configs must be dataclass instances, got {config!r}")
    STUDIES[name] = Study(name, run, quick, full, title)
    return STUDIES[name]


def add_figure(
    name: str,
    studies: str | Sequence[str],
    render: Callable[..., Any],
    caption: str,
    title: str = "",
    fits: Callable[..., Any] | None = None,
) -> FigureSpec:
    """Register a figure drawn from the tables of one study (a name) or several (a sequence of names)."""
    studies = (studies,) if isinstance(studies, str) else tuple(studies)
    if name in FIGURES:
        raise ValueError(f"figure name {name!r} is taken")
    unknown = [s for s in studies if s not in STUDIES]
    if unknown:
        raise ValueError(f"figure {name!r} draws unknown studies {unknown}; register them first")
    FIGURES[name] = FigureSpec(name, studies, render, " ".join(caption.split()), title, fits)
    return FIGURES[name]


# --------------------------------------------------------------------------------------------------
# Configs: profiles, TOML overrides (validated), and the effective config back as TOML


def load_overrides(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read a TOML file of study overrides: one table per study name, keys = config fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config: no such file {str(path)!r}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"--config {path}: invalid TOML: {err}") from None


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """value (as TOML gives it) checked against a dataclass field's annotation; lists become tuples."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(value, option, where)
            except ValueError as err:
                errors.append(err)
        raise ValueError(f"{where} must be {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list (of {_type_name(args[0]) if args else 'values'}), got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    return value  # an annotation this checker does not know: taken as given


def override_config(config: Any, changes: Mapping[str, Any], where: str) -> Any:
    """dataclasses.replace(config, **changes) with every field name and type checked."""
    if not isinstance(changes, Mapping):
        raise ValueError(f"{where} must be a table of config fields, got {changes!r}")
    hints = typing.get_type_hints(type(config))
    fields = [f.name for f in dataclasses.fields(config)]
    coerced = {}
    for key, value in changes.items():
        if key not in fields:
            raise ValueError(f"{where} has no field {key!r}; its fields are: {', '.join(fields)}")
        coerced[key] = _coerce(value, hints.get(key, Any), f"{where}.{key}")
    return dataclasses.replace(config, **coerced)


def effective_configs(
    profile: str = "quick",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    studies: Mapping[str, Study] | None = None,
    source: str = "--config",
) -> dict[str, Any]:
    """{study name: the profile's config with the overrides applied}; unknown studies or fields and
    wrong types raise a ValueError that names them."""
    studies = STUDIES if studies is None else studies
    overrides = overrides or {}
    unknown = [name for name in overrides if name not in studies]
    if unknown:
        raise ValueError(f"{source}: unknown study [{unknown[0]}]; the studies are: {', '.join(studies)}")
    return {
        name: override_config(study.config(profile), overrides.get(name, {}), f"{source}: [{name}]")
        for name, study in studies.items()
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def configs_toml(configs: Mapping[str, Any]) -> str:
    """The configs as a TOML file that --config reads back to the same configs (None fields, which
    TOML cannot express, appear as comments)."""
    lines = []
    for name, config in configs.items():
        lines.append(f"[{name}]")
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            if value is None:
                lines.append(f"# {field.name} = None (TOML has no null: leave the field out to keep None)")
            else:
                lines.append(f"{field.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def config_seeds(config: Any) -> list[int]:
    """The seeds a config runs (its `seeds` or `seed` field)."""
    values = dataclasses.asdict(config)
    if "seeds" in values:
        return list(values["seeds"])
    return [values["seed"]] if "seed" in values else []


def study_key(name: str, config: Any) -> str:
    """Cache key of a study's table: its name, its full config and the code version."""
    return cache_key(study=name, config=dataclasses.asdict(config))


# --------------------------------------------------------------------------------------------------
# The per-study table cache: <cache>/<name>.csv, then <cache>/<name>.study.json (written last)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _table_paths(cache_dir: Path, name: str) -> tuple[Path, Path]:
    return cache_dir / f"{name}.csv", cache_dir / f"{name}.study.json"


def cached_study(cache_dir: Path, name: str, key: str) -> tuple[pd.DataFrame, dict] | None:
    """(table, record) when the cache holds this study's table for this key, intact; else None."""
    table_path, record_path = _table_paths(cache_dir, name)
    try:
        record = json.loads(record_path.read_text())
        if record.get("key") != key or record.get("sha256") != _sha256(table_path):
            return None
        return read_table(table_path), record
    except (OSError, ValueError):
        return None


def save_study(cache_dir: Path, name: str, key: str, config: Any, table: pd.DataFrame, seconds: float) -> dict:
    """Write the table, then its record (key, config, checksum, time); the record marks it finished."""
    table_path, record_path = _table_paths(cache_dir, name)
    write_table(table, table_path)
    record = {
        "study": name,
        "key": key,
        "code_version": code_version(),
        "config": dataclasses.asdict(config),
        "rows": len(table),
        "seconds": seconds,
        "sha256": _sha256(table_path),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(record, record_path)
    return record


@contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache directory for the run (released by the OS if it is killed)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(cache_dir / ".suite.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SuiteBusyError(f"another `ntk-rnn figures` run is using {cache_dir} (lock {handle.name})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class SuiteBusyError(RuntimeError):
    """Another run holds the cache directory."""


# what ntk_rnn.storage and figures.style.save_figure name their temporaries: .NAME.<mkstemp's 8 characters>.EXT
TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp|png|pdf)$")


def remove_stale_temporaries(cache_dir: Path, out_dir: Path) -> list[Path]:
    """Delete the hidden temporary files that a killed writer leaves behind: in the cache directory and
    its study folders, and beside the figures."""
    candidates = [*cache_dir.glob(".*"), *cache_dir.glob("*/.*"), *out_dir.glob(".*")]
    removed = [path for path in candidates if TEMPORARY.match(path.name) and path.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


# --------------------------------------------------------------------------------------------------
# Running the suite


@dataclasses.dataclass
class StudyOutcome:
    """What became of one study in a run. status: computed, cached, failed or not run."""

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

    def record(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("table", "config")}
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
    def ok(self) -> bool:
        """No study and no figure failed."""
        return not any(s.status == "failed" for s in self.studies) and not any(
            f.status == "failed" for f in self.figures
        )


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


def _run_study(study: Study, config: Any, cache_dir: Path, force: bool, progress: bool) -> StudyOutcome:
    key = study_key(study.name, config)
    start = time.perf_counter()
    if not force and (hit := cached_study(cache_dir, study.name, key)) is not None:
        table, record = hit
        return StudyOutcome(study.name, config, key, "cached", len(table), time.perf_counter() - start,
                            record.get("seconds"), record.get("finished_utc"), table=table)  # fmt: skip
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
        table = read_table(_table_paths(cache_dir, study.name)[0])  # the figures see what a cached run sees
    except Exception as err:
        return StudyOutcome(study.name, config, key, "failed", seconds=time.perf_counter() - start,
                            error=_error(err), traceback=traceback.format_exc())  # fmt: skip
    return StudyOutcome(study.name, config, key, "computed", len(table), seconds, seconds, record["finished_utc"],
                        table=table)  # fmt: skip


def _render(spec: FigureSpec, tables: list[pd.DataFrame], out_dir: Path) -> FigureOutcome:
    start = time.perf_counter()
    try:
        paths = save_figure(spec.render(*tables), out_dir, spec.name)
        fits = fits_frame(spec.fits(*tables)) if spec.fits is not None else None
    except Exception as err:
        import matplotlib.pyplot as plt

        plt.close("all")
        return FigureOutcome(spec, "failed", seconds=time.perf_counter() - start, error=_error(err),
                             traceback=traceback.format_exc())  # fmt: skip
    return FigureOutcome(spec, "rendered", paths, fits, time.perf_counter() - start)


def parse_only(only: str | Sequence[str] | None, studies: Mapping[str, Study] | None = None) -> list[str] | None:
    """'a,b' or ['a', 'b'] -> ['a', 'b'], every name checked against the registry."""
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
    write out_dir/report.html and cache_dir/suite.json.

    Finished studies are read from cache_dir. `only` restricts the computation to those studies (the
    others' cached tables still go into the figures and the report when their key matches); `force`
    recomputes the studies that run, their cached units included. A study or figure that raises is
    recorded and the run goes on (SuiteResult.ok is then False). KeyboardInterrupt propagates; what
    finished is on disk, and the next run resumes from it.
    """
    from figures.report import write_report

    studies = STUDIES if studies is None else studies
    figures = FIGURES if figures is None else figures
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    configs = effective_configs(profile, overrides, studies, config_source or "--config")
    selected = parse_only(only, studies) or list(studies)
    start = time.perf_counter()
    outcomes: dict[str, StudyOutcome] = {}
    rendered: list[FigureOutcome] = []
    with _locked(cache_dir):
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
                    bar.write(_outcome_line(outcome))
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


def _run_study_cached_only(study: Study, config: Any, cache_dir: Path) -> StudyOutcome:
    """A study outside --only: its cached table when the key matches, else 'not run'."""
    key = study_key(study.name, config)
    hit = cached_study(cache_dir, study.name, key)
    if hit is None:
        return StudyOutcome(study.name, config, key, "not run", error="not selected by --only and not cached")
    table, record = hit
    return StudyOutcome(study.name, config, key, "cached", len(table), 0.0, record.get("seconds"),
                        record.get("finished_utc"), table=table)  # fmt: skip


def _outcome_line(outcome: StudyOutcome) -> str:
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
    failed = [s.name for s in result.studies if s.status == "failed"]
    failed += [f.spec.name for f in result.figures if f.status == "failed"]
    status = "ok" if not failed else f"FAILED: {', '.join(failed)}"
    lines.append(f"total {format_seconds(result.seconds)} (profile {result.profile}); {status}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Fitted numbers for figures whose modules give none


def lambda_min_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: the median over seeds of lambda_min(K_0)/m at each width (and of the limit kernel's,
    when the table has it), and the log-log slope of lambda_min/m against width with its 95% interval
    (near 0 once K_0/m has levelled off)."""
    kernels = table["kernel"] if "kernel" in table else pd.Series("empirical", index=table.index)
    lam = table[table["rank"] == 0].assign(kernel=kernels)
    rows = []
    for dataset, runs in lam.groupby("dataset", sort=False):
        empirical = runs[runs["kernel"] == "empirical"]
        fit = power_law_fit(empirical["width"], empirical["eigenvalue_over_m"])
        row = {"dataset": dataset}
        row |= {f"m={int(w)}": v for w, v in empirical.groupby("width")["eigenvalue_over_m"].median().items()}
        if (runs["kernel"] == "limit").any():
            row["limit"] = runs.loc[runs["kernel"] == "limit", "eigenvalue_over_m"].median()
        rows.append(row | {"slope vs width": fit["slope"], "ci_low": fit["ci95"][0], "ci_high": fit["ci95"][1]})
    return pd.DataFrame(rows)


def loss_rate_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """Per width, medians over seeds: fitted slope of log loss per step (second half), the slowest-mode
    rate 2 log(1 - eta lambda_min(K_0)), their ratio, and the final loss."""
    final = table[table["step"] == table["step"].max()]
    rates = table.groupby("width")[["fitted_log_rate", "predicted_log_rate"]].median()
    rates["fitted / predicted"] = rates["fitted_log_rate"] / rates["predicted_log_rate"]
    rates["final loss"] = final.groupby("width")["loss"].median()
    return rates.reset_index()


def trajectory_numbers(outputs: pd.DataFrame) -> pd.DataFrame:
    """Per width and split, the largest |linearized - closed form| and |true - linearized| over steps and points."""
    wide = outputs.pivot_table(index=["width", "seed", "split", "point", "step"], columns="model", values="value")
    wide["|lin - closed form|"] = (wide["lin"] - wide["closed_form"]).abs()
    wide["|true - lin|"] = (wide["true"] - wide["lin"]).abs()
    return wide.groupby(["width", "split"])[["|lin - closed form|", "|true - lin|"]].max().reset_index()


def separation_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """Log-log slope of lambda_min/m against delta at each L (grid L-delta), per kernel, with its 95% interval."""
    rows = []
    grid = table[table["grid"] == "L-delta"]
    for (kernel, length), runs in grid.groupby(["kernel", "length"]):
        fit = power_law_fit(runs["delta"], runs["lambda_min"])
        rows.append({"kernel": kernel, "L": int(length), "slope vs delta": fit["slope"], "ci_low": fit["ci95"][0],
                     "ci_high": fit["ci95"][1]})  # fmt: skip
    return pd.DataFrame(rows)


def conditioning_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """Median condition number of the limit kernel per parameterization and activation, one column per L."""
    limit = table[table["kernel"] == "limit"]
    wide = limit.pivot_table(index=["parameterization", "activation"], columns="length", values="condition",
                             aggfunc="median")  # fmt: skip
    wide.columns = [f"L={c}" for c in wide.columns]
    return wide.reset_index()


# --------------------------------------------------------------------------------------------------
# The studies and figures of `ntk-rnn figures`

WIDTHS_FULL = (64, 128, 256, 512, 1024, 2048, 4096)
SEEDS_FULL = (0, 1, 2, 3, 4)

add_study(
    "kernel_spectrum", spectrum_table, SpectrumConfig(),
    full=SpectrumConfig(widths=(*WIDTHS_FULL, 8192), seeds=SEEDS_FULL),
    title="The spectrum of K_0 against width (synthetic and digits data)",
)  # fmt: skip
add_study(
    "width_training", training_table, WidthTrainingConfig(),
    full=WidthTrainingConfig(widths=WIDTHS_FULL, seeds=SEEDS_FULL),
    title="Full-batch GD at several widths with the kernel tracked",
)  # fmt: skip
add_study(
    "linearization", linearization_table, LinearizationConfig(),
    full=LinearizationConfig(widths=WIDTHS_FULL, seeds=SEEDS_FULL),
    title="The true against the linearized network, trained side by side",
)  # fmt: skip
add_study(
    "trajectories", trajectory_table,
    LinearizationConfig(widths=(64, 1024), seeds=(0,), datasets=("synthetic",), trace_points=1),
    full=LinearizationConfig(widths=(64, 1024, 4096), seeds=(0,), datasets=("synthetic",), trace_points=1),
    title="Outputs in function space: true, linearized and closed form",
)  # fmt: skip
add_study(
    "separation", separation_table, SeparationConfig(),
    full=SeparationConfig(lengths=(2, 4, 8, 16, 32), deltas=(0.0125, 0.025, 0.05, 0.1, 0.2, 0.4),
                          ns=(4, 8, 16, 32, 64), seeds=(0, 1, 2), width=4096),
    title="lambda_min against the separation delta, the length L and the sample count n",
)  # fmt: skip
add_study(
    "convergence", convergence_table, ConvergenceConfig(),
    full=ConvergenceConfig(widths=(*WIDTHS_FULL, 8192), seeds=SEEDS_FULL),
    title="The empirical kernel against its infinite-width limit, per activation",
)  # fmt: skip
add_study(
    "conditioning", conditioning_table, ConditioningConfig(),
    full=ConditioningConfig(lengths=(2, 4, 8, 16, 32, 64), seeds=(0, 1, 2), width=4096),
    title="Conditioning of the kernel against L per activation",
)  # fmt: skip

add_figure(
    "fig1_kernel_spectrum", "kernel_spectrum", spectrum_figure, fits=lambda_min_numbers,
    title="The spectrum of K₀ and λ_min(K₀)/m against width",
    caption="""Left: every eigenvalue of the empirical kernel K₀/m at initialization (synthetic data, band =
    range over seeds), one curve per width m, and the infinite-width limit's (dashed). Middle: the
    smallest eigenvalue λ_min(K₀)/m against m for the synthetic data (first tokens δ = 0.5 apart) and
    for digits 3 vs 8 (first tokens only about 0.05–0.08 apart), the limit as dashed lines. Right: the
    fraction of the squared label norm in the limit kernel's eigendirections up to each eigenvalue, for
    the data's labels and for the same labels permuted. The paper's convergence proof rests on a
    gradient lower bound at initialization, ‖∇f‖² ≥ Ω(δm/poly(n, L))·f, that is λ_min(K₀) of order δm
    for δ-separated data. Tested: λ_min is positive at every width, K₀/m levels off at its limit as m
    grows (slope against width near 0 in the table), and the less separated digits data have a much
    smaller λ_min.""",
)  # fmt: skip
add_figure(
    "fig2_gd_loss_curves", "width_training", loss_curves_figure, fits=loss_rate_numbers,
    title="GD loss curves across widths",
    caption="""Training loss of full-batch GD at η = 1/λ_max(K₀) against the step, median over seeds, one
    curve per width. The dashed lines have the slope of the slowest linearized mode,
    2 log(1 − η λ_min(K₀)). Tested: the paper's main theorem, that GD on a wide RNN converges to zero
    loss at a linear rate (a straight line on the log axis) set by λ_min of the kernel. The fitted
    slopes are steeper than the dashed ones because faster modes still contribute: the λ_min rate is a
    bound that the runs beat (ratio fitted/predicted ≥ 1 in the table).""",
)  # fmt: skip
add_figure(
    "fig3_movement_vs_width", "width_training", movement_figure, fits=movement_fits,
    title="Kernel drift and weight movement against width",
    caption="""The relative kernel drift ‖K_T − K₀‖_F/‖K₀‖_F and the weight movement ‖W_T − W₀‖_F at the
    end of training against width, log-log, all seeds as points, with fitted power laws and 95%
    intervals. Tested: the paper's over-parameterization argument, that training stays in a ball of
    radius ω/√m around initialization where the network is nearly linear, so both shrink like a power
    of m (theory.md §5 expects −1/2).""",
)  # fmt: skip
add_figure(
    "fig4_true_vs_linearized_loss", "linearization", loss_comparison_figure,
    title="True against linearized training",
    caption="""Training loss of the true RNN (solid) and of its first-order Taylor expansion around
    initialization trained with the same GD (dashed), for the smallest, a middle and the largest
    width, medians over seeds, one panel per dataset. Tested: the paper's semi-smoothness result, that
    near initialization the first-order term describes f, so a wide RNN trains like its linearization:
    the curves part at small m and coincide as m grows.""",
)  # fmt: skip
add_figure(
    "fig5_linearization_gap_vs_width", "linearization", gap_figure, fits=gap_fits,
    title="The gap between the true and the linearized network against width",
    caption="""End-of-training distance ‖f_true − f_lin‖ between the true and linearized outputs on train
    and test sequences, the kernel drift and the weight movement against width, log-log, seeds as
    points, per dataset, with fitted slopes and 95% intervals. Tested: the size of the paper's Taylor
    remainder, smaller than the first-order term by a power of the perturbation radius; theory.md §5
    expects every quantity to fall like m^(−1/2).""",
)  # fmt: skip
add_figure(
    "fig6_function_space_trajectories", "trajectories", trajectory_figure, fits=trajectory_numbers,
    title="Trajectories in function space",
    caption="""One train and one test output during training at each traced width: the true network, the
    trained linearized model and the closed form f_t = y + (I − ηK₀)^t (f₀ − y) (test points through
    K(x, X)). Tested: that training in the kernel regime is the linear dynamics of K₀. The closed form
    lies on the linearized curve (the table gives the largest difference); the true network leaves it
    at small width and follows it at large width.""",
)  # fmt: skip
add_figure(
    "fig7_lambda_min_heatmaps", "separation", separation_figure, fits=separation_numbers,
    title="λ_min against the separation δ, the length L and the sample count n",
    caption="""log₁₀ λ_min(K)/m, mean over seeds, for synthetic sequences whose first tokens are exactly δ
    apart and whose later tokens are shared (the case the paper's bound is built on), over (L, δ) and
    over (n, L), and for n digits read as their first L rows, over (n, L); the empirical kernel at
    finite width on the left, the infinite-width limit on the right. Tested: the
    paper's claim that the width and the number of steps needed are polynomial in n, L and 1/δ,
    through λ_min: it should fall polynomially, not exponentially, in δ, n and L. The table gives the
    log-log slope of λ_min against δ at each L.""",
)  # fmt: skip
add_figure(
    "fig8_limit_convergence", "convergence", convergence_figure, fits=convergence_fits,
    title="The empirical kernel converges to its infinite-width limit",
    caption="""Relative Frobenius distance between the empirical kernel K/m and the exact infinite-width
    kernel against width, log-log, per activation (relu and linear in the paper's parameterization,
    erf and tanh in the standard one, σ_w² = 1), seeds as points, with fitted slopes. Tested: the
    concentration of the kernel at random initialization that the paper's analysis relies on (and
    Tensor Programs II makes exact for weight-tied RNNs): the error should fall like m^(−1/2).""",
)  # fmt: skip
add_figure(
    "fig9_conditioning_vs_length", "conditioning", conditioning_figure, fits=conditioning_numbers,
    title="Conditioning against L per activation",
    caption="""Condition number λ_max/λ_min of the kernel against the sequence length L at the paper's
    variances (σ_w² = σ_u² = 2), per activation: the limit as lines, the empirical kernel at finite
    width dotted, one panel per parameterization, medians over seeds (the table: the limit's). Tested:
    the paper's forward and backward stability of ReLU RNNs (no exponential growth in L), which keeps
    every bound polynomial in L: relu's condition number grows polynomially with L, while the linear
    RNN's kernel is ill-conditioned from the start and becomes singular.""",
)  # fmt: skip

add_study(
    "forward_stability", forward_table, ForwardConfig(),
    full=ForwardConfig(widths=(64, 256, 1024, 4096, 16384), seeds=SEEDS_FULL, length=64),
    title="Forward stability: hidden-state norms against the step",
)  # fmt: skip
add_study(
    "backward_stability", backward_table, BackwardConfig(),
    full=BackwardConfig(widths=(256, 1024, 4096, 8192), product_widths=(512, 2048), seeds=SEEDS_FULL, length=32),
    title="Backward stability: backward-product norms against the distance l - a",
)  # fmt: skip
add_study(
    "perturbation", perturbation_table, PerturbationConfig(),
    full=PerturbationConfig(widths=(128, 512, 2048), seeds=(0, 1, 2), ascent_steps=10),
    title="Perturbations of size omega: hidden states, sign flips, first-order error",
)  # fmt: skip
add_study(
    "training_probes", training_probe_table, TrainingProbeConfig(),
    full=TrainingProbeConfig(width=2048, seeds=(0, 1, 2), steps=1000, kernel_every=50),
    title="The gradient lower bound and sign flips along GD and SGD",
)  # fmt: skip

add_figure(
    "fig10_forward_stability", "forward_stability", forward_figure, fits=forward_numbers,
    title="Forward stability: ‖h_l‖ against the step",
    caption="""The norm of the hidden state ‖h_l‖ at initialization against the step l (the paper's data,
    unit tokens), per activation (columns) at the paper's variance σ_w² = 2 (top) and at σ_w² = 1
    (bottom): the median over seeds per width with the range over seeds as a band, and the exact
    infinite-width value (dashed; in the paper's 1/m scaling tanh and erf act as linear maps with gain
    φ'(0)). Tested: the paper's forward stability, that a ReLU RNN's hidden states neither explode nor
    vanish (‖h_l‖ ≤ poly(L)): relu's limit is ‖h_l‖² = l at σ_w² = 2, a polynomial, and the finite widths
    reach it as m grows, with a wide spread over seeds at small m; the linear RNN grows like 2^(l/2), and
    tanh and erf follow it until their coordinates reach O(1), where they saturate at a level that grows
    like √m. The table gives ‖h_L‖ at the last step.""",
)  # fmt: skip
add_figure(
    "fig11_backward_stability", "backward_stability", backward_figure, fits=backward_numbers,
    title="Backward stability: ‖B D_l W ⋯ D_a W‖₂ against l − a",
    caption="""The spectral norm of the backward products ‖B D_l W ⋯ D_a W‖₂ divided by √(m/d) against the
    distance l − a (mean over sequences and l), per activation and width, with the exact infinite-width
    value (dashed), at σ_w² = 2; last panel: the intermediate-layer products ‖D_l W ⋯ D_2 W‖₂ on one
    sequence, computed matrix-free by Lanczos (never forming the m × m product). Tested: the paper's
    backward stability, ‖B D_l W ⋯ D_a W‖ ≤ O(√(m/d)) poly(L): for relu the normalized norm is a flat
    line at 1 in the limit and stays near 1 at every width (the intermediate products grow slowly,
    polynomially), while a linear RNN's grows like 2^((l−a+1)/2) at every width, and tanh and erf
    follow it as far as their saturation allows. The table gives the values at the largest distance.""",
)  # fmt: skip
add_figure(
    "fig12_perturbation", "perturbation", perturbation_figure, fits=perturbation_fits,
    title="Perturbations of size ω at initialization",
    caption="""W → W + Δ with ‖Δ‖₂ = ω/√m, for a random Gaussian direction, the gradient (descent)
    direction, and an adversarial direction found by projected ascent on the output change, against ω
    on log-log axes: the largest hidden-state change max_l ‖h'_l − h_l‖, the fraction of ReLU signs
    flipped ‖D' − D‖₀/m (steps l ≥ 2), and the first-order Taylor error of the outputs relative to the
    first-order term. Top: the three directions at the largest width; bottom: the adversarial direction
    per width; fitted exponents in the legends, the paper's (1, 2/3 and 1/3) as grey dotted guides.
    Tested: the paper's perturbation lemmas: hidden states move O(ω), O(ω^(2/3) m) signs flip, and the
    Taylor error is smaller than the first-order term by a factor ω^(1/3) (semi-smoothness). The paper's
    exponents are worst-case bounds; the table gives the measured ones with 95% intervals.""",
)  # fmt: skip
add_figure(
    "fig13_gradient_bound", "training_probes", gradient_bound_figure, fits=gradient_bound_numbers,
    title="The gradient lower bound along GD and SGD",
    caption="""Along full-batch GD (left) and SGD with one sample per step (right) on sequences whose first
    tokens are exactly δ apart (later tokens shared), ‖∇f(W_t)‖²_F/(f(W_t) m) (solid) beside
    2λ_min(K_t)/m (dashed), which bounds it from below since ‖∇f‖² = rᵀK r ≥ 2λ_min f; medians over seeds.
    Tested: the paper's gradient lower bound ‖∇f(W)‖² ≥ Ω(δ m/poly(n, d, L)) f(W) near initialization,
    the engine of its linear convergence: the ratio stays above the bound along the runs, and both fall
    with the separation δ. The table gives λ_min(K₀)/m, the smallest ratio seen and how far the loss fell.""",
)  # fmt: skip
add_figure(
    "fig14_sign_flips_in_training", "training_probes", sign_flip_figure, fits=sign_flip_numbers,
    title="ReLU sign flips during training",
    caption="""The fraction of ReLU activation patterns (steps l ≥ 2) that changed since initialization
    along the same GD and SGD runs, against the step (left) and against the distance travelled
    ω_t = √m‖W_t − W₀‖₂ (right), beside the fraction that a random perturbation of the initial W of the
    same ω flips (black). Tested: the paper's sign-flip counting, which bounds the flips of any
    perturbation of radius ω by O(ω^(2/3) m): training stays in the small-ω region where few signs flip.
    The table compares the flips at the end of training with a random perturbation of the same ω.""",
)  # fmt: skip


if __name__ == "__main__":  # python -m figures.suite [options] is `ntk-rnn figures [options]`
    import sys

    from ntk_rnn.cli import main

    sys.exit(main(["figures", *sys.argv[1:]]))
