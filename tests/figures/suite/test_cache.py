"""The study-table cache: keys, the lock on the cache directory, stale temporaries, tampered tables; JAX's
persistent compilation cache, shared by runs on one cache directory."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pandas as pd
import pytest

from analysis.kernel_spectrum import SpectrumConfig
from analysis.sweep import cache_key
from figures.suite import SuiteBusyError, run_suite
from figures.suite.cache import (
    TEMPORARY,
    cached_study,
    compilation_cache,
    locked,
    remove_stale_temporaries,
    save_study,
    study_key,
    study_paths,
)
from ntk_rnn.storage import atomic_write, read_table


def test_the_study_key_is_the_sweeps_cache_key_over_the_whole_config():
    config = SpectrumConfig(widths=(8, 16))
    key = study_key("kernel_spectrum", config)
    assert key == cache_key(study="kernel_spectrum", config=dataclasses.asdict(config)) and len(key) == 16
    assert study_key("kernel_spectrum", dataclasses.replace(config, widths=(8,))) != key  # the axes count here
    assert study_key("convergence", config) != key


def test_a_saved_study_is_read_back_only_for_its_key_and_intact(tmp_path):
    config, table = SpectrumConfig(widths=(8,)), pd.DataFrame({"x": [1, 2], "y": [0.5, 0.25]})
    record = save_study(tmp_path, "toy", "k1", config, table, seconds=1.5)
    assert record["rows"] == 2 and record["key"] == "k1" and record["config"] == dataclasses.asdict(config)
    hit = cached_study(tmp_path, "toy", "k1")
    assert hit is not None and hit[0].equals(table) and hit[1]["seconds"] == 1.5
    assert cached_study(tmp_path, "toy", "k2") is None  # another key
    table_path, record_path = study_paths(tmp_path, "toy")
    table_path.write_text("x,y\n1,0.5\n")
    assert cached_study(tmp_path, "toy", "k1") is None  # not the table its record describes
    record_path.unlink()
    assert cached_study(tmp_path, "toy", "k1") is None


def test_a_second_run_on_the_same_cache_is_refused(toy, tmp_path):
    with locked(tmp_path / "cache"), pytest.raises(SuiteBusyError, match="another"):
        run_suite(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    run_suite(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)  # released


def _temporary_name(directory: Path, name: str) -> str:
    """The name atomic_write gives its temporary for directory/name, seen from inside the write."""
    seen = []
    atomic_write(directory / name, lambda handle: seen.extend(p.name for p in directory.iterdir()))
    (temporary,) = [n for n in seen if n.startswith(f".{name}.")]
    return temporary


def test_the_sweeper_takes_what_atomic_write_leaves_and_nothing_else(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    (cache / "alpha").mkdir(parents=True)
    out.mkdir()
    stale = [cache / _temporary_name(cache, "alpha.csv"), cache / "alpha" / _temporary_name(cache / "alpha", "u.csv"),
             out / _temporary_name(out, "fig1.png")]  # fmt: skip
    kept = [cache / ".suite.lock", cache / ".notes", out / ".fig1.png.short.tmp", out / ".fig1.png.ABCDEFGH.tmp",
            cache / "alpha.csv"]  # fmt: skip
    assert all(TEMPORARY.match(path.name) for path in stale)
    for path in stale + kept:
        path.write_text("x")
    assert sorted(remove_stale_temporaries(cache, out)) == sorted(stale)
    assert all(path.exists() for path in kept) and not any(path.exists() for path in stale)


def test_stale_temporaries_are_removed_and_a_tampered_table_is_recomputed(toy, figures_cli, suite_json, tmp_path):
    assert figures_cli() == 0
    cache = tmp_path / "cache"
    (cache / ".alpha.csv.abc123_z.tmp").write_text("half a tab")
    (cache / "alpha" / ".x.csv.d1e2f3g4.tmp").write_text("half")
    (tmp_path / "out" / ".figA_alpha.png.xyz12345.tmp").write_bytes(b"\x89PNG")
    (cache / "alpha.csv").write_text("x,y\n1,999\n")  # no longer the table its record describes
    toy.calls.clear()
    assert figures_cli() == 0
    assert suite_json()["studies"]["alpha"]["status"] == "computed" and toy.calls == []  # from its units
    assert read_table(cache / "alpha.csv")["y"].tolist() == [1.0, 2.0, 3.0]
    assert not [p for p in tmp_path.rglob(".*") if p.name != ".suite.lock"]


# --------------------------------------------------------------------------------------------------
# JAX's persistent compilation cache

REPO = Path(__file__).resolve().parents[3]

# run_suite on one study that jits a small program, then the jax.monitoring events of the run as JSON
TINY_SUITE = """
import dataclasses, json, sys
import jax, jax.numpy as jnp, pandas as pd
from jax import monitoring
from figures.suite.registry import Study
from figures.suite.runner import run_suite

events = []
monitoring.register_event_listener(lambda event, **kwargs: events.append(event))

@dataclasses.dataclass(frozen=True)
class Tiny:
    n: int = 7

def run(config, cache_dir=None, progress=True):
    x = jnp.linspace(0.0, 1.0, config.n)
    return pd.DataFrame({"y": [float(jax.jit(lambda v: jnp.tanh(v) @ jnp.cos(v))(x))]})

result = run_suite(studies={"tiny": Study("tiny", run, Tiny())}, figures={}, cache_dir=sys.argv[1],
                   out_dir=sys.argv[2], progress=False, force=True)
assert result.ok, result
print(json.dumps({e: events.count(e) for e in set(events)}))
"""

REQUESTS, HITS, WRITES = (f"/jax/compilation_cache/{e}" for e in ("compile_requests_use_cache", "cache_hits",
                                                                    "cache_misses"))  # fmt: skip


def _tiny_suite_events(tmp_path: Path) -> dict[str, int]:
    """Counts of the jax.monitoring events of a run of TINY_SUITE on tmp_path/cache, in a fresh process whose
    environment sets no JAX cache option (the suite alone turns the cache on)."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("JAX_") and "CACHE" in k)}
    run = subprocess.run([sys.executable, "-c", TINY_SUITE, str(tmp_path / "cache"), str(tmp_path / "out")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_second_run_loads_every_program_the_first_compiled(tmp_path):
    first = _tiny_suite_events(tmp_path)
    # every program went through the cache, however quick to compile, and was written to it
    assert first.get(REQUESTS, 0) >= 1 and first.get(HITS, 0) == 0 and first.get(WRITES) == first[REQUESTS]
    assert any((tmp_path / "cache" / "jax").glob("*-cache"))
    second = _tiny_suite_events(tmp_path)  # --force: the study runs again, its programs come from the cache
    assert second.get(REQUESTS) == first[REQUESTS] and second.get(HITS) == first[REQUESTS]
    assert second.get(WRITES, 0) == 0


def test_the_compilation_cache_options_hold_for_the_block_only(tmp_path):
    before = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
    (tmp_path / "jax").mkdir()
    (tmp_path / "jax" / "jit_f-0123abcd-cache").write_bytes(b"")  # what a writer killed after open leaves
    (tmp_path / "jax" / "jit_g-4567ef01-cache").write_bytes(b"x")
    with compilation_cache(tmp_path) as path:
        assert path == tmp_path / "jax" and jax.config.jax_compilation_cache_dir == str(path)
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
        assert jax.config.jax_persistent_cache_min_entry_size_bytes == -1
        assert sorted(p.name for p in path.iterdir()) == ["jit_g-4567ef01-cache"]
    assert (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs) == before
