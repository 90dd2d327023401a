"""The linearized model three ways (trained, closed form, gradient flow), and the paired trainer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.data import synthetic_sequences
from ntk_rnn.linearized import KernelGD, linearize, train_paired
from ntk_rnn.training import TrainConfig


@pytest.fixture(scope="module")
def problem():
    train = synthetic_sequences(jax.random.key(0), n=6, length=5, input_dim=4, delta=0.5)
    test = synthetic_sequences(jax.random.key(9), n=3, length=7, input_dim=4, delta=0.5)
    cfg = ntk_rnn.RNNConfig(width=48, input_dim=4)
    return cfg, ntk_rnn.init_params(cfg, jax.random.key(1)), train, test


def test_linearize_is_the_first_order_taylor_model(problem):
    cfg, params, train, _ = problem
    f_lin = linearize(cfg, params)
    np.testing.assert_allclose(f_lin(params, train.x), ntk_rnn.apply(cfg, params, train.x), rtol=1e-14)
    direction = jax.random.normal(jax.random.key(5), params["W"].shape) / cfg.width
    # against an explicit autodiff Jacobian
    jac = jax.jacfwd(lambda W: ntk_rnn.apply(cfg, {**params, "W": W}, train.x))(params["W"])
    expected = ntk_rnn.apply(cfg, params, train.x) + jnp.tensordot(jac, direction, axes=2)
    np.testing.assert_allclose(f_lin({**params, "W": params["W"] + direction}, train.x), expected, rtol=1e-11)
    # the Taylor error is second order: halving the step quarters it (linear activation: smooth model)
    lin_cfg = cfg.replace(activation="linear", sigma_w2=0.5)
    f_lin = linearize(lin_cfg, params)

    def error(eps):
        moved = {**params, "W": params["W"] + eps * direction}
        return float(jnp.linalg.norm(ntk_rnn.apply(lin_cfg, moved, train.x) - f_lin(moved, train.x)))

    assert error(1e-2) / error(5e-3) == pytest.approx(4.0, rel=0.02)


def test_linearize_ignores_frozen_parameters(problem):
    cfg, params, train, _ = problem
    f_lin = linearize(cfg, params)
    shifted = {**params, "A": params["A"] + 1.0}
    np.testing.assert_array_equal(f_lin(shifted, train.x), f_lin(params, train.x))
    with pytest.raises(ValueError, match="x has token dimension 3"):
        f_lin(params, np.zeros((2, 3, 3)))


@pytest.fixture(scope="module")
def gd_pair(problem):
    cfg, params, train, test = problem
    tcfg = TrainConfig(steps=60, lr_scale=1.0, record_every=10, kernel_every=30)
    return train_paired(cfg, params, train, test, tcfg, jax.random.key(2), trace_points=2, progress=False)


def test_trained_linearized_model_matches_the_closed_form_at_every_step(gd_pair):
    h = gd_pair.history
    assert len(h) == 7
    assert h["closed_form_gap_train"].max() < 1e-8 and h["closed_form_gap_test"].max() < 1e-8


def test_paired_history_columns_and_trends(gd_pair):
    h = gd_pair.history
    assert h.loc[0, "gap_train"] == 0 and h.loc[0, "param_gap"] == 0
    assert np.all(np.diff(h["train_loss_lin"]) < 0) and np.all(np.diff(h["train_loss_true"]) < 0)
    assert np.all(h["gap_train"].iloc[1:] > 0) and np.all(h["gap_train_rel"].iloc[1:] < 1)
    assert list(h.dropna(subset=["kernel_drift"])["step"]) == [0, 30, 60]
    traced = gd_pair.outputs
    assert set(traced["model"]) == {"true", "lin", "closed_form"} and set(traced["split"]) == {"train", "test"}
    assert len(traced) == 7 * 2 * 3 * 2


def test_gap_shrinks_with_width(problem):
    """The true-minus-linearized gap falls as the width grows (theory.md §5: about m^(-1/2))."""
    _, _, train, test = problem
    gaps = []
    for m in (32, 512):
        cfg = ntk_rnn.RNNConfig(width=m, input_dim=4)
        tcfg = TrainConfig(steps=40, lr_scale=1.0, record_every=40, kernel_every=0)
        result = train_paired(cfg, ntk_rnn.init_params(cfg, jax.random.key(1)), train, test, tcfg, jax.random.key(2),
                              progress=False)  # fmt: skip
        gaps.append(result.history["gap_train_rel"].iloc[-1])
    assert gaps[1] < gaps[0] / 2


def test_gradient_flow_is_the_small_step_limit(problem):
    cfg, params, train, _ = problem
    K0 = ntk_rnn.empirical_ntk(cfg, params, train.x)
    f0 = np.asarray(ntk_rnn.apply(cfg, params, train.x)[:, 1:]).ravel()
    y = np.asarray(train.y[:, 1:]).ravel()
    lam_max = np.linalg.eigvalsh(K0)[-1]
    errors = []
    for scale in (0.1, 0.01):
        gd = KernelGD.from_kernel(K0, f0, y, scale / lam_max)
        steps = np.array([0, 1, 10, 100]) * round(1 / scale)  # the same times eta * t for both scales
        disc, flow = gd.train_outputs(steps), gd.train_outputs(steps, flow=True)
        errors.append(np.abs(disc - flow).max() / np.abs(flow - y).max())
    assert errors[1] < 0.02 and errors[1] < errors[0] / 5  # the gap is O(eta)


def test_trained_linearized_model_at_a_small_step_follows_gradient_flow(problem):
    """The third way: the trained linearized model with a small step against the closed-form flow."""
    cfg, params, train, test = problem
    K0 = ntk_rnn.empirical_ntk(cfg, params, train.x)
    f0 = np.asarray(ntk_rnn.apply(cfg, params, train.x)[:, 1:]).ravel()
    y = np.asarray(train.y[:, 1:]).ravel()
    errors = []
    for scale, steps in ((0.1, 100), (0.01, 1000)):  # the same time eta * steps
        tcfg = TrainConfig(steps=steps, lr_scale=scale, record_every=steps, kernel_every=0)
        result = train_paired(cfg, params, train, test, tcfg, jax.random.key(0), progress=False)
        trained = np.asarray(linearize(cfg, params)(result.params_lin, train.x)[:, 1:]).ravel()
        flow = KernelGD.from_kernel(K0, f0, y, result.summary["lr"]).train_outputs([steps], flow=True)[0]
        errors.append(np.linalg.norm(trained - flow) / np.linalg.norm(flow - f0))
    assert errors[1] < 0.01 and errors[1] < errors[0] / 5


def test_closed_form_with_a_singular_kernel_reports_the_null_space(problem):
    """Position 0 carries no W-signal (h_0 = 0): K_0 is singular, and nothing turns NaN."""
    cfg, params, train, test = problem
    tcfg = TrainConfig(steps=20, lr_scale=1.0, record_every=10, positions=(0, 2, 4))
    result = train_paired(cfg, params, train, test, tcfg, jax.random.key(2), trace_points=1, progress=False)
    assert result.summary["null_space_dim"] == train.n
    # NaN only where expected: relative gaps at step 0, kernel drift between kernel checkpoints
    assert np.isfinite(result.history.iloc[1:].drop(columns=["kernel_drift"]).to_numpy(float)).all()
    assert result.history["closed_form_gap_train"].max() < 1e-8
    assert result.history["closed_form_gap_test"].max() < 1e-8
    # the outputs at position 0 never move, in either model
    moved = result.outputs[(result.outputs["split"] == "train") & (result.outputs["point"] == 0)]
    assert np.ptp(moved["value"]) == 0


def test_same_minibatches_for_both_models(problem):
    """After one SGD step from the same start the two models agree exactly (same gradient at theta_0),
    which holds only if they drew the same minibatch."""
    cfg, params, train, test = problem
    tcfg = TrainConfig(steps=1, lr_scale=0.5, record_every=1, batch_size=2)
    result = train_paired(cfg, params, train, test, tcfg, jax.random.key(4), progress=False)
    assert result.history["param_gap"].iloc[-1] < 1e-15
    assert "closed_form_gap_train" not in result.history


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_optax_optimizers_run_in_both_models(problem, optimizer):
    cfg, params, train, test = problem
    lr = 1e-3 if optimizer == "adam" else None
    tcfg = TrainConfig(steps=20, lr=lr, lr_scale=0.3, record_every=10, optimizer=optimizer)
    h = train_paired(cfg, params, train, test, tcfg, jax.random.key(4), progress=False).history
    assert h["train_loss_true"].iloc[-1] < h["train_loss_true"].iloc[0]
    assert h["train_loss_lin"].iloc[-1] < h["train_loss_lin"].iloc[0]


def test_bad_step_size_and_test_set_are_refused(problem):
    cfg, params, train, test = problem
    with pytest.raises(ValueError, match=r"2 / lambda_max\(K_0\) = [\d.e+-]+ \(lambda_max\(K_0\) = "):
        train_paired(cfg, params, train, test, TrainConfig(steps=5, lr_scale=2.5), jax.random.key(0), progress=False)
    wrong = synthetic_sequences(jax.random.key(9), n=3, length=5, input_dim=5, delta=0.5)
    with pytest.raises(ValueError, match=r"test_data\.x has token dimension 5 but the config's input_dim is 4"):
        train_paired(cfg, params, train, wrong, TrainConfig(steps=5), jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="lbfgs")


def test_closed_form_for_a_per_sequence_readout(problem):
    _, _, train, test = problem
    cfg = ntk_rnn.RNNConfig(width=32, input_dim=4, parameterization="ntk", trainable=("W", "B"), readout="last")
    tcfg = TrainConfig(steps=30, lr_scale=1.0, record_every=10)
    result = train_paired(cfg, ntk_rnn.init_params(cfg, jax.random.key(1)), train, test, tcfg, jax.random.key(2),
                          progress=False)  # fmt: skip
    assert result.summary["positions"] is None
    assert result.history["closed_form_gap_train"].max() < 1e-8 and result.history["closed_form_gap_test"].max() < 1e-8
