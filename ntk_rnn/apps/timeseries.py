"""UCR/UEA classification datasets as RNN inputs (docs/theory.md §11): the official train/test splits of the
archive datasets that ship inside sktime, read with sktime's own loader, nothing downloaded.

A dataset is a LabeledSequences: right-padded tokens (n, L, d_x) with the lengths (n,) of the sequences
(JapaneseVowels has 7 to 29 steps), integer labels (n,) and the class names they index. `standardize`
rescales every channel by the mean and standard deviation of the training split's real tokens, so the
test split never informs the scale.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np

from ntk_rnn.network.checks import check_float_array
from ntk_rnn.network.data import SequenceShape

# the UCR (univariate) and UEA (multivariate) classification datasets bundled in sktime 1.2's wheel
DATASETS = ("ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand", "JapaneseVowels", "OSULeaf")
"""The bundled UCR/UEA datasets load_splits reads."""
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class LabeledSequences(SequenceShape):
    """x: (n, L, d_x) float64 tokens, zero past each sequence's length; lengths: (n,) int64 in [1, L];
    labels: (n,) int64 in [0, C); classes: the C class names (labels index them); name: the dataset."""

    x: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str = "data"

    def __post_init__(self) -> None:
        x = check_float_array(self.x, "LabeledSequences.x", "(n, L, d_x)")
        if x.ndim != 3 or min(x.shape) < 1:
            raise ValueError(f"LabeledSequences.x must have shape (n, L, d_x) with every size >= 1, got {x.shape}")
        n, length = x.shape[:2]
        lengths, labels = np.asarray(self.lengths), np.asarray(self.labels)
        for name, arr in (("lengths", lengths), ("labels", labels)):
            if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"LabeledSequences.{name} must be {n} integers, one per sequence, "
                                 f"got shape {arr.shape} and dtype {arr.dtype}")  # fmt: skip
        if lengths.min() < 1 or lengths.max() > length:
            raise ValueError(f"LabeledSequences.lengths must lie in [1, L] = [1, {length}], "
                             f"got values in [{lengths.min()}, {lengths.max()}]")  # fmt: skip
        classes = tuple(self.classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise ValueError(f"LabeledSequences.classes must name at least 2 distinct classes, got {classes!r}")
        if labels.min() < 0 or labels.max() >= len(classes):
            raise ValueError(f"LabeledSequences.labels must lie in [0, {len(classes)}), "
                             f"got values in [{labels.min()}, {labels.max()}]")  # fmt: skip
        object.__setattr__(self, "x", np.asarray(x, dtype=np.float64))
        object.__setattr__(self, "lengths", lengths.astype(np.int64))
        object.__setattr__(self, "labels", labels.astype(np.int64))
        object.__setattr__(self, "classes", classes)

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self.classes)

    @property
    def equal_length(self) -> bool:
        """Whether every sequence has the full length L (no padding)."""
        return bool((self.lengths == self.length).all())

    def targets(self) -> np.ndarray:
        """Regression targets (n, C): the one-hot code of each label minus 1/C, so each row sums to 0."""
        return np.eye(self.num_classes)[self.labels] - 1.0 / self.num_classes

    def take(self, idx) -> LabeledSequences:
        """The sequences at idx (a 1-D integer index array), padded to the longest of them."""
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"idx must be a non-empty 1-D integer index array, got shape {idx.shape}, {idx.dtype}")
        lengths = self.lengths[idx]
        return LabeledSequences(self.x[idx, : lengths.max()], lengths, self.labels[idx], self.classes, self.name)

    def __repr__(self) -> str:
        return (f"LabeledSequences(name={self.name!r}, n={self.n}, length={self.length}, input_dim={self.input_dim}, "
                f"classes={self.num_classes}, lengths={'equal' if self.equal_length else 'variable'})")  # fmt: skip


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of the UCR/UEA datasets bundled with sktime, {DATASETS}, got {name!r}")
    return name


def _class_order(names) -> tuple[str, ...]:
    """Class names sorted numerically when they are all integers, else as strings."""
    names = sorted(set(map(str, names)))
    if all(re.fullmatch(r"-?\d+", s) for s in names):
        names.sort(key=int)
    return tuple(names)


@functools.cache
def _read(name: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x (n, L, d_x) padded, lengths (n,), label names (n,)) of one split, from sktime's bundled files."""
    from sktime.datasets import load_UCR_UEA_dataset  # here: sktime takes seconds to import

    frame, y = load_UCR_UEA_dataset(name, split=split, return_X_y=True, return_type="nested_univ")
    cases = [[np.asarray(frame.iat[i, j], dtype=np.float64) for j in range(frame.shape[1])] for i in range(len(frame))]
    lengths = np.array([len(channels[0]) for channels in cases])
    if any(len(c) != n for channels, n in zip(cases, lengths, strict=True) for c in channels):
        raise ValueError(f"{name} ({split}) has channels of different lengths within one case; it cannot be read")
    x = np.zeros((len(cases), lengths.max(), frame.shape[1]))
    for i, channels in enumerate(cases):
        x[i, : lengths[i]] = np.stack(channels, axis=-1)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} ({split}) has missing values; this loader does not impute them")
    return x, lengths, np.asarray(y).astype(str)


def load_splits(name: str) -> tuple[LabeledSequences, LabeledSequences]:
    """The official (train, test) splits of a bundled UCR/UEA dataset (DATASETS), labels coded over the
    training split's classes; a test class the training split lacks is an error."""
    _check_name(name)
    (x_tr, len_tr, y_tr), (x_te, len_te, y_te) = (_read(name, split) for split in SPLITS)
    classes = _class_order(y_tr)
    unseen = sorted(set(y_te) - set(classes))
    if unseen:
        raise ValueError(f"{name}: test classes {unseen} do not occur in the training split")
    code = {c: i for i, c in enumerate(classes)}
    train = LabeledSequences(x_tr, len_tr, np.array([code[c] for c in y_tr]), classes, name)
    test = LabeledSequences(x_te, len_te, np.array([code[c] for c in y_te]), classes, name)
    return train, test


def standardize(train: LabeledSequences, test: LabeledSequences) -> tuple[LabeledSequences, LabeledSequences]:
    """Both splits with every channel shifted and scaled by the mean and standard deviation of the
    training split's real tokens (padding stays 0). A constant channel is only shifted."""
    if train.input_dim != test.input_dim:
        raise ValueError(f"train and test must have the same token dimension, got {train.input_dim} and "
                         f"{test.input_dim}")  # fmt: skip
    real = np.arange(train.length)[None, :] < train.lengths[:, None]
    tokens = train.x[real]
    mean, std = tokens.mean(axis=0), tokens.std(axis=0)
    std = np.where(std > 0, std, 1.0)

    def scaled(data: LabeledSequences) -> LabeledSequences:
        mask = (np.arange(data.length)[None, :] < data.lengths[:, None])[..., None]
        return dataclasses.replace(data, x=np.where(mask, (data.x - mean) / std, 0.0))

    return scaled(train), scaled(test)
