"""The paper's loss as pure functions: against a numpy sum, per sample, and under jit, vmap and grad."""

import jax
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.network.loss import gradient_sq_norm, loss, per_sample_losses, residuals


def _draw(cfg, seed):
    """Parameters N(0, init_std^2) as ntk_rnn.init_params draws them, but with numpy: init_params compiles a
    sampler for every new shape."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}


@pytest.fixture(scope="module")
def problem():
    cfg = ntk_rnn.RNNConfig(width=20, input_dim=3, output_dim=2, trainable=("W", "B"))
    params = _draw(cfg, 0)
    x = np.random.default_rng(1).standard_normal((4, 5, 3))
    y = np.random.default_rng(2).standard_normal((4, 5, 2))
    return cfg, params, x, y


def test_loss_is_half_the_squared_error_at_the_positions(problem):
    cfg, params, x, y = problem
    out = np.asarray(ntk_rnn.apply(cfg, params, x))
    positions = (1, 2, 4)
    expected = 0.5 * sum(np.sum((out[i, p] - np.asarray(y)[i, p]) ** 2) for i in range(4) for p in positions)
    assert float(loss(cfg, params, x, y, positions)) == pytest.approx(expected, rel=1e-13)
    per_sample = np.asarray(per_sample_losses(cfg, params, x, y, positions))
    assert per_sample.shape == (4,) and per_sample.sum() == pytest.approx(expected, rel=1e-13)
    last = cfg.replace(readout="last")  # one output per sequence, against the last step's targets
    r = np.asarray(residuals(last, params, x, y, None))
    np.testing.assert_allclose(r, out[:, -1] - np.asarray(y)[:, -1], rtol=1e-13)


def test_loss_composes_with_jit_vmap_and_grad(problem):
    cfg, params, x, y = problem
    positions = (1, 2, 3, 4)
    value = loss(cfg, params, x, y, positions)
    jitted = jax.jit(loss, static_argnums=(0, 4))(cfg, params, x, y, positions)
    assert float(jitted) == pytest.approx(float(value), rel=1e-13)
    # per-sample losses by vmap over single-sequence batches equal the batched ones
    one = jax.vmap(lambda xi, yi: loss(cfg, params, xi[None], yi[None], positions))(x, y)
    np.testing.assert_allclose(one, per_sample_losses(cfg, params, x, y, positions), rtol=1e-13)
    # ||grad f||^2 = r^T K r over the trainable parameters (K by autodiff Jacobians)
    r = np.asarray(residuals(cfg, params, x, y, positions)).reshape(-1)
    K = ntk_rnn.empirical_ntk(cfg, params, x, positions=positions, method="jacobian")
    assert float(gradient_sq_norm(cfg, params, x, y, positions)) == pytest.approx(r @ K @ r, rel=1e-10)
