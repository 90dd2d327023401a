"""Matrix-free extreme eigenvalues of the NTK against dense eigvalsh of the structured kernel, and kernel
tracking in training that switches to them past the memory budget."""

import dataclasses

import jax
import numpy as np
import pytest
import scipy.linalg

import ntk_rnn
from ntk_rnn.eigen.matfree import EigenvalueConvergenceError, ntk_extreme_eigenvalues, ntk_operator
from ntk_rnn.training.paired import train_paired
from ntk_rnn.training.train import TrainConfig, train


def _draw(cfg, seed):
    """Parameters N(0, init_std^2) as ntk_rnn.init_params draws them, but with numpy: init_params compiles a
    sampler for every new shape."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}


def _setup(n, length, m, dx=4, d=1, seed=0, **options):
    cfg = ntk_rnn.RNNConfig(width=m, input_dim=dx, output_dim=d, **options)
    params = _draw(cfg, seed)
    x = ntk_rnn.synthetic_sequences(key=jax.random.key(seed + 1), n=n, length=length, input_dim=dx, delta=0.5).x
    return cfg, params, x


@pytest.mark.parametrize(
    "options, positions",
    [
        (dict(d=2, trainable=("W", "A", "B")), (3, 1)),
        (dict(parameterization="ntk", activation="erf", sigma_b2=0.5, trainable=("W", "A", "b", "B"),
              readout="mean"), None),
    ],
)  # fmt: skip
def test_operator_is_the_empirical_kernel(options, positions):
    """K v by vjp/jvp equals the structured kernel times v: same rows, order, positions and readout."""
    cfg, params, x = _setup(5, 4, 16, **options)
    op = ntk_operator(cfg, params, x, positions)
    K = ntk_rnn.empirical_ntk(cfg, params, x, positions=positions)
    dense = op @ np.eye(op.shape[0])
    assert op.shape == K.shape
    assert np.abs(dense - K).max() / np.abs(K).max() < 1e-12
    v = np.arange(K.shape[0], dtype=float)
    np.testing.assert_allclose(op @ v, K @ v, rtol=1e-12)
    assert op.matvecs == K.shape[0] + 1


@pytest.mark.parametrize(
    "n, length, m, options, positions",
    [
        (16, 8, 96, dict(), None),  # the paper's model, N = 112, condition number ~1e3
        (10, 6, 48, dict(d=2, activation="tanh", parameterization="standard", trainable=("A", "B")), (5, 2, 3)),
        (24, 6, 48, dict(trainable=("W", "A", "B"), readout="last"), None),
        (12, 5, 32, dict(sigma_b2=0.3, trainable=("W", "b"), activation="erf", parameterization="ntk"), None),
    ],
)
def test_extreme_eigenvalues_match_dense(n, length, m, options, positions):
    cfg, params, x = _setup(n, length, m, **options)
    eig = scipy.linalg.eigvalsh(ntk_rnn.empirical_ntk(cfg, params, x, positions=positions))
    assert eig[0] > 1e-6 * eig[-1]  # well-posed: positive definite, so the relative error is meaningful
    result = ntk_extreme_eigenvalues(cfg, params, x, positions, key=jax.random.key(3))
    assert result.size == eig.size
    assert result.lambda_min == pytest.approx(eig[0], rel=1e-8)
    assert result.lambda_max == pytest.approx(eig[-1], rel=1e-8)
    assert result.matvecs > 0


def test_zero_row_means_exact_zero_lambda_min():
    """Position 0 has no W-gradient (h_0 = 0): its rows of K vanish and lambda_min is exactly 0."""
    cfg, params, x = _setup(6, 4, 16)
    result = ntk_extreme_eigenvalues(cfg, params, x, positions=(0, 2))
    eig = scipy.linalg.eigvalsh(ntk_rnn.empirical_ntk(cfg, params, x, positions=(0, 2)))
    assert result.lambda_min == 0.0
    assert result.lambda_max == pytest.approx(eig[-1], rel=1e-10)


def test_tiny_kernel_and_determinism():
    cfg, params, x = _setup(3, 4, 16, trainable=("W", "B"), readout="last")
    eig = scipy.linalg.eigvalsh(ntk_rnn.empirical_ntk(cfg, params, x))
    result = ntk_extreme_eigenvalues(cfg, params, x)
    assert (result.lambda_min, result.lambda_max) == pytest.approx((eig[0], eig[-1]), rel=1e-10)
    cfg, params, x = _setup(6, 4, 16)
    a = ntk_extreme_eigenvalues(cfg, params, x, key=jax.random.key(5))
    b = ntk_extreme_eigenvalues(cfg, params, x, key=jax.random.key(5))
    assert a == b


def test_nonconvergence_raises():
    cfg, params, x = _setup(16, 8, 96)
    with pytest.raises(EigenvalueConvergenceError, match="did not converge"):
        ntk_extreme_eigenvalues(cfg, params, x, maxiter=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tol=0.0), r"tol must be a float in \(0, 1\)"),
        (dict(tol=2.0), r"tol must be a float in \(0, 1\)"),
        (dict(maxiter=0), "maxiter must be a positive int"),
        (dict(key=0), "key must be a single jax.random.key"),
        (dict(key=jax.random.PRNGKey(0)), "key must be a single jax.random.key"),
        (dict(max_bytes=0), "max_bytes must be a positive int"),
        (dict(positions=(0, 7)), r"positions must lie in \[0, L\)"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    cfg, params, x = _setup(2, 3, 4)
    with pytest.raises(ValueError, match=match):
        ntk_extreme_eigenvalues(cfg, params, x, **kwargs)


def test_bad_model_inputs_raise():
    cfg, params, x = _setup(2, 3, 4)
    with pytest.raises(ValueError, match="x has token dimension 3"):
        ntk_operator(cfg, params, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="positions does not apply to readout='last'"):
        ntk_operator(cfg.replace(readout="last"), params, x, positions=(1,))


# ----------------------------------------------------------------------------- kernel tracking past the budget

TRACK_BUDGET = 50_000  # bytes: the N = 60 kernel needs 3 * 8 * 60^2 = 86400 dense, one sample's structured pass 28k


@pytest.fixture(scope="module")
def tracking_problem():
    data = ntk_rnn.synthetic_sequences(key=jax.random.key(0), n=12, length=6, input_dim=4, delta=0.5)
    cfg = ntk_rnn.RNNConfig(width=16, input_dim=4)
    return cfg, _draw(cfg, 1), data


def test_training_tracks_the_kernel_matrix_free_past_the_memory_budget(tracking_problem):
    """With a budget the dense kernel does not fit, train() gives the same lambda_min/lambda_max at every
    kernel checkpoint as the dense run, and NaN kernel drift."""
    cfg, params, data = tracking_problem
    tcfg = TrainConfig(steps=20, lr_scale=1.0, record_every=10, kernel_every=10)
    dense = train(cfg, params, data, tcfg, key=jax.random.key(2), progress=False)
    free = train(cfg, params, data, dataclasses.replace(tcfg, max_bytes=TRACK_BUDGET), key=jax.random.key(2),
                 progress=False)  # fmt: skip
    assert dense.summary["kernel_tracking"] == "dense" and free.summary["kernel_tracking"] == "matrix-free"
    for column in ("lambda_min", "lambda_max", "condition"):
        np.testing.assert_allclose(free.history[column], dense.history[column], rtol=1e-8)
    assert dense.history["kernel_drift"].notna().all() and free.history["kernel_drift"].isna().all()
    assert free.summary["lambda_min_0"] == pytest.approx(dense.summary["lambda_min_0"], rel=1e-8)
    np.testing.assert_allclose(free.history["loss"], dense.history["loss"], rtol=1e-8)
    assert np.all(free.history["gradient_ratio"] >= 1 - 1e-9)


def test_paired_training_past_the_memory_budget_skips_drift_and_closed_form(tracking_problem):
    cfg, params, data = tracking_problem
    test = ntk_rnn.synthetic_sequences(key=jax.random.key(9), n=3, length=6, input_dim=4, delta=0.5)
    tcfg = TrainConfig(steps=10, lr_scale=1.0, record_every=10, kernel_every=10, max_bytes=TRACK_BUDGET)
    result = train_paired(cfg, params, data, test, tcfg, key=jax.random.key(2), progress=False)
    assert result.summary["kernel_tracking"] == "matrix-free" and result.summary["null_space_dim"] is None
    assert result.history["kernel_drift"].isna().all() and "closed_form_gap_train" not in result.history
    K0 = ntk_rnn.empirical_ntk(cfg, params, data.x)
    assert result.summary["lambda_max_0"] == pytest.approx(scipy.linalg.eigvalsh(K0)[-1], rel=1e-8)


def test_train_config_max_bytes_is_validated():
    with pytest.raises(ValueError, match="max_bytes must be a positive int"):
        TrainConfig(max_bytes=0)
