"""The UCR/UEA loader against sktime's own loader and the archive's published 1NN accuracies, the
train-only standardization, and the errors of LabeledSequences."""

import numpy as np
import pytest

from ntk_rnn.apps.timeseries import DATASETS, LabeledSequences, load_splits, standardize


def _sktime(name, split, return_type="numpy3D"):
    from sktime.datasets import load_UCR_UEA_dataset

    return load_UCR_UEA_dataset(name, split=split, return_X_y=True, return_type=return_type)


def test_gunpoint_is_the_official_split_as_sktime_reads_it():
    """GunPoint's official split: 50 train and 150 test sequences of 150 steps, classes '1' and '2'; the
    tokens are sktime's numpy3D array transposed to (n, L, d), and the label codes map back to its labels."""
    train, test = load_splits("GunPoint")
    assert train.x.shape == (50, 150, 1) and test.x.shape == (150, 150, 1)
    assert train.classes == test.classes == ("1", "2")
    assert train.name == test.name == "GunPoint"
    for data, split in ((train, "train"), (test, "test")):
        assert data.x.dtype == np.float64
        assert np.all(data.lengths == 150) and data.equal_length
        x, y = _sktime("GunPoint", split)
        np.testing.assert_array_equal(data.x, np.transpose(x, (0, 2, 1)))
        np.testing.assert_array_equal(np.asarray(data.classes)[data.labels], np.asarray(y).astype(str))


def test_basicmotions_is_multivariate_with_four_classes():
    """BasicMotions (UEA): 40 + 40 sequences of 100 steps and 6 channels, 4 classes, equal to sktime's array."""
    train, test = load_splits("BasicMotions")
    assert train.x.shape == test.x.shape == (40, 100, 6)
    assert train.num_classes == 4 and train.input_dim == 6
    assert set(np.unique(train.labels)) == set(range(4))
    x, y = _sktime("BasicMotions", "test")
    np.testing.assert_array_equal(test.x, np.transpose(x, (0, 2, 1)))
    np.testing.assert_array_equal(np.asarray(test.classes)[test.labels], np.asarray(y).astype(str))


def test_japanesevowels_has_variable_lengths_padded_with_zeros():
    """JapaneseVowels: 270 train sequences of 7 to 26 steps (test up to 29), 12 channels, 9 classes; the
    tokens past each length are 0 and the real ones equal sktime's nested frame, case by case."""
    train, test = load_splits("JapaneseVowels")
    assert train.n == 270 and train.input_dim == test.input_dim == 12 and train.num_classes == 9
    assert train.lengths.min() == 7 and train.lengths.max() == 26 == train.length
    assert test.lengths.min() >= 7 and test.lengths.max() == 29 == test.length
    assert not train.equal_length and not test.equal_length
    for data in (train, test):
        padded = np.arange(data.length)[None, :] >= data.lengths[:, None]
        assert np.all(data.x[padded] == 0)
    for data, split in ((train, "train"), (test, "test")):
        frame, y = _sktime("JapaneseVowels", split, "nested_univ")
        np.testing.assert_array_equal(np.asarray(data.classes)[data.labels], np.asarray(y).astype(str))
        shortest, longest = int(np.argmin(data.lengths)), int(np.argmax(data.lengths))
        for i in sorted({0, 1, shortest, longest, data.n - 1}):
            expected = np.stack([np.asarray(frame.iat[i, j], dtype=np.float64) for j in range(12)], axis=-1)
            assert data.lengths[i] == expected.shape[0]
            np.testing.assert_array_equal(data.x[i, : data.lengths[i]], expected)


def _one_nn_euclidean_accuracy(train, test):
    d2 = ((test.x.reshape(test.n, -1)[:, None] - train.x.reshape(train.n, -1)[None]) ** 2).sum(axis=-1)
    return float(np.mean(train.labels[d2.argmin(axis=1)] == test.labels))


@pytest.mark.parametrize("name, accuracy", [("GunPoint", 0.9133), ("ItalyPowerDemand", 0.9553)])
def test_one_nn_euclidean_gives_the_published_accuracy(name, accuracy):
    """1NN with Euclidean distance on the raw official split gives the UCR archive's published accuracy
    (DataSummary.csv, Dau et al. 2019: GunPoint error 0.0867 = 13 of 150): an independent check that the
    loader returns the official train/test split, in order with its labels."""
    train, test = load_splits(name)
    assert round(_one_nn_euclidean_accuracy(train, test), 4) == accuracy


def _tiny(x, lengths, labels=None):
    n = len(lengths)
    labels = np.arange(n) % 2 if labels is None else labels
    return LabeledSequences(np.asarray(x, dtype=np.float64), np.asarray(lengths), np.asarray(labels), ("a", "b"))


def test_standardize_uses_the_training_split_real_tokens():
    """Per channel, the train split's real tokens get mean 0 and std 1; the test split is shifted and
    scaled by the same train statistics (known here by construction); padding stays 0; a constant channel
    is only shifted."""
    # channel 0: real train tokens 1, 3, 5 (mean 3, std sqrt(8/3)); channel 1: constant 7.
    # the padded token (99, 99) must not enter the statistics
    x_train = [[[1.0, 7.0], [3.0, 7.0]], [[5.0, 7.0], [99.0, 99.0]]]
    train = _tiny(x_train, [2, 1])
    test = _tiny([[[3.0, 7.0], [11.0, 8.0], [-4.0, -4.0]]], [2], [1])
    s_train, s_test = standardize(train, test)
    std = np.sqrt(8 / 3)
    np.testing.assert_allclose(s_train.x[:, :, 0], [[-2 / std, 0.0], [2 / std, 0.0]], rtol=1e-14)
    np.testing.assert_array_equal(s_train.x[:, :, 1], [[0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(s_test.x[0], [[0.0, 0.0], [8 / std, 1.0], [0.0, 0.0]], rtol=1e-14)
    real = np.arange(2)[None, :] < train.lengths[:, None]
    np.testing.assert_allclose(s_train.x[real][:, 0].mean(), 0.0, atol=1e-15)
    np.testing.assert_allclose(s_train.x[real][:, 0].std(), 1.0, rtol=1e-14)
    # lengths, labels, classes pass through
    for before, after in ((train, s_train), (test, s_test)):
        np.testing.assert_array_equal(after.lengths, before.lengths)
        np.testing.assert_array_equal(after.labels, before.labels)
        assert after.classes == before.classes


def test_standardize_on_a_real_dataset():
    """JapaneseVowels: every channel of the standardized train split's real tokens has mean 0 and std 1,
    padding stays 0 on both splits, and replacing the test split does not change the train split."""
    train, test = load_splits("JapaneseVowels")
    s_train, s_test = standardize(train, test)
    real = np.arange(train.length)[None, :] < train.lengths[:, None]
    np.testing.assert_allclose(s_train.x[real].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(s_train.x[real].std(axis=0), 1.0, rtol=1e-12)
    for data in (s_train, s_test):
        assert np.all(data.x[np.arange(data.length)[None, :] >= data.lengths[:, None]] == 0)
    noise = np.random.default_rng(0).normal(size=test.x.shape) * 100
    other_test = LabeledSequences(noise, test.lengths, test.labels[::-1].copy(), test.classes, test.name)
    o_train, o_test = standardize(train, other_test)
    np.testing.assert_array_equal(o_train.x, s_train.x)
    assert not np.array_equal(o_test.x, s_test.x)


def test_take_pads_to_the_longest_taken():
    """take keeps the chosen sequences and trims the padding to the longest of them."""
    train, _ = load_splits("JapaneseVowels")
    idx = np.argsort(train.lengths)[:5]
    sub = train.take(idx)
    assert sub.n == 5 and sub.length == train.lengths[idx].max()
    np.testing.assert_array_equal(sub.x, train.x[idx, : sub.length])
    np.testing.assert_array_equal(sub.labels, train.labels[idx])


def test_targets_are_centred_one_hot_codes():
    data = _tiny(np.zeros((3, 2, 1)), [2, 2, 2], [0, 1, 1])
    np.testing.assert_allclose(data.targets(), [[0.5, -0.5], [-0.5, 0.5], [-0.5, 0.5]])


def test_unknown_dataset_names_the_available_ones():
    with pytest.raises(ValueError, match=r"GunPoint.*got 'Coffee'"):
        load_splits("Coffee")
    assert "GunPoint" in DATASETS and "JapaneseVowels" in DATASETS


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lengths=[3, 3]), r"lengths must be 3 integers"),
        (dict(lengths=[3.0, 3.0, 3.0]), r"lengths must be 3 integers"),
        (dict(lengths=[0, 3, 3]), r"lengths must lie in \[1, L\] = \[1, 3\]"),
        (dict(lengths=[3, 4, 3]), r"lengths must lie in \[1, L\] = \[1, 3\]"),
        (dict(labels=[0, 1]), r"labels must be 3 integers"),
        (dict(labels=[0, 2, 1]), r"labels must lie in \[0, 2\)"),
        (dict(labels=[0, -1, 1]), r"labels must lie in \[0, 2\)"),
        (dict(classes=("a",), labels=[0, 0, 0]), "at least 2 distinct classes"),
        (dict(classes=("a", "a")), "at least 2 distinct classes"),
        (dict(x=np.zeros((3, 3))), r"x must have shape \(n, L, d_x\)"),
        (dict(x=np.zeros((3, 0, 1))), r"x must have shape \(n, L, d_x\)"),
        (dict(x=np.full((3, 3, 1), np.nan)), "x contains NaN or inf"),
    ],
)
def test_bad_labeled_sequences_raise_clear_errors(kwargs, match):
    args = dict(x=np.zeros((3, 3, 1)), lengths=[3, 3, 3], labels=[0, 1, 1], classes=("a", "b"))
    args.update(kwargs)
    args = {k: np.asarray(v) if k in ("lengths", "labels") else v for k, v in args.items()}
    with pytest.raises(ValueError, match=match):
        LabeledSequences(**args)


def test_take_and_standardize_errors():
    data = _tiny(np.zeros((2, 2, 1)), [2, 2])
    with pytest.raises(ValueError, match="non-empty 1-D integer index array"):
        data.take(np.array([], dtype=int))
    with pytest.raises(ValueError, match="same token dimension"):
        standardize(data, _tiny(np.zeros((2, 2, 3)), [2, 2]))
