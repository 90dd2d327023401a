"""The study-table cache: <cache>/<name>.csv, then <cache>/<name>.study.json (key, config, checksum, time;
written last, so it marks the table finished), an exclusive lock on the cache directory for a run, the sweep
of the temporaries that a killed writer leaves behind, and JAX's persistent compilation cache in <cache>/jax."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import pandas as pd
from jax.experimental.compilation_cache import compilation_cache as jax_compilation_cache

from analysis.sweep import cache_key, code_version
from ntk_rnn.storage import TEMPORARY_SUFFIX, read_table, write_json, write_table

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None

LOCK_NAME = ".suite.lock"
JAX_CACHE_NAME = "jax"
# ntk_rnn.storage.atomic_write names its temporaries .NAME.<mkstemp's 8 characters>.tmp
TEMPORARY = re.compile(rf"^\..+\.[a-z0-9_]{{8}}{re.escape(TEMPORARY_SUFFIX)}$")


class SuiteBusyError(RuntimeError):
    """Another run holds the cache directory."""


def study_key(name: str, config: Any) -> str:
    """Cache key of a study's table (16 hex digits): its name, its full config and the code version."""
    return cache_key(study=name, config=dataclasses.asdict(config))


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def study_paths(cache_dir: Path, name: str) -> tuple[Path, Path]:
    """(table, record) paths of a study in the cache: <name>.csv and <name>.study.json."""
    return cache_dir / f"{name}.csv", cache_dir / f"{name}.study.json"


def cached_study(cache_dir: Path, name: str, key: str) -> tuple[pd.DataFrame, dict] | None:
    """(table, record) when the cache holds this study's table for this key, intact; else None."""
    table_path, record_path = study_paths(cache_dir, name)
    try:
        record = json.loads(record_path.read_text())
        if record.get("key") != key or record.get("sha256") != file_sha256(table_path):
            return None
        return read_table(table_path), record
    except (OSError, ValueError):
        return None


def save_study(cache_dir: Path, name: str, key: str, config: Any, table: pd.DataFrame, seconds: float) -> dict:
    """Write the table, then its record (key, config, checksum, time); the record marks it finished."""
    table_path, record_path = study_paths(cache_dir, name)
    write_table(table, table_path)
    record = {
        "study": name,
        "key": key,
        "code_version": code_version(),
        "config": dataclasses.asdict(config),
        "rows": len(table),
        "seconds": seconds,
        "sha256": file_sha256(table_path),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(record, record_path)
    return record


@contextmanager
def locked(cache_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache directory (created if missing) for the block; the OS releases it
    if the process is killed. Raises SuiteBusyError when another run holds it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(cache_dir / LOCK_NAME, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SuiteBusyError(f"another `ntk-rnn figures` run is using {cache_dir} (lock {handle.name})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_temporaries(cache_dir: Path, out_dir: Path) -> list[Path]:
    """Delete the temporary files that a killed writer leaves behind, in the cache directory and its study
    folders and beside the figures; returns their paths."""
    candidates = [*cache_dir.glob(".*"), *cache_dir.glob("*/.*"), *out_dir.glob(".*")]
    removed = [path for path in candidates if TEMPORARY.match(path.name) and path.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def compilation_cache_settings(cache_dir: Path) -> dict[str, Any]:
    """The JAX options that cache every compiled program in cache_dir/jax, however small or quick to compile."""
    return {
        "jax_compilation_cache_dir": str(cache_dir / JAX_CACHE_NAME),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": -1,  # no size threshold, and none that JAX may pick
    }


@contextmanager
def compilation_cache(cache_dir: Path) -> Iterator[Path]:
    """JAX's persistent compilation cache in cache_dir/jax (created if missing) for the block, so that a later
    run on this machine loads what an earlier one compiled; yields its path. The previous options come back
    after. `JAX_ENABLE_COMPILATION_CACHE=false` still turns it off."""
    settings = compilation_cache_settings(cache_dir)
    path = Path(settings["jax_compilation_cache_dir"])
    path.mkdir(parents=True, exist_ok=True)
    for entry in path.glob("*-cache"):  # JAX never rewrites an entry: drop those that a killed writer left empty
        if entry.stat().st_size == 0:
            entry.unlink(missing_ok=True)
    previous = {name: getattr(jax.config, name) for name in settings}
    # JAX opens its cache once, at the first compilation that looks for it: reset so these options take effect
    jax_compilation_cache.reset_cache()
    for name, value in settings.items():
        jax.config.update(name, value)
    try:
        yield path
    finally:
        for name, value in previous.items():
            jax.config.update(name, value)
        jax_compilation_cache.reset_cache()
