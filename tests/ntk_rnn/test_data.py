"""Tests for ntk_rnn.network.data: the paper's token form, delta-separation, digits, splits and npz files."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

import ntk_rnn  # noqa: F401  (enables float64)
from ntk_rnn.apps.datasets import (
    synthetic_sequences,
)
from ntk_rnn.network.data import SequenceData, load_npz, save_npz, train_test_split

INV_SQRT2 = 1 / math.sqrt(2)


def key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed)


# --------------------------------------------------------------------------- SequenceData


def test_sequence_data_converts_and_reports_shapes():
    x = np.ones((3, 4, 5), dtype=np.float32)
    y = np.zeros((3, 4, 2), dtype=np.int32)
    data = SequenceData(x, y, "toy")
    assert isinstance(data.x, jax.Array) and data.x.dtype == np.float64 and data.y.dtype == np.float64
    assert (data.n, data.length, data.input_dim, data.output_dim) == (3, 4, 5, 2)
    assert "n=3" in repr(data) and "toy" in repr(data)


@pytest.mark.parametrize(
    ("x_shape", "y_shape", "match"),
    [
        ((3, 4), (3, 4, 1), r"SequenceData\.x must have shape \(n, L, d_x\)"),
        ((3, 4, 5), (3, 4), r"SequenceData\.y must have shape \(n, L, d\) = \(3, 4, d\)"),
        ((3, 4, 5), (2, 4, 1), r"SequenceData\.y must have shape \(n, L, d\) = \(3, 4, d\)"),
        ((3, 4, 5), (3, 5, 1), r"SequenceData\.y must have shape"),
        ((0, 4, 5), (0, 4, 1), r"SequenceData\.x must have shape"),
    ],
)
def test_sequence_data_rejects_bad_shapes(x_shape, y_shape, match):
    with pytest.raises(ValueError, match=match):
        SequenceData(np.zeros(x_shape), np.zeros(y_shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("field", ["x", "y"])
def test_sequence_data_rejects_non_finite(field, bad):
    arrays = {"x": np.zeros((2, 3, 4)), "y": np.zeros((2, 3, 1))}
    arrays[field][1, 2, 0] = bad
    with pytest.raises(ValueError, match=rf"SequenceData\.{field} contains NaN or inf"):
        SequenceData(**arrays)


def test_sequence_data_rejects_non_numeric_and_bad_name():
    with pytest.raises(ValueError, match=r"SequenceData\.x must be a real numeric array"):
        SequenceData(np.full((1, 1, 1), "a"), np.zeros((1, 1, 1)))
    with pytest.raises(ValueError, match="name must be a str"):
        SequenceData(np.zeros((1, 1, 1)), np.zeros((1, 1, 1)), name=3)


def test_sequence_data_is_frozen():
    data = SequenceData(np.zeros((1, 1, 1)), np.zeros((1, 1, 1)))
    with pytest.raises(AttributeError):
        data.name = "other"


def test_take_selects_samples():
    x = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    y = np.arange(5 * 2 * 1, dtype=float).reshape(5, 2, 1)
    data = SequenceData(x, y, "toy")
    sub = data.take(np.array([4, 1]))
    np.testing.assert_array_equal(sub.x, x[[4, 1]])
    np.testing.assert_array_equal(sub.y, y[[4, 1]])
    assert sub.name == "toy"
    mask = np.array([True, False, True, False, False])
    np.testing.assert_array_equal(data.take(mask).x, x[[0, 2]])
    with pytest.raises(ValueError, match=r"idx must lie in \[0, n\)"):
        data.take([5])
    with pytest.raises(ValueError, match="at least one sample"):
        data.take(np.array([], dtype=int))
    with pytest.raises(ValueError, match="integers"):
        data.take([0.5])
    with pytest.raises(ValueError, match=r"boolean idx must have shape \(5,\)"):
        data.take([True, False])


# --------------------------------------------------------------------------- measurements


# --------------------------------------------------------------------------- normalize_tokens


# --------------------------------------------------------------------------- labels and synthetic data


def test_train_test_split_disjoint_and_complete():
    data = synthetic_sequences(20, 3, 4, delta=0.1, key=key(1))
    train, test = train_test_split(data, 5, key=key(2))
    assert (train.n, test.n) == (15, 5)
    rows = lambda d: {tuple(r) for r in np.asarray(d.x[:, 0])}  # noqa: E731  (first tokens are distinct)
    assert rows(train).isdisjoint(rows(test))
    assert rows(train) | rows(test) == rows(data)
    again = train_test_split(data, 5, key=key(2))
    np.testing.assert_array_equal(again[1].x, test.x)
    other = train_test_split(data, 5, key=key(3))
    assert not np.array_equal(other[1].x, test.x)


@pytest.mark.parametrize("n_test", [0, 20, -1, 2.5, True])
def test_train_test_split_rejects_bad_sizes(n_test):
    data = synthetic_sequences(20, 3, 4, delta=0.1, key=key(1))
    with pytest.raises(ValueError, match=r"n_test must be an int in \[1, n - 1\] = \[1, 19\]"):
        train_test_split(data, n_test, key=key())


# --------------------------------------------------------------------------- npz files


def test_npz_round_trip(tmp_path):
    data = synthetic_sequences(6, 4, 5, output_dim=2, delta=0.3, key=key(5))
    path = tmp_path / "set.npz"
    save_npz(path, data)
    back = load_npz(path)
    np.testing.assert_array_equal(back.x, data.x)
    np.testing.assert_array_equal(back.y, data.y)
    assert back.name == "synthetic"
    assert load_npz(str(path), name="other").name == "other"
    assert [p.name for p in tmp_path.iterdir()] == ["set.npz"]  # no temp files left behind


def test_save_npz_overwrites_atomically_and_keeps_the_exact_path(tmp_path):
    path = tmp_path / "data.bin"
    save_npz(path, SequenceData(np.zeros((1, 1, 2)), np.zeros((1, 1, 1))))
    save_npz(path, SequenceData(np.ones((2, 1, 2)), np.zeros((2, 1, 1)), "second"))
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]
    assert load_npz(path).name == "second" and load_npz(path).n == 2
    with pytest.raises(TypeError, match="SequenceData"):
        save_npz(path, np.zeros((1, 1, 1)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_npz(tmp_path / "missing" / "d.npz", load_npz(path))


def test_load_npz_plain_arrays_uses_file_stem(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, x=np.zeros((2, 3, 4)), y=np.ones((2, 3, 1)))
    data = load_npz(path)
    assert data.name == "plain" and data.y.shape == (2, 3, 1)


def test_load_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz"):
        load_npz(tmp_path / "nope.npz")
    np.savez(tmp_path / "no_y.npz", x=np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"no array 'y'.*\(2, 3, d\)"):
        load_npz(tmp_path / "no_y.npz")
    np.savez(tmp_path / "no_x.npz", y=np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match=r"no array 'x'.*\(n, L, d_x\)"):
        load_npz(tmp_path / "no_x.npz")
    np.savez(tmp_path / "bad_y.npz", x=np.zeros((2, 3, 4)), y=np.zeros((2, 4, 1)))
    with pytest.raises(ValueError, match=r"bad_y\.npz.*SequenceData\.y must have shape \(n, L, d\) = \(2, 3, d\)"):
        load_npz(tmp_path / "bad_y.npz")
    x = np.zeros((2, 3, 4))
    x[0, 0, 0] = np.inf
    np.savez(tmp_path / "inf_x.npz", x=x, y=np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match=r"SequenceData\.x contains NaN or inf"):
        load_npz(tmp_path / "inf_x.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"not a readable \.npz"):
        load_npz(tmp_path / "junk.npz")
