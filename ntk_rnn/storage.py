"""Atomic result files: tidy CSV tables and JSON records with the environment they came from."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd

RECORDED_PACKAGES = ("ntk-rnn", "jax", "jaxlib", "numpy", "scipy", "optax", "pandas", "matplotlib", "seaborn")


TEMPORARY_SUFFIX = ".tmp"  # atomic_write's temporaries are named .NAME.<8 random characters>.tmp


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], binary: bool = False) -> Path:
    """Call write(handle) on a temporary file in path's directory (created if missing), then rename it
    into place: readers see the old file or the whole new one, never a partial one. Text handles are
    UTF-8 with newline=""; binary=True gives a bytes handle (np.savez, matplotlib's savefig)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    options = {"mode": "wb"} if binary else {"mode": "w", "encoding": "utf-8", "newline": ""}
    try:
        with os.fdopen(fd, **options) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Save a tidy table as CSV, atomically."""
    return atomic_write(path, lambda handle: table.to_csv(handle, index=False))


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A table written by write_table, floats read back exactly (pandas' round-trip parser)."""
    return pd.read_csv(path, float_precision="round_trip")


def write_json(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save a JSON record, atomically."""
    return atomic_write(path, lambda handle: json.dump(record, handle, indent=2, sort_keys=True, default=str))


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Save a text file (e.g. an HTML report), atomically."""
    return atomic_write(path, lambda handle: handle.write(text))


def environment() -> dict[str, Any]:
    """Package versions, machine and time, for the record that goes beside every table."""
    import jax

    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "packages": versions,
        "python": platform.python_version(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "jax_devices": [str(d) for d in jax.devices()],
        },
        "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
