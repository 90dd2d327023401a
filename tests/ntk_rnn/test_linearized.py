"""The first-order Taylor model (linearize, taylor_outputs) and the closed form of GD on it (KernelGD)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.training.linearized import KernelGD, linearize


def test_linearize_is_the_first_order_taylor_model(train_test_problem):
    cfg, params, train, _ = train_test_problem
    f_lin = linearize(cfg, params)
    np.testing.assert_allclose(f_lin(params, train.x), ntk_rnn.apply(cfg, params, train.x), rtol=1e-14)
    direction = np.random.default_rng(5).standard_normal(params["W"].shape) / cfg.width
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


def test_linearize_ignores_frozen_parameters(train_test_problem):
    cfg, params, train, _ = train_test_problem
    f_lin = linearize(cfg, params)
    shifted = {**params, "A": params["A"] + 1.0}
    np.testing.assert_array_equal(f_lin(shifted, train.x), f_lin(params, train.x))
    with pytest.raises(ValueError, match="x has token dimension 3"):
        f_lin(params, np.zeros((2, 3, 3)))


def test_gradient_flow_is_the_small_step_limit(train_test_problem):
    cfg, params, train, _ = train_test_problem
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


def test_linearize_equals_an_independent_jvp_and_composes_with_jit(train_test_problem):
    """f_lin(params, x) = f(params0, x) + d/de f(params0 + e (params - params0), x) at e = 0, over every
    trainable parameter; and f_lin under jit and grad gives the same numbers."""
    cfg = ntk_rnn.RNNConfig(width=24, input_dim=4, sigma_b2=0.3, trainable=("W", "A", "b", "B"))
    rng = np.random.default_rng(3)  # N(0, init_std^2) as init_params draws, without compiling a sampler per shape
    params0 = {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}
    params = {k: v + 0.05 * rng.standard_normal(v.shape) for k, v in params0.items()}
    x = train_test_problem[2].x
    tangent = {k: params[k] - params0[k] for k in params0}
    f0, df = jax.jvp(lambda p: ntk_rnn.apply(cfg, p, x), (params0,), (tangent,))
    f_lin = ntk_rnn.linearize(cfg, params0)
    np.testing.assert_allclose(f_lin(params, x), f0 + df, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jax.jit(f_lin)(params, x), f0 + df, rtol=1e-12, atol=1e-14)
    # the Taylor model is affine in params: its gradient is J^T of the residual, the same at every params
    g1 = jax.grad(lambda p: jnp.sum(f_lin(p, x)))(params)
    g0 = jax.grad(lambda p: jnp.sum(f_lin(p, x)))(params0)
    for k in params:
        np.testing.assert_allclose(g1[k], g0[k], rtol=1e-12, atol=1e-14)
