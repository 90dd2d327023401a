"""Atomic result files: a failed write leaves the old file; tables read back exactly."""

import json

import numpy as np
import pandas as pd
import pytest

from ntk_rnn.storage import atomic_write, read_table, write_json, write_table


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "t.csv"
    write_table(pd.DataFrame({"a": [1]}), path)

    class Boom(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_table(Boom({"a": [2]}), path)
    assert read_table(path)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]
    write_json({"x": 1}, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": 1}


def test_atomic_write_binary_and_failed_writes_leave_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.npz"
    atomic_write(path, lambda handle: np.savez(handle, v=np.arange(3)), binary=True)
    assert np.load(path)["v"].tolist() == [0, 1, 2]

    def fail(handle):
        handle.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail, binary=True)
    assert np.load(path)["v"].tolist() == [0, 1, 2]
    assert [p.name for p in path.parent.iterdir()] == ["a.npz"]
    assert (path.stat().st_mode & 0o777) == 0o644


def test_tables_read_back_every_float_exactly(tmp_path):
    """A cached study table must equal the one computed: write_table then read_table returns the same
    float64 bits (pandas' default CSV float parser can be off in the last digit)."""
    values = np.random.default_rng(0).normal(size=2000) * 10.0 ** np.random.default_rng(1).integers(-12, 12, 2000)
    table = pd.DataFrame({"name": ["a"] * values.size, "value": values})
    back = read_table(write_table(table, tmp_path / "t.csv"))
    assert (back["value"].to_numpy() == values).all() and list(back["name"]) == list(table["name"])
