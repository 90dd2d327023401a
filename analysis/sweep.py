"""Resumable sweeps: each unit of a study is computed once and cached as its own atomic CSV file.

A unit's file name hashes the study name, the config without the fields that only list the units
(the sweep axes, e.g. widths and seeds), the unit's parameters and the source code of ntk_rnn and
analysis. An edit to the code or to any other config field invalidates the cache; a sweep that was
killed halfway resumes at the first missing unit; and a sweep extended by more widths or seeds
reuses the units it already has. Inside `with recomputing():` every unit is computed afresh and its
file overwritten (what `ntk-rnn figures --force` does). Inside `with interruptible():` SIGINT and SIGTERM
stop a sweep between units even when their KeyboardInterrupt is lost (see interruptible).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ntk_rnn.storage import read_table, write_table

PACKAGE_DIRS = ("ntk_rnn", "analysis")
_RECOMPUTE = contextvars.ContextVar("recompute_units", default=False)
_STOP = threading.Event()


@contextlib.contextmanager
def recomputing() -> Iterator[None]:
    """Within this block run_sweep ignores cached units: it computes each one again and overwrites its file."""
    token = _RECOMPUTE.set(True)
    try:
        yield
    finally:
        _RECOMPUTE.reset(token)


def _stop(signum: int, frame) -> None:
    _STOP.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within this block SIGINT and SIGTERM raise KeyboardInterrupt, and stop_if_interrupted() raises it again.

    Python runs a signal handler between bytecodes of whatever code is running: when that is a finalizer
    (__del__, a weakref callback), its exception is printed and dropped, and the run would go on. The flag
    set here makes the next unit boundary raise it instead. A signal that is ignored stays ignored. Main
    thread only (signal.signal).
    """
    _STOP.clear()
    ignored = signal.SIG_IGN  # e.g. SIGINT in a shell's background job: left ignored
    signals = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is not ignored]
    previous = {sig: signal.signal(sig, _stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _STOP.clear()


def stop_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a signal arrived inside interruptible() (a no-op outside it)."""
    if _STOP.is_set():
        raise KeyboardInterrupt


@cache
def code_version() -> str:
    """Hash of the Python sources that produce the tables (12 hex digits)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in PACKAGE_DIRS:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_key(**fields) -> str:
    """The cache key of a result (16 hex digits): a hash of the fields (JSON, sorted keys) and code_version().
    Every cached file of the project, a sweep's unit and the main job's study tables, is named by it."""
    payload = json.dumps({**fields, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def unit_key(study: str, config, unit: dict, axes: Sequence[str] = ()) -> str:
    """Cache key of one unit: the study, its config without the sweep axes, and the unit's fields."""
    fixed = {k: v for k, v in dataclasses.asdict(config).items() if k not in axes}
    return cache_key(study=study, config=fixed, unit=unit)


def run_sweep(
    study: str,
    config,
    units: Sequence[dict],
    compute: Callable[[dict], pd.DataFrame],
    cache_dir: str | Path | None = None,
    progress: bool = True,
    axes: Sequence[str] = (),
) -> pd.DataFrame:
    """Concatenate compute(unit) over units, with the unit's fields prepended as columns.

    With cache_dir, finished units are read back instead of recomputed. axes names the config
    fields that only enumerate the units; they are left out of the cache key.
    """
    tables = []
    for unit in tqdm(units, desc=study, disable=not progress, leave=False):
        stop_if_interrupted()
        path = None if cache_dir is None else Path(cache_dir) / study / f"{unit_key(study, config, unit, axes)}.csv"
        if path is not None and path.exists() and not _RECOMPUTE.get():
            table = read_table(path)
        else:
            table = compute(unit)
            for name, value in reversed(unit.items()):
                table.insert(0, name, value)
            if path is not None:
                write_table(table, path)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)
