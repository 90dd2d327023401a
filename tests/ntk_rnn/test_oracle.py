"""ntk_rnn against neural-tangents 0.6.5, the field's reference implementation, run as an independent oracle.

The oracle files come from reference/make_oracle.py in its own environment (.venv-nt: JAX 0.4.25,
its own transcription of the RNN); `make reference` builds both. Each file holds the inputs and
parameters, so ntk_rnn is evaluated here at exactly the same arrays. Compared: every
nt.empirical_ntk_fn implementation's kernel (train-train and test-train) with ntk_rnn.empirical_ntk
to 1e-10 relative, nt.linearize with ntk_rnn.training.linearized.linearize and nt.predict.gradient_descent_mse
with ntk_rnn.training.linearized.KernelGD (gradient flow) to 1e-8 relative. Relative errors are
max |a - b| / max |b|.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.network.checks import loss_positions
from ntk_rnn.network.model import select_outputs
from ntk_rnn.training.linearized import KernelGD, linearize

ORACLE_DIR = Path(os.environ.get("NTK_RNN_ORACLE_DIR", Path(__file__).resolve().parents[2] / "reference" / "oracle"))
MANIFEST = ORACLE_DIR / "manifest.json"
IMPLEMENTATIONS = ("JACOBIAN_CONTRACTION", "NTK_VECTOR_PRODUCTS", "STRUCTURED_DERIVATIVES", "AUTO")
CASE_NAMES = sorted(p.stem for p in ORACLE_DIR.glob("*.npz")) if MANIFEST.exists() else []
MISSING = f"no neural-tangents oracle files in {ORACLE_DIR}: `make reference` creates them (needs python3.11 and PyPI)"
KERNEL_RTOL = 1e-10
OUTPUT_RTOL = 1e-8


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| over all entries; a and b must have the same shape."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def nt_matrix(k: np.ndarray) -> np.ndarray:
    """neural-tangents' kernel layout with trace_axes=() interleaves the two sides' axes,
    (n_a, n_b, o_a1, o_b1, o_a2, o_b2, ...); ntk_rnn's rows are (sample, position, unit) in C order:
    gather each side's axes, then flatten to (n_a * prod o_a, n_b * prod o_b)."""
    side_a, side_b = list(range(0, k.ndim, 2)), list(range(1, k.ndim, 2))
    rows = math.prod(k.shape[i] for i in side_a)
    return k.transpose(side_a + side_b).reshape(rows, -1)


class Case:
    """One oracle file: the ntk_rnn config and parameters it describes, and its arrays."""

    def __init__(self, name: str) -> None:
        with np.load(ORACLE_DIR / f"{name}.npz") as data:
            self.arrays = {k: data[k] for k in data.files}
        spec = json.loads(str(self.arrays["case_json"]))
        self.spec = spec
        self.cfg = ntk_rnn.RNNConfig(
            width=spec["m"],
            input_dim=spec["dx"],
            output_dim=spec["d"],
            activation=spec["activation"],
            parameterization=spec["parameterization"],
            sigma_w2=spec["sigma_w2"],
            sigma_u2=spec["sigma_u2"],
            sigma_b2=spec["sigma_b2"],
            sigma_v2=spec["sigma_v2"],
            trainable=tuple(spec["trainable"]),
            readout=spec["readout"],
        )
        self.params = {k: self.arrays[f"param_{k}"] for k in self.cfg.param_names}
        self.positions = spec["positions"]
        self.x1, self.x2 = self.arrays["x1"], self.arrays["x2"]

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """ntk_rnn's outputs at the kernel positions: (n, P, d), or (n, d) for readouts last/mean."""
        pos = loss_positions(self.cfg, self.positions, x.shape[1], "positions")
        return np.asarray(select_outputs(ntk_rnn.apply(self.cfg, self.params, x), pos))

    def kernel(self, xa: np.ndarray, xb: np.ndarray | None = None) -> np.ndarray:
        return ntk_rnn.empirical_ntk(self.cfg, self.params, xa, xb, positions=self.positions)

    @property
    def linear_in_theta(self) -> bool:
        """Whether the outputs are linear in the trainable parameters, so that f_lin = f exactly."""
        trainable = set(self.cfg.trainable)
        return trainable == {"B"} or (self.cfg.activation == "linear" and trainable <= {"A", "b"})


@pytest.fixture(scope="module")
def manifest() -> dict:
    if not MANIFEST.exists():
        pytest.skip(MISSING)
    return json.loads(MANIFEST.read_text())


@pytest.fixture(scope="module", params=CASE_NAMES or [None])
def case(request) -> Case:
    if request.param is None:
        pytest.skip(MISSING)
    return Case(request.param)


def test_oracle_ran_every_case_and_implementation(manifest):
    """The oracle environment is pinned so that all four nt implementations run: a failure here means
    the environment or the oracle script broke, not ntk_rnn."""
    assert manifest["versions"]["neural-tangents"] == "0.6.5"
    errors = {name: entry["error"][-300:] for name, entry in manifest["cases"].items() if "error" in entry}
    assert not errors, errors
    failures = {name: entry["failures"] for name, entry in manifest["cases"].items() if entry["failures"]}
    assert not failures, failures
    assert sorted(manifest["cases"]) == CASE_NAMES


def test_forward_pass_matches(case):
    """Both transcriptions of the RNN give the same outputs at init (1e-12)."""
    assert rel_error(case.outputs(case.x1), case.arrays["f0_train"]) < 1e-12
    assert rel_error(case.outputs(case.x2), case.arrays["f0_test"]) < 1e-12


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_structured_kernel_matches_neural_tangents(case, impl):
    """ntk_rnn's structured kernel equals each nt.empirical_ntk_fn implementation's to 1e-10 relative."""
    k_train, k_test = case.arrays[f"kernel_train_{impl}"], case.arrays[f"kernel_test_train_{impl}"]
    assert rel_error(case.kernel(case.x1), nt_matrix(k_train)) < KERNEL_RTOL
    assert rel_error(case.kernel(case.x2, case.x1), nt_matrix(k_test)) < KERNEL_RTOL


def test_linearize_matches_neural_tangents(case):
    """ntk_rnn.training.linearized.linearize equals nt.linearize at the same shifted parameters (1e-8), and the
    shift is large enough that the linearized model differs from the true one (unless f is linear in theta)."""
    shifted = {**case.params, **{k: case.arrays[f"shift_{k}"] for k in case.cfg.trainable}}
    f_lin = linearize(case.cfg, case.params)
    for name, x in (("x1", case.x1), ("x2", case.x2)):
        ours = np.asarray(f_lin(shifted, x))
        assert rel_error(ours, case.arrays[f"lin_{name}"]) < OUTPUT_RTOL
        true_gap = rel_error(case.arrays[f"true_{name}"], case.arrays[f"lin_{name}"])
        if case.linear_in_theta:
            assert true_gap < 1e-12
        else:
            assert true_gap > 1e-5  # the comparison above is not a comparison of the model with itself


def test_gradient_flow_matches_neural_tangents_predict(case):
    """KernelGD (gradient flow) from ntk_rnn's own kernels and outputs equals nt.predict.gradient_descent_mse.

    nt's flow is on 1/(2N) ||f - y||^2 with N = y_train.size and time in units of its learning rate:
    f_t - y = exp(-lr t K / N)(f_0 - y). KernelGD's flow is exp(-lam eta t), so eta = lr / N.
    """
    a = case.arrays
    y = a["y_train"]
    times = a["predict_times"]
    eta = float(a["predict_lr"]) / y.size
    gd = KernelGD.from_kernel(case.kernel(case.x1), case.outputs(case.x1).ravel(), y.ravel(), eta)
    train = gd.train_outputs(times, flow=True)
    test = gd.test_outputs(case.kernel(case.x2, case.x1), case.outputs(case.x2).ravel(), times, flow=True)
    assert rel_error(train, a["predict_train"].reshape(len(times), -1)) < OUTPUT_RTOL
    assert rel_error(test, a["predict_test"].reshape(len(times), -1)) < OUTPUT_RTOL
    # the times span the dynamics: from f_0 at t = 0 to near the targets at the last time
    assert rel_error(train[0], a["f0_train"].ravel()) < 1e-12
    assert np.linalg.norm(train[-1] - y.ravel()) < 0.1 * np.linalg.norm(train[0] - y.ravel())
