"""Training with kernel tracking: identities the records must satisfy, determinism, and failures."""

import jax
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.apps.datasets import synthetic_sequences
from ntk_rnn.network.loss import loss, residuals
from ntk_rnn.training.train import TrainConfig, TrainingDivergedError, run_steps, spectral_norm, train, train_step


def _draw(cfg, seed):
    """Parameters N(0, init_std^2) as ntk_rnn.init_params draws them, but with numpy: init_params compiles a
    sampler for every new shape."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}


@pytest.fixture(scope="module")
def problem():
    data = synthetic_sequences(key=jax.random.key(0), n=6, length=5, input_dim=4, delta=0.5)
    cfg = ntk_rnn.RNNConfig(width=64, input_dim=4)
    params = _draw(cfg, 1)
    return cfg, params, data


@pytest.fixture(scope="module")
def gd_run(problem):
    cfg, params, data = problem
    tcfg = TrainConfig(steps=60, lr_scale=1.0, record_every=10, kernel_every=20)
    return train(cfg, params, data, tcfg, key=jax.random.key(2), progress=False)


def test_gd_records_and_decreases_the_loss(gd_run):
    h = gd_run.history
    assert list(h["step"]) == [0, 10, 20, 30, 40, 50, 60]
    assert np.all(np.diff(h["loss"]) < 0)
    assert h.loc[0, "w_distance_fro"] == 0 and h.loc[0, "omega"] == 0 and h.loc[0, "pattern_flip_fraction"] == 0
    assert np.all(np.diff(h["w_distance_fro"]) > 0)
    kernel_rows = h.dropna(subset=["lambda_min"])
    assert list(kernel_rows["step"]) == [0, 20, 40, 60]
    assert kernel_rows["kernel_drift"].iloc[0] == 0 and np.all(kernel_rows["kernel_drift"].iloc[1:] > 0)


def test_gradient_ratio_is_at_least_one(gd_run):
    """||grad f||^2 = r^T K r >= 2 lambda_min(K) f at every kernel checkpoint (docs/theory.md §4)."""
    ratios = gd_run.history["gradient_ratio"].dropna()
    assert len(ratios) == 4 and np.all(ratios >= 1 - 1e-9)


def test_autodiff_gradient_norm_equals_residual_kernel_form(problem, gd_run):
    """The autodiff ||grad f||^2 recorded at step 0 equals r^T K_0 r from the structured kernel."""
    cfg, params, data = problem
    r = np.asarray(residuals(cfg, params, data.x, data.y, tuple(range(1, 5)))).reshape(-1)
    K0 = ntk_rnn.empirical_ntk(cfg, params, data.x)
    assert gd_run.history.loc[0, "grad_sq_norm"] == pytest.approx(r @ K0 @ r, rel=1e-10)
    assert gd_run.summary["lambda_max_0"] == pytest.approx(np.linalg.eigvalsh(K0)[-1], rel=1e-10)
    assert gd_run.summary["lr"] == pytest.approx(1.0 / gd_run.summary["lambda_max_0"])


def test_omega_is_sqrt_m_times_spectral_norm_of_the_weight_change(problem, gd_run):
    cfg, params, _ = problem
    dW = np.asarray(gd_run.params["W"] - params["W"])
    assert gd_run.history["omega"].iloc[-1] == pytest.approx(np.sqrt(cfg.width) * np.linalg.norm(dW, 2), rel=1e-8)
    assert gd_run.history["w_distance_fro"].iloc[-1] == pytest.approx(np.linalg.norm(dW), rel=1e-12)
    # in the "ntk" parameterization omega measures the effective matrix c_W W, as the probes' omega does
    ntk = cfg.replace(parameterization="ntk")
    ntk_params = _draw(ntk, 1)
    run = train(ntk, ntk_params, problem[2], TrainConfig(steps=10, kernel_every=0), key=jax.random.key(2),
                progress=False)  # fmt: skip
    dW = np.asarray(run.params["W"] - ntk_params["W"])
    c_W = np.sqrt(2.0 / cfg.width)
    assert run.history["omega"].iloc[-1] == pytest.approx(np.sqrt(cfg.width) * c_W * np.linalg.norm(dW, 2), rel=1e-8)


def test_spectral_norm_matches_dense_svd():
    a = np.random.default_rng(0).standard_normal((50, 40))
    assert spectral_norm(a) == pytest.approx(np.linalg.norm(a, 2), rel=1e-10)
    assert spectral_norm(np.zeros((5, 5))) == 0.0


def test_only_trainable_parameters_move(problem, gd_run):
    _, params, _ = problem
    assert np.array_equal(gd_run.params["A"], params["A"]) and np.array_equal(gd_run.params["B"], params["B"])
    assert not np.array_equal(gd_run.params["W"], params["W"])


def test_sgd_with_the_full_batch_is_gd(problem, gd_run):
    cfg, params, data = problem
    tcfg = TrainConfig(steps=60, lr_scale=1.0, record_every=10, kernel_every=20, batch_size=data.n)
    sgd = train(cfg, params, data, tcfg, key=jax.random.key(5), progress=False)
    np.testing.assert_allclose(sgd.history["loss"], gd_run.history["loss"], rtol=1e-9)


def test_sgd_is_seeded(problem):
    cfg, params, data = problem
    tcfg = TrainConfig(steps=30, lr_scale=0.2, record_every=10, kernel_every=0, batch_size=1)
    a = train(cfg, params, data, tcfg, key=jax.random.key(3), progress=False).history
    b = train(cfg, params, data, tcfg, key=jax.random.key(3), progress=False).history
    c = train(cfg, params, data, tcfg, key=jax.random.key(4), progress=False).history
    assert a.equals(b)
    assert not np.allclose(a["loss"], c["loss"])
    assert list(a.dropna(subset=["lambda_min"])["step"]) == [0, 30]


def test_divergence_names_step_and_step_size_and_keeps_rows(problem):
    cfg, params, data = problem
    tcfg = TrainConfig(steps=200, lr=1.0, record_every=5, kernel_every=0, batch_size=1)
    with pytest.raises(TrainingDivergedError, match=r"diverged at step \d+ with step size eta=1") as err:
        train(cfg, params, data, tcfg, key=jax.random.key(0), progress=False)
    assert len(err.value.history) >= 1 and err.value.history.loc[0, "step"] == 0


def test_full_batch_step_above_the_stability_bound_is_refused(problem):
    cfg, params, data = problem
    with pytest.raises(ValueError, match=r"at or above 2 / lambda_max\(K_0\) = [\d.]+ \(lambda_max\(K_0\) = [\d.]+\)"):
        train(cfg, params, data, TrainConfig(steps=5, lr_scale=2.5), key=jax.random.key(0), progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=0), "steps must be a positive int"),
        (dict(record_every=10, kernel_every=15), "kernel_every must be 0 or a positive multiple"),
        (dict(lr=-1.0), "lr must be a positive finite"),
        (dict(lr_scale=float("nan")), "lr_scale must be a positive finite"),
    ],
)
def test_train_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_train_input_validation(problem):
    cfg, params, data = problem
    with pytest.raises(ValueError, match="batch_size=7 exceeds the number of samples n=6"):
        train(cfg, params, data, TrainConfig(batch_size=7), key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match="positions must lie in"):
        train(cfg, params, data, TrainConfig(positions=(9,)), key=jax.random.key(0), progress=False)


def test_observed_rate_is_at_least_the_slowest_mode_rate(gd_run):
    """Near the kernel regime the loss falls at least as fast as the slowest linearized mode allows
    (up to the kernel drift), so the fitted log-rate is not slower than the prediction by much."""
    s = gd_run.summary
    assert s["fitted_log_rate"] < 0.5 * s["predicted_log_rate"]


@pytest.mark.parametrize(
    "options",
    [
        dict(parameterization="ntk", activation="erf", sigma_b2=0.5, trainable=("W", "A", "b", "B"), readout="mean"),
        dict(parameterization="standard", activation="tanh", trainable=("A", "B"), readout="last"),
        dict(sigma_b2=0.2, trainable=("W", "b")),
    ],
)
def test_gradient_identity_for_other_architectures(options):
    """||grad f||^2 = r^T K_0 r over every trainable parameter, for other options too."""
    data = synthetic_sequences(key=jax.random.key(0), n=4, length=4, input_dim=3, delta=0.5)
    cfg = ntk_rnn.RNNConfig(width=32, input_dim=3, **options)
    params = _draw(cfg, 1)
    result = train(cfg, params, data, TrainConfig(steps=20, lr_scale=0.5, kernel_every=10), key=jax.random.key(2),
                   progress=False)  # fmt: skip
    positions = None if cfg.readout != "all" else tuple(range(1, 4))
    r = np.asarray(residuals(cfg, params, data.x, data.y, positions)).reshape(-1)
    K0 = ntk_rnn.empirical_ntk(cfg, params, data.x, method="jacobian")
    assert result.history.loc[0, "grad_sq_norm"] == pytest.approx(r @ K0 @ r, rel=1e-10)
    assert np.all(result.history["gradient_ratio"].dropna() >= 1 - 1e-9)
    assert result.history["loss"].iloc[-1] < result.history["loss"].iloc[0]


def test_run_steps_is_a_scan_of_train_step(problem):
    """run_steps (jitted, one lax.scan) equals a Python loop of jitted train_step calls, and a train_step
    by hand: theta - eta grad f for plain GD."""
    cfg, params, data = problem
    tcfg = TrainConfig(steps=5)
    lr, positions = 0.01, (1, 2, 3, 4)
    theta = {"W": params["W"]}
    optimizer = tcfg.make_optimizer(lr)
    state = optimizer.init(theta)
    step = jax.jit(train_step, static_argnums=(0, 1, 7))
    looped, s = theta, state
    for _ in range(5):
        looped, s, _ = step(cfg, optimizer, params, looped, s, data.x, data.y, positions)
    scanned, _, losses = run_steps(cfg, tcfg, params, theta, state, data.x, data.y, lr, key=jax.random.key(0),
                                   step0=0, num_steps=5, positions=positions)  # fmt: skip
    np.testing.assert_allclose(scanned["W"], looped["W"], rtol=1e-12, atol=1e-15)
    grad = jax.grad(lambda W: loss(cfg, {**params, "W": W}, data.x, data.y, positions))(params["W"])
    first, _, value = train_step(cfg, optimizer, params, theta, state, data.x, data.y, positions)
    np.testing.assert_allclose(first["W"], params["W"] - lr * grad, rtol=1e-12, atol=1e-15)
    assert float(value) == pytest.approx(float(losses[0]), rel=1e-12)
    assert float(value) == pytest.approx(float(loss(cfg, params, data.x, data.y, positions)), rel=1e-12)
