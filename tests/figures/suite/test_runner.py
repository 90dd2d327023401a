"""The runner (run_suite through `ntk-rnn figures`): studies cached, forced and selected, failures recorded,
interrupts, and a real run killed halfway (SIGKILL, then SIGINT) that resumes without redoing finished studies."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from figures.suite.cache import file_sha256
from figures.suite.registry import FigureSpec
from ntk_rnn.storage import read_table

REPO = Path(__file__).resolve().parents[3]


def test_studies_are_cached_forced_and_selected(toy, figures_cli, suite_json, tmp_path, capsys):
    assert figures_cli() == 0
    assert sorted(toy.calls) == [("alpha", 1), ("alpha", 2), ("alpha", 3), ("beta", 1), ("beta", 2), ("beta", 3)]
    out = capsys.readouterr().out
    assert re.search(r"alpha\s+computed\s+3", out) and "total" in out and "ok" in out
    record = suite_json()
    assert record["studies"]["alpha"]["status"] == "computed"
    assert record["figures"]["figAB_both"]["status"] == "rendered"

    toy.calls.clear()
    assert figures_cli() == 0  # everything cached
    assert toy.calls == []
    assert {s["status"] for s in suite_json()["studies"].values()} == {"cached"}
    assert re.search(r"alpha\s+cached\s+3", capsys.readouterr().out)

    assert figures_cli("--force", "--only", "alpha") == 0  # units recomputed too, beta untouched
    assert sorted(toy.calls) == [("alpha", 1), ("alpha", 2), ("alpha", 3)]
    studies = suite_json()["studies"]
    assert studies["alpha"]["status"] == "computed" and studies["beta"]["status"] == "cached"

    toy.calls.clear()
    config = tmp_path / "c.toml"
    config.write_text("[beta]\nscale = 3.0\n[alpha]\nvalues = [1, 2, 3, 4]\n")
    assert figures_cli("--config", str(config), "--only", "alpha") == 0
    assert toy.calls == [("alpha", 4)]  # only the new unit; beta's table is stale and beta not selected
    record = suite_json()
    assert record["studies"]["beta"]["status"] == "not run" and record["figures"]["figB_beta"]["status"] == "skipped"
    assert record["configs"]["alpha"]["values"] == [1, 2, 3, 4] and record["config_source"] == str(config)
    assert record["figures"]["figA_alpha"]["status"] == "rendered"
    assert "beta" in capsys.readouterr().out

    toy.calls.clear()
    assert figures_cli("--profile", "full") == 0  # alpha's full config = the values above
    assert toy.calls == []  # beta has no full config: its quick one, whose table is still cached
    assert {s["status"] for s in suite_json()["studies"].values()} == {"cached"}


def test_a_failing_study_is_reported_and_the_run_goes_on(toy, figures_cli, suite_json, tmp_path, capsys):
    toy.figures["figA_broken"] = FigureSpec("figA_broken", ("alpha",), toy.broken_figure, "Never drawn.", "Broken")
    config = tmp_path / "c.toml"
    config.write_text("[beta]\nfail = true\n")
    assert figures_cli("--config", str(config)) == 1
    out = capsys.readouterr().out
    assert re.search(r"beta\s+failed.*RuntimeError: toy failure in beta", out)
    assert "FAILED: beta, figA_broken" in out and "figA_broken: failed (ValueError: this figure cannot be drawn)" in out
    record = suite_json()
    assert record["ok"] is False and record["studies"]["alpha"]["status"] == "computed"
    assert "Traceback" in record["studies"]["beta"]["traceback"]
    statuses = {name: f["status"] for name, f in record["figures"].items()}
    assert statuses == {"figA_alpha": "rendered", "figB_beta": "skipped", "figAB_both": "skipped",
                        "figA_broken": "failed"}  # fmt: skip
    report = (tmp_path / "out" / "report.html").read_text()
    assert "RuntimeError: toy failure in beta" in report and "this figure cannot be drawn" in report
    assert not (tmp_path / "cache" / "beta.study.json").exists()
    config.write_text("")  # fixed: beta runs, alpha comes from the cache
    toy.calls.clear()
    del toy.figures["figA_broken"]
    assert figures_cli("--config", str(config)) == 0
    assert sorted(toy.calls) == [("beta", 1), ("beta", 2), ("beta", 3)]


def test_an_interrupt_lost_in_a_figure_stops_the_run_at_the_next_one(toy, figures_cli, tmp_path, capsys,
                                                                     lost_interrupt):  # fmt: skip
    def interrupted_figure(table: pd.DataFrame) -> plt.Figure:
        lost_interrupt()
        return toy.figure(table)

    toy.figures["figA_alpha"] = dataclasses.replace(toy.figures["figA_alpha"], render=interrupted_figure)
    assert figures_cli() == 130
    assert "interrupted" in capsys.readouterr().err and lost_interrupt.dropped == [KeyboardInterrupt]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["figA_alpha.pdf", "figA_alpha.png"]
    assert not (tmp_path / "cache" / "suite.json").exists()  # no report, no record of a finished run
    toy.figures["figA_alpha"] = dataclasses.replace(toy.figures["figA_alpha"], render=toy.figure)
    toy.calls.clear()
    assert figures_cli() == 0 and toy.calls == []  # the studies were cached
    assert (tmp_path / "out" / "report.html").exists()


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
product_length = 4
seeds = [0]
n = 2
length = 3
input_dim = 3

[perturbation]
kinds = ["random", "flip"]
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

[cell_conditioning]
models = ["gru"]
seeds = [0]
lengths = [2, 3]
width = 8
n = 2
input_dim = 3
limit_samples = 256

[cell_lazy]
models = ["gru"]
widths = [8]
seeds = [0]
n_train = 2
n_test = 1
length = 3
input_dim = 3
steps = 4

[cell_spread]
models = ["gru"]
widths = [8]
seeds = [0, 1]
n = 2
length = 3
input_dim = 3
limit_samples = 256

[width_fluctuations]
widths = [8]
lengths = [2, 3]
seeds = [0, 1]
ns = [2]
input_dim = 3

[width_requirement]
lengths = [2]
ns = [2]
deltas = [0.5]
train_lengths = [2]
train_ns = [2]
train_deltas = [0.5]
seeds = [0]
input_dim = 3
min_width = 8
cap = 8
train_cap = 8
max_steps = 50

[width_rate]
deltas = [0.3, 0.6]
ns = [2]
seeds = [0]
width = 8
length = 3
input_dim = 3
train_max_steps = 50

[classification]
datasets = ["BasicMotions"]
finite_datasets = []
readouts = ["last"]
sigma_w2s = [1.0]
folds = 2
"""


def _start(tmp_path: Path, log: str) -> subprocess.Popen:
    """`ntk-rnn figures` on the micro config in a child process. A shell may start background jobs with SIGINT
    ignored, which a child inherits: the child reinstates Python's handler (a fork hook would warn under JAX)."""
    argv = ["figures", "--config", str(tmp_path / "micro.toml"), "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache"), "--no-progress"]  # fmt: skip
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"from figures.suite.cli import main; sys.exit(main({argv!r}))")  # fmt: skip
    # the runs share compiled XLA programs through the suite's JAX cache, cache/jax (a killed run's are kept)
    with open(tmp_path / f"{log}.out", "w") as out, open(tmp_path / f"{log}.err", "w") as err:
        return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=out, stderr=err)


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
        assert record["sha256"] == file_sha256(path.with_name(f"{record['study']}.csv"))


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
