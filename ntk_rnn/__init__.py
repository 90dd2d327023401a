"""ntk-rnn: the neural tangent kernel of wide Elman RNNs, measured (Allen-Zhu, Li, Song 2019).

Importing the package switches JAX to float64 (jax_enable_x64): kernels and eigenvalues need it.
"""

import jax

jax.config.update("jax_enable_x64", True)

from ntk_rnn.config import RNNConfig  # noqa: E402
from ntk_rnn.data import (  # noqa: E402
    SequenceData,
    digits_sequences,
    first_token_separation,
    load_npz,
    save_npz,
    synthetic_sequences,
)
from ntk_rnn.kernel import empirical_ntk  # noqa: E402
from ntk_rnn.limit import forward_kernels, limit_ntk, nngp_kernel  # noqa: E402
from ntk_rnn.matfree import ntk_extreme_eigenvalues, ntk_operator  # noqa: E402
from ntk_rnn.model import apply, hidden_states, init_params  # noqa: E402
from ntk_rnn.training import TrainConfig, TrainingDivergedError, TrainResult, train  # noqa: E402

__all__ = [
    "RNNConfig",
    "SequenceData",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "apply",
    "digits_sequences",
    "empirical_ntk",
    "first_token_separation",
    "forward_kernels",
    "hidden_states",
    "init_params",
    "limit_ntk",
    "load_npz",
    "nngp_kernel",
    "ntk_extreme_eigenvalues",
    "ntk_operator",
    "save_npz",
    "synthetic_sequences",
    "train",
]
