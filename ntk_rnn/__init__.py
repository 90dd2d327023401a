"""ntk-rnn: the neural tangent kernel of wide Elman RNNs, measured (Allen-Zhu, Li, Song 2019).

Importing the package switches JAX to float64 (jax_enable_x64) for the whole process: kernels, eigenvalues
and their cross-checks need it. The mathematics is in docs/theory.md.
"""

import jax

jax.config.update("jax_enable_x64", True)

from ntk_rnn.apps import probes  # noqa: E402
from ntk_rnn.apps.classification import ClassifyConfig, classify, classify_dataset  # noqa: E402
from ntk_rnn.apps.datasets import digits_sequences, first_token_separation, synthetic_sequences  # noqa: E402
from ntk_rnn.apps.timeseries import LabeledSequences, load_splits, standardize  # noqa: E402
from ntk_rnn.batching.batch import KernelFn, batch  # noqa: E402
from ntk_rnn.eigen.lobpcg import ExtremeEigenpairs, extreme_eigenpairs  # noqa: E402
from ntk_rnn.eigen.matfree import EigenvalueConvergenceError, ntk_extreme_eigenvalues, ntk_operator  # noqa: E402
from ntk_rnn.eigen.sharded import KernelOperator, kernel_eigenpairs  # noqa: E402
from ntk_rnn.frameworks.equinox_cells import from_equinox  # noqa: E402
from ntk_rnn.frameworks.flax_linen import from_flax  # noqa: E402
from ntk_rnn.frameworks.pytorch import from_torch, to_torch  # noqa: E402
from ntk_rnn.kernels.empirical import empirical_ntk, empirical_ntk_fn  # noqa: E402
from ntk_rnn.kernels.limit import forward_kernels, limit_ntk, limit_ntk_fn, nngp_fn, nngp_kernel  # noqa: E402
from ntk_rnn.kernels.unit_process import Estimate  # noqa: E402
from ntk_rnn.network.cells import Cell  # noqa: E402
from ntk_rnn.network.checks import check_inputs, check_params  # noqa: E402
from ntk_rnn.network.config import RNNConfig  # noqa: E402
from ntk_rnn.network.data import SequenceData, load_npz, save_npz, train_test_split  # noqa: E402
from ntk_rnn.network.loss import loss, per_sample_losses, residuals  # noqa: E402
from ntk_rnn.network.model import apply, flat_outputs, hidden_states, init_params  # noqa: E402
from ntk_rnn.training.ensemble import ensemble_moments  # noqa: E402
from ntk_rnn.training.linearized import KernelGD, linearize, taylor_outputs  # noqa: E402
from ntk_rnn.training.paired import PairedResult, train_paired  # noqa: E402
from ntk_rnn.training.train import (  # noqa: E402
    TrainConfig,
    TrainingDivergedError,
    TrainResult,
    run_steps,
    train,
    train_step,
)

__all__ = [
    "Cell",
    "ClassifyConfig",
    "EigenvalueConvergenceError",
    "Estimate",
    "ExtremeEigenpairs",
    "KernelFn",
    "KernelGD",
    "KernelOperator",
    "LabeledSequences",
    "PairedResult",
    "RNNConfig",
    "SequenceData",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "apply",
    "batch",
    "check_inputs",
    "check_params",
    "classify",
    "classify_dataset",
    "digits_sequences",
    "empirical_ntk",
    "empirical_ntk_fn",
    "ensemble_moments",
    "extreme_eigenpairs",
    "first_token_separation",
    "flat_outputs",
    "forward_kernels",
    "from_equinox",
    "from_flax",
    "from_torch",
    "hidden_states",
    "init_params",
    "kernel_eigenpairs",
    "limit_ntk",
    "limit_ntk_fn",
    "linearize",
    "load_npz",
    "load_splits",
    "loss",
    "nngp_fn",
    "nngp_kernel",
    "ntk_extreme_eigenvalues",
    "ntk_operator",
    "per_sample_losses",
    "probes",
    "residuals",
    "run_steps",
    "save_npz",
    "standardize",
    "synthetic_sequences",
    "taylor_outputs",
    "to_torch",
    "train",
    "train_paired",
    "train_step",
    "train_test_split",
]
