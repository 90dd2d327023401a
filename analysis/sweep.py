"""Resumable sweeps: each unit of a study is computed once and cached as its own atomic CSV file.

A unit's file name hashes the study name, the config without the fields that only list the units
(the sweep axes, e.g. widths and seeds), the unit's parameters and the source code of ntk_rnn and
analysis. An edit to the code or to any other config field invalidates the cache; a sweep that was
killed halfway resumes at the first missing unit; and a sweep extended by more widths or seeds
reuses the units it already has. Inside `with recomputing():` every unit is computed afresh and its
file overwritten (what `ntk-rnn figures --force` does).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ntk_rnn.storage import read_table, write_table

PACKAGE_DIRS = ("ntk_rnn", "analysis")
_RECOMPUTE = contextvars.ContextVar("recompute_units", default=False)


@contextlib.contextmanager
def recomputing() -> Iterator[None]:
    """Within this block run_sweep ignores cached units: it computes each one again and overwrites its file."""
    token = _RECOMPUTE.set(True)
    try:
        yield
    finally:
        _RECOMPUTE.reset(token)


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


def unit_key(study: str, config, unit: dict, axes: Sequence[str] = ()) -> str:
    fixed = {k: v for k, v in dataclasses.asdict(config).items() if k not in axes}
    payload = json.dumps(
        {"study": study, "config": fixed, "unit": unit, "code": code_version()},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


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
