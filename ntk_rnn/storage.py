"""Atomic result files: tidy CSV tables and JSON records with the environment they came from."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

RECORDED_PACKAGES = ("ntk-rnn", "jax", "jaxlib", "numpy", "scipy", "optax", "pandas", "matplotlib", "seaborn")


def _atomic_write(path: str | os.PathLike, write) -> Path:
    """Write through a temporary file in the same directory, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
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
    return _atomic_write(path, lambda handle: table.to_csv(handle, index=False))


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(path)


def write_json(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save a JSON record, atomically."""
    return _atomic_write(path, lambda handle: json.dump(record, handle, indent=2, sort_keys=True, default=str))


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Save a text file (e.g. an HTML report), atomically."""
    return _atomic_write(path, lambda handle: handle.write(text))


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
