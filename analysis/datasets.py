"""The datasets the studies run on, by name."""

from __future__ import annotations

import jax

from ntk_rnn.apps.datasets import BINARY_DIGITS, digits_sequences, synthetic_sequences
from ntk_rnn.network.data import SequenceData

DATASETS = ("synthetic", "digits")


def study_dataset(name: str, n: int, length: int, input_dim: int, delta: float, *, key: jax.Array) -> SequenceData:
    """ "synthetic": the paper's delta-separated unit tokens with Gaussian labels (n, L, d_x).
    "digits": n scikit-learn digits 3 vs 8 read as 8 rows, +-1 labels; length and input_dim are
    fixed by the data (8 and 9) and the arguments are ignored."""
    if name == "synthetic":
        return synthetic_sequences(n, length, input_dim, output_dim=1, delta=delta, key=key)
    if name == "digits":
        return digits_sequences(n, classes=BINARY_DIGITS, key=key)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
