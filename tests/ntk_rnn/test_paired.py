"""True against linearized training side by side (ntk_rnn.training.paired): the trained linearized model against the
closed form, the gap against width, shared minibatches, optimizers, and refusals."""

import jax
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.apps.datasets import synthetic_sequences
from ntk_rnn.training.linearized import KernelGD, linearize
from ntk_rnn.training.paired import train_paired
from ntk_rnn.training.train import TrainConfig


def _draw(cfg, seed):
    """Parameters N(0, init_std^2) as ntk_rnn.init_params draws them, but with numpy: init_params compiles a
    sampler for every new shape."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}


# Relative tolerance, against the outputs' scale, for float64 outputs that two code paths compute equal in
# exact arithmetic. Rounding in L = 5 steps of length-m dot products (m = 48) is bounded by about L m eps =
# 5e-14 of |W| |h|; 1e-12 (4500 eps) leaves room for |W| |h| > |W h|, and a real difference is O(1).
ROUNDING = 1e-12


@pytest.fixture(scope="module")
def gd_pair(train_test_problem):
    cfg, params, train, test = train_test_problem
    tcfg = TrainConfig(steps=60, lr_scale=1.0, record_every=10, kernel_every=30)
    return train_paired(cfg, params, train, test, tcfg, key=jax.random.key(2), trace_points=2, progress=False)


def test_trained_linearized_model_matches_the_closed_form_at_every_step(gd_pair):
    h = gd_pair.history
    assert len(h) == 7
    assert h["closed_form_gap_train"].max() < 1e-8 and h["closed_form_gap_test"].max() < 1e-8


def test_paired_history_columns_and_trends(gd_pair, train_test_problem):
    h = gd_pair.history
    # at step 0 both models hold the same parameters, so param_gap is exactly 0; their outputs come from two
    # programs (the network and its jvp) and agree to rounding (7.8e-16 on an H200)
    cfg, params, train, _ = train_test_problem
    scale = np.linalg.norm(np.asarray(ntk_rnn.apply(cfg, params, train.x)))
    assert h.loc[0, "gap_train"] <= ROUNDING * scale and h.loc[0, "param_gap"] == 0
    assert np.all(np.diff(h["train_loss_lin"]) < 0) and np.all(np.diff(h["train_loss_true"]) < 0)
    assert np.all(h["gap_train"].iloc[1:] > 0) and np.all(h["gap_train_rel"].iloc[1:] < 1)
    assert list(h.dropna(subset=["kernel_drift"])["step"]) == [0, 30, 60]
    traced = gd_pair.outputs
    assert set(traced["model"]) == {"true", "lin", "closed_form"} and set(traced["split"]) == {"train", "test"}
    assert len(traced) == 7 * 2 * 3 * 2


def test_gap_shrinks_with_width(train_test_problem):
    """The true-minus-linearized gap falls as the width grows (docs/theory.md §5: about m^(-1/2))."""
    _, _, train, test = train_test_problem
    gaps = []
    for m in (32, 512):
        cfg = ntk_rnn.RNNConfig(width=m, input_dim=4)
        tcfg = TrainConfig(steps=40, lr_scale=1.0, record_every=40, kernel_every=0)
        params = _draw(cfg, 1)
        result = train_paired(cfg, params, train, test, tcfg, key=jax.random.key(2), progress=False)
        gaps.append(result.history["gap_train_rel"].iloc[-1])
    assert gaps[1] < gaps[0] / 2


def test_trained_linearized_model_at_a_small_step_follows_gradient_flow(train_test_problem):
    """The third way: the trained linearized model with a small step against the closed-form flow."""
    cfg, params, train, test = train_test_problem
    K0 = ntk_rnn.empirical_ntk(cfg, params, train.x)
    f0 = np.asarray(ntk_rnn.apply(cfg, params, train.x)[:, 1:]).ravel()
    y = np.asarray(train.y[:, 1:]).ravel()
    errors = []
    for scale, steps in ((0.1, 100), (0.01, 1000)):  # the same time eta * steps
        tcfg = TrainConfig(steps=steps, lr_scale=scale, record_every=steps, kernel_every=0)
        result = train_paired(cfg, params, train, test, tcfg, key=jax.random.key(0), progress=False)
        trained = np.asarray(linearize(cfg, params)(result.params_lin, train.x)[:, 1:]).ravel()
        flow = KernelGD.from_kernel(K0, f0, y, result.summary["lr"]).train_outputs([steps], flow=True)[0]
        errors.append(np.linalg.norm(trained - flow) / np.linalg.norm(flow - f0))
    assert errors[1] < 0.01 and errors[1] < errors[0] / 5


def test_closed_form_with_a_singular_kernel_reports_the_null_space(train_test_problem):
    """Position 0 carries no W-signal (h_0 = 0): K_0 is singular, and nothing turns NaN."""
    cfg, params, train, test = train_test_problem
    tcfg = TrainConfig(steps=20, lr_scale=1.0, record_every=10, positions=(0, 2, 4))
    result = train_paired(cfg, params, train, test, tcfg, key=jax.random.key(2), trace_points=1, progress=False)
    assert result.summary["null_space_dim"] == train.n
    # NaN only where expected: relative gaps at step 0, kernel drift between kernel checkpoints
    assert np.isfinite(result.history.iloc[1:].drop(columns=["kernel_drift"]).to_numpy(float)).all()
    assert result.history["closed_form_gap_train"].max() < 1e-8
    assert result.history["closed_form_gap_test"].max() < 1e-8
    # the outputs at position 0 never move: exactly in the network (W h_0 = 0), to rounding across the models
    moved = result.outputs[(result.outputs["split"] == "train") & (result.outputs["point"] == 0)]
    assert np.ptp(moved.loc[moved["model"] == "true", "value"]) == 0
    assert np.ptp(moved["value"]) <= ROUNDING * np.abs(moved["value"]).max()


def test_same_minibatches_for_both_models(train_test_problem):
    """After one SGD step from the same start the two models agree exactly (same gradient at theta_0),
    which holds only if they drew the same minibatch."""
    cfg, params, train, test = train_test_problem
    tcfg = TrainConfig(steps=1, lr_scale=0.5, record_every=1, batch_size=2)
    result = train_paired(cfg, params, train, test, tcfg, key=jax.random.key(4), progress=False)
    assert result.history["param_gap"].iloc[-1] < 1e-15
    assert "closed_form_gap_train" not in result.history


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_optax_optimizers_run_in_both_models(train_test_problem, optimizer):
    cfg, params, train, test = train_test_problem
    lr = 1e-3 if optimizer == "adam" else None
    tcfg = TrainConfig(steps=20, lr=lr, lr_scale=0.3, record_every=10, optimizer=optimizer)
    h = train_paired(cfg, params, train, test, tcfg, key=jax.random.key(4), progress=False).history
    assert h["train_loss_true"].iloc[-1] < h["train_loss_true"].iloc[0]
    assert h["train_loss_lin"].iloc[-1] < h["train_loss_lin"].iloc[0]


def test_bad_step_size_and_test_set_are_refused(train_test_problem):
    cfg, params, train, test = train_test_problem
    with pytest.raises(ValueError, match=r"2 / lambda_max\(K_0\) = [\d.e+-]+ \(lambda_max\(K_0\) = "):
        tcfg = TrainConfig(steps=5, lr_scale=2.5)
        train_paired(cfg, params, train, test, tcfg, key=jax.random.key(0), progress=False)
    wrong = synthetic_sequences(key=jax.random.key(9), n=3, length=5, input_dim=5, delta=0.5)
    with pytest.raises(ValueError, match=r"test_data\.x has token dimension 5 but the config's input_dim is 4"):
        train_paired(cfg, params, train, wrong, TrainConfig(steps=5), key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="lbfgs")


def test_closed_form_for_a_per_sequence_readout(train_test_problem):
    _, _, train, test = train_test_problem
    cfg = ntk_rnn.RNNConfig(width=32, input_dim=4, parameterization="ntk", trainable=("W", "B"), readout="last")
    tcfg = TrainConfig(steps=30, lr_scale=1.0, record_every=10)
    params = _draw(cfg, 1)
    result = train_paired(cfg, params, train, test, tcfg, key=jax.random.key(2), progress=False)
    assert result.summary["positions"] is None
    assert result.history["closed_form_gap_train"].max() < 1e-8 and result.history["closed_form_gap_test"].max() < 1e-8
