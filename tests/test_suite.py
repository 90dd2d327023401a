"""The main job (`ntk-rnn figures`): registry, config overrides, the study cache, failures, the report,
and a real run killed halfway (SIGKILL, then SIGINT) that resumes without redoing finished studies."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from analysis.sweep import run_sweep
from figures import suite
from ntk_rnn import cli
from ntk_rnn.storage import read_table

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------------
# A toy registry: instant studies, so the suite's bookkeeping is tested without JAX work


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    values: tuple[int, ...] = (1, 2, 3)
    scale: float = 1.0
    fail: bool = False


CALLS: list[tuple[str, int]] = []


def _toy_study(name: str):
    def run(config: ToyConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
        def compute(unit: dict) -> pd.DataFrame:
            CALLS.append((name, unit["x"]))
            if config.fail:
                raise RuntimeError(f"toy failure in {name}")
            return pd.DataFrame({"y": [unit["x"] * config.scale]})

        return run_sweep(name, config, [{"x": v} for v in config.values], compute, cache_dir, progress, ("values",))

    return run


def _toy_figure(table: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(table["x"], table["y"], marker="o")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return fig


def _broken_figure(table: pd.DataFrame) -> plt.Figure:
    raise ValueError("this figure cannot be drawn")


@pytest.fixture
def toy_registry(monkeypatch):
    CALLS.clear()
    studies = {
        "alpha": suite.Study("alpha", _toy_study("alpha"), ToyConfig(), ToyConfig(values=(1, 2, 3, 4)), "toy alpha"),
        "beta": suite.Study("beta", _toy_study("beta"), ToyConfig(scale=2.0), title="toy beta"),
    }
    figures = {
        "figA_alpha": suite.FigureSpec("figA_alpha", ("alpha",), _toy_figure, "Alpha against x: a toy caption.",
                                       "Alpha", fits=lambda t: {"y": {"slope": 1.0, "ci95": [0.5, 1.5]}}),
        "figB_beta": suite.FigureSpec("figB_beta", ("beta",), _toy_figure, "Beta against x.", "Beta"),
        "figAB_both": suite.FigureSpec("figAB_both", ("alpha", "beta"), lambda a, b: _toy_figure(pd.concat([a, b])),
                                       "Both tables.", "Both"),
    }  # fmt: skip
    monkeypatch.setattr(suite, "STUDIES", studies)
    monkeypatch.setattr(suite, "FIGURES", figures)
    return studies, figures


def _figures_cli(tmp_path: Path, *args: str) -> int:
    return cli.main(["figures", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--no-progress",
                     *args])  # fmt: skip


def _suite_json(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "cache" / "suite.json").read_text())


def test_registry_holds_the_main_job_and_refuses_duplicates():
    assert list(suite.STUDIES)[:7] == ["kernel_spectrum", "width_training", "linearization", "trajectories",
                                       "separation", "convergence", "conditioning"]  # fmt: skip
    assert len(suite.FIGURES) >= 9 and all(f.caption and f.title for f in suite.FIGURES.values())
    assert all("Tested" in f.caption for f in suite.FIGURES.values())
    assert cli.suite_profiles() == suite.PROFILES
    with pytest.raises(ValueError, match="taken"):
        suite.add_study("kernel_spectrum", suite.spectrum_table, suite.SpectrumConfig())
    with pytest.raises(ValueError, match="unknown studies"):
        suite.add_figure("figX", "no_such_study", _toy_figure, "caption")
    full = suite.effective_configs("full")
    assert max(full["kernel_spectrum"].widths) >= 4096 and len(full["linearization"].seeds) > 3


def test_config_overrides_are_checked_and_named(tmp_path, capsys):
    configs = suite.effective_configs("quick", {"width_training": {"widths": [8, 16], "lr_scale": 1, "steps": 5}})
    wt = configs["width_training"]
    assert wt.widths == (8, 16) and wt.lr_scale == 1.0 and isinstance(wt.lr_scale, float) and wt.steps == 5
    assert configs["kernel_spectrum"] == suite.STUDIES["kernel_spectrum"].quick
    bad = {
        "[no_such_study]\nn = 1\n": "unknown study [no_such_study]",
        "[width_training]\nwidht = 3\n": "[width_training] has no field 'widht'",
        '[width_training]\nwidths = [8, "16"]\n': "[width_training].widths[1] must be an integer",
        "[width_training]\nsteps = true\n": "[width_training].steps must be an integer",
        "[width_training]\ndataset = 3\n": "[width_training].dataset must be a string",
        "[width_training]\nbatch_size = 1.5\n": "[width_training].batch_size must be int",
        "[separation]\nshared_tail = 1\n": "[separation].shared_tail must be true or false",
        "width_training = 3\n": "[width_training] must be a table",
        "[width_training\n": "invalid TOML",
    }
    for text, message in bad.items():
        path = tmp_path / "bad.toml"
        path.write_text(text)
        assert _figures_cli(tmp_path, "--config", str(path)) == 2
        err = capsys.readouterr().err
        assert message in err and str(path) in err, (text, err)
    assert _figures_cli(tmp_path, "--config", str(tmp_path / "missing.toml")) == 2
    assert "missing.toml" in capsys.readouterr().err
    assert _figures_cli(tmp_path, "--only", "kernel_spectrum,nope") == 2
    assert "--only: unknown study 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # nothing ran


@pytest.mark.parametrize("profile", suite.PROFILES)
def test_print_config_reads_back_to_the_same_configs(profile, tmp_path, capsys):
    override = tmp_path / "o.toml"
    override.write_text("[convergence]\nwidths = [32, 64]\nsigma_w2 = 2\n")
    assert _figures_cli(tmp_path, "--profile", profile, "--config", str(override), "--print-config") == 0
    printed = tomllib.loads(capsys.readouterr().out)
    expected = suite.effective_configs(profile, {"convergence": {"widths": [32, 64], "sigma_w2": 2.0}})
    assert suite.effective_configs(profile, printed) == expected
    assert expected["convergence"].widths == (32, 64)


def test_studies_are_cached_forced_and_selected(toy_registry, tmp_path, capsys):
    assert _figures_cli(tmp_path) == 0
    assert sorted(CALLS) == [("alpha", 1), ("alpha", 2), ("alpha", 3), ("beta", 1), ("beta", 2), ("beta", 3)]
    out = capsys.readouterr().out
    assert re.search(r"alpha\s+computed\s+3", out) and "total" in out and "ok" in out
    record = _suite_json(tmp_path)
    assert record["studies"]["alpha"]["status"] == "computed"
    assert record["figures"]["figAB_both"]["status"] == "rendered"

    CALLS.clear()
    assert _figures_cli(tmp_path) == 0  # everything cached
    assert CALLS == []
    assert {s["status"] for s in _suite_json(tmp_path)["studies"].values()} == {"cached"}
    assert re.search(r"alpha\s+cached\s+3", capsys.readouterr().out)

    assert _figures_cli(tmp_path, "--force", "--only", "alpha") == 0  # units recomputed too, beta untouched
    assert sorted(CALLS) == [("alpha", 1), ("alpha", 2), ("alpha", 3)]
    studies = _suite_json(tmp_path)["studies"]
    assert studies["alpha"]["status"] == "computed" and studies["beta"]["status"] == "cached"

    CALLS.clear()
    config = tmp_path / "c.toml"
    config.write_text("[beta]\nscale = 3.0\n[alpha]\nvalues = [1, 2, 3, 4]\n")
    assert _figures_cli(tmp_path, "--config", str(config), "--only", "alpha") == 0
    assert CALLS == [("alpha", 4)]  # only the new unit; beta's table is stale and beta not selected
    record = _suite_json(tmp_path)
    assert record["studies"]["beta"]["status"] == "not run" and record["figures"]["figB_beta"]["status"] == "skipped"
    assert record["configs"]["alpha"]["values"] == [1, 2, 3, 4] and record["config_source"] == str(config)
    assert record["figures"]["figA_alpha"]["status"] == "rendered"
    assert "beta" in capsys.readouterr().out

    CALLS.clear()
    assert _figures_cli(tmp_path, "--profile", "full") == 0  # alpha's full config = the values above
    assert CALLS == []  # beta has no full config: its quick one, whose table is still cached
    assert {s["status"] for s in _suite_json(tmp_path)["studies"].values()} == {"cached"}


def test_a_failing_study_is_reported_and_the_run_goes_on(toy_registry, tmp_path, capsys, monkeypatch):
    _, figures = toy_registry
    figures["figA_broken"] = suite.FigureSpec("figA_broken", ("alpha",), _broken_figure, "Never drawn.", "Broken")
    config = tmp_path / "c.toml"
    config.write_text("[beta]\nfail = true\n")
    assert _figures_cli(tmp_path, "--config", str(config)) == 1
    out = capsys.readouterr().out
    assert re.search(r"beta\s+failed.*RuntimeError: toy failure in beta", out)
    assert "FAILED: beta, figA_broken" in out and "figA_broken: failed (ValueError: this figure cannot be drawn)" in out
    record = _suite_json(tmp_path)
    assert record["ok"] is False and record["studies"]["alpha"]["status"] == "computed"
    assert "Traceback" in record["studies"]["beta"]["traceback"]
    statuses = {name: f["status"] for name, f in record["figures"].items()}
    assert statuses == {"figA_alpha": "rendered", "figB_beta": "skipped", "figAB_both": "skipped",
                        "figA_broken": "failed"}  # fmt: skip
    report = (tmp_path / "out" / "report.html").read_text()
    assert "RuntimeError: toy failure in beta" in report and "this figure cannot be drawn" in report
    assert not (tmp_path / "cache" / "beta.study.json").exists()
    config.write_text("")  # fixed: beta runs, alpha comes from the cache
    CALLS.clear()
    del figures["figA_broken"]
    assert _figures_cli(tmp_path, "--config", str(config)) == 0
    assert sorted(CALLS) == [("beta", 1), ("beta", 2), ("beta", 3)]


def test_an_interrupt_lost_in_a_figure_stops_the_run_at_the_next_one(toy_registry, tmp_path, capsys, lost_interrupt):
    _, figures = toy_registry

    def interrupted_figure(table: pd.DataFrame) -> plt.Figure:
        lost_interrupt()
        return _toy_figure(table)

    figures["figA_alpha"] = dataclasses.replace(figures["figA_alpha"], render=interrupted_figure)
    assert _figures_cli(tmp_path) == 130
    assert "interrupted" in capsys.readouterr().err and lost_interrupt.dropped == [KeyboardInterrupt]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["figA_alpha.pdf", "figA_alpha.png"]
    assert not (tmp_path / "cache" / "suite.json").exists()  # no report, no record of a finished run
    figures["figA_alpha"] = dataclasses.replace(figures["figA_alpha"], render=_toy_figure)
    CALLS.clear()
    assert _figures_cli(tmp_path) == 0 and CALLS == []  # the studies were cached
    assert (tmp_path / "out" / "report.html").exists()


def test_report_is_self_contained(toy_registry, tmp_path):
    assert _figures_cli(tmp_path) == 0
    report = (tmp_path / "out" / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', report)
    assert len(images) == 3 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert not re.search(r'(src|href)="(https?:|file:|/)', report)  # nothing loaded from elsewhere
    for text in ("Alpha against x: a toy caption.", "Fitted numbers", "ci_low", "[alpha]", "values = [1, 2, 3]",
                 "scale = 2.0", "jaxlib", "cpu_count", "Profile <b>quick</b>", "toy alpha", "seeds"):  # fmt: skip
        assert text in report, text
    assert report.rstrip().endswith("</html>")
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []


def test_a_second_run_on_the_same_cache_is_refused(toy_registry, tmp_path):
    with suite._locked(tmp_path / "cache"), pytest.raises(suite.SuiteBusyError, match="another"):
        suite.run_suite(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    suite.run_suite(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)  # released


def test_stale_temporaries_are_removed_and_a_tampered_table_is_recomputed(toy_registry, tmp_path):
    assert _figures_cli(tmp_path) == 0
    cache = tmp_path / "cache"
    (cache / ".alpha.csv.abc123_z.tmp").write_text("half a tab")
    (cache / "alpha" / ".x.csv.d1e2f3g4.tmp").write_text("half")
    (tmp_path / "out" / ".figA_alpha.xyz12345.png").write_bytes(b"\x89PNG")
    (cache / "alpha.csv").write_text("x,y\n1,999\n")  # no longer the table its record describes
    CALLS.clear()
    assert _figures_cli(tmp_path) == 0
    assert _suite_json(tmp_path)["studies"]["alpha"]["status"] == "computed" and CALLS == []  # from its units
    assert read_table(cache / "alpha.csv")["y"].tolist() == [1.0, 2.0, 3.0]
    assert not [p for p in tmp_path.rglob(".*") if p.name != ".suite.lock"]


# --------------------------------------------------------------------------------------------------
# The real suite in a subprocess, killed halfway

MICRO = """
[kernel_spectrum]
widths = [8]
seeds = [0]
datasets = ["synthetic"]
n = 2
length = 3
input_dim = 3

[width_training]
widths = [8]
seeds = [0]
n = 2
length = 3
input_dim = 3
steps = 4
record_every = 2
kernel_every = 2

[linearization]
widths = [8]
seeds = [0]
datasets = ["synthetic"]
n_train = 2
n_test = 1
length = 3
input_dim = 3
steps = 4
record_every = 2

[trajectories]
widths = [8]
n_train = 2
n_test = 1
length = 3
input_dim = 3
steps = 4
record_every = 2

[separation]
lengths = [2]
deltas = [0.4]
ns = [2]
digits_lengths = []
seeds = [0]
n = 2
input_dim = 3
width = 8

[convergence]
widths = [8]
seeds = [0]
activations = ["relu"]
n = 2
length = 2
input_dim = 3

[conditioning]
lengths = [2]
activations = ["relu"]
parameterizations = ["paper"]
seeds = [0]
n = 2
input_dim = 3
width = 8

[forward_stability]
activations = ["relu"]
sigma_w2s = [2.0]
widths = [8]
seeds = [0]
n = 2
length = 3
input_dim = 3

[backward_stability]
activations = ["relu"]
widths = [8]
product_widths = [8]
seeds = [0]
n = 2
length = 3
input_dim = 3

[perturbation]
kinds = ["random", "adversarial"]
widths = [8]
omegas = [0.1, 0.5, 2.0]
seeds = [0]
n = 2
length = 3
input_dim = 3
ascent_steps = 1

[training_probes]
deltas = [0.4]
seeds = [0]
width = 8
n = 2
length = 3
input_dim = 3
steps = 4
record_every = 2
kernel_every = 2
omegas = [0.5, 2.0]
"""


def _start(tmp_path: Path, log: str) -> subprocess.Popen:
    """`ntk-rnn figures` on the micro config in a child process. A shell may start background jobs with SIGINT
    ignored, which a child inherits: the child reinstates Python's handler (a fork hook would warn under JAX)."""
    argv = ["figures", "--config", str(tmp_path / "micro.toml"), "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"from ntk_rnn.cli import main; sys.exit(main({argv!r}))")  # fmt: skip
    # the runs share compiled XLA programs through JAX's persistent cache (what a killed run redoes is compiled)
    env = os.environ | {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla"),
                        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2"}  # fmt: skip
    with open(tmp_path / f"{log}.out", "w") as out, open(tmp_path / f"{log}.err", "w") as err:
        return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=out, stderr=err, env=env)


def _finished_studies(cache: Path) -> set[str]:
    return {p.name.removesuffix(".study.json") for p in cache.glob("*.study.json")}


def _wait_for_new_record(proc: subprocess.Popen, cache: Path, before: set[str], timeout: float = 240) -> str:
    """The name of a study that proc finished, beyond those in before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = _finished_studies(cache) - before
        if new:
            return new.pop()
        assert proc.poll() is None, f"the run ended early with status {proc.returncode}"
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no study finished in time")


def _final_files_are_intact(tmp_path: Path) -> None:
    for path in (tmp_path / "cache").rglob("*.csv"):
        if not path.name.startswith("."):
            read_table(path)  # parses
    for path in (tmp_path / "cache").glob("*.study.json"):
        record = json.loads(path.read_text())
        assert record["sha256"] == suite._sha256(path.with_name(f"{record['study']}.csv"))


def test_a_killed_run_resumes_without_redoing_finished_studies(tmp_path):
    (tmp_path / "micro.toml").write_text(MICRO)
    cache = tmp_path / "cache"

    first = _start(tmp_path, "run")
    _wait_for_new_record(first, cache, set())
    first.send_signal(signal.SIGKILL)
    assert first.wait(30) == -signal.SIGKILL
    finished = _finished_studies(cache)  # another may have finished before the kill landed
    _final_files_are_intact(tmp_path)
    units = {p: p.stat().st_mtime_ns for p in cache.glob("*/*.csv")}

    second = _start(tmp_path, "run2")
    finished.add(_wait_for_new_record(second, cache, finished))  # so the signal lands inside the run
    second.send_signal(signal.SIGINT)
    # Python raises KeyboardInterrupt between bytecodes: an XLA compilation in progress delays it (by over a
    # minute on a loaded 2-core machine), so the allowance is generous; what is checked is the exit status
    assert second.wait(240) == 130, (tmp_path / "run2.err").read_text()[-4000:]
    assert "interrupted" in (tmp_path / "run2.err").read_text()
    _final_files_are_intact(tmp_path)
    assert not [p for p in tmp_path.rglob(".*.tmp")]  # SIGINT: no partial file left

    third = _start(tmp_path, "run3")
    assert third.wait(240) == 0, (tmp_path / "run3.err").read_text()
    record = json.loads((cache / "suite.json").read_text())
    statuses = {name: s["status"] for name, s in record["studies"].items()}
    assert {statuses[name] for name in finished} == {"cached"} and len(finished) >= 2
    assert set(statuses.values()) <= {"cached", "computed"}
    assert all(re.search(rf"{name}\s+cached", (tmp_path / "run3.out").read_text()) for name in finished)
    assert {f["status"] for f in record["figures"].values()} == {"rendered"}
    assert all(units[p] == p.stat().st_mtime_ns for p in units)  # units finished before the kill were not redone
    _final_files_are_intact(tmp_path)
    assert not [p for p in tmp_path.rglob(".*") if p.name != ".suite.lock"]
    report = (tmp_path / "out" / "report.html").read_text()
    assert report.count('src="data:image/png;base64,') == len(record["figures"])
    for name in record["figures"]:
        for ext in ("png", "pdf"):
            assert (tmp_path / "out" / f"{name}.{ext}").stat().st_size > 1000
    assert os.access(tmp_path / "out" / "report.html", os.R_OK)
