"""The datasets the studies run on, by name."""

from __future__ import annotations

import jax

from ntk_rnn.data import BINARY_DIGITS, SequenceData, digits_sequences, synthetic_sequences

DATASETS = ("synthetic", "digits")


def study_dataset(name: str, key: jax.Array, n: int, length: int, input_dim: int, delta: float) -> SequenceData:
    """ "synthetic": the paper's delta-separated unit tokens with Gaussian labels (n, L, d_x).
    "digits": n scikit-learn digits 3 vs 8 read as 8 rows, +-1 labels; length and input_dim are
    fixed by the data (8 and 9) and the arguments are ignored."""
    if name == "synthetic":
        return synthetic_sequences(key, n, length, input_dim, output_dim=1, delta=delta)
    if name == "digits":
        return digits_sequences(n, key, classes=BINARY_DIGITS)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
