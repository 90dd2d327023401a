"""The forward pass against a plain loop, and the initialization's statistics."""

import jax
import numpy as np
import pytest

import ntk_rnn


def test_apply_matches_a_plain_numpy_loop():
    cfg = ntk_rnn.RNNConfig(width=16, input_dim=3, output_dim=2)
    params = ntk_rnn.init_params(cfg, jax.random.key(0))
    x = np.asarray(jax.random.normal(jax.random.key(1), (4, 5, 3)))
    W, A, B = (np.asarray(params[k]) for k in "WAB")
    y = np.zeros((4, 5, 2))
    for i in range(4):
        h = np.zeros(16)
        for t in range(5):
            h = np.maximum(W @ h + A @ x[i, t], 0.0)
            y[i, t] = B @ h
    out = ntk_rnn.apply(cfg, params, x)
    assert out.shape == (4, 5, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out, y, rtol=1e-12, atol=1e-14)


def test_init_variances_are_the_papers():
    cfg = ntk_rnn.RNNConfig(width=512, input_dim=64, output_dim=4)
    params = ntk_rnn.init_params(cfg, jax.random.key(0))
    # sample variance of N(0, s2) over k entries has relative standard error sqrt(2/k)
    for name, s2 in (("W", 2 / 512), ("A", 2 / 512), ("B", 1 / 4)):
        k = params[name].size
        assert abs(float(params[name].var()) / s2 - 1) < 5 * np.sqrt(2 / k), name
    assert set(params) == {"W", "A", "B"}
    assert params["W"].shape == (512, 512) and params["A"].shape == (512, 64) and params["B"].shape == (4, 512)


def test_same_key_same_params_and_different_key_different():
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=2)
    a, b = ntk_rnn.init_params(cfg, jax.random.key(3)), ntk_rnn.init_params(cfg, jax.random.key(3))
    c = ntk_rnn.init_params(cfg, jax.random.key(4))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W"], c["W"])


def test_forward_stability_with_unit_tokens():
    """relu with W ~ N(0, 2/m) and unit tokens: ||h_l||^2 grows like l (theory.md §3), not exponentially."""
    cfg = ntk_rnn.RNNConfig(width=2048, input_dim=4)
    params = ntk_rnn.init_params(cfg, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 12, 4))
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    _, h = ntk_rnn.hidden_states(cfg, params, x)
    sq = np.asarray((h**2).sum(-1))
    np.testing.assert_allclose(sq / np.arange(1, 13), 1.0, rtol=0.25)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(width=0, input_dim=2), "width must be a positive int"),
        (dict(width=4, input_dim=2, activation="gelu"), "activation must be one of"),
        (dict(width=4, input_dim=2, sigma_w2=-1.0), "sigma_w2 must be a positive"),
        (dict(width=4, input_dim=2, trainable=("W", "Q")), "trainable must be a non-empty subset"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ntk_rnn.RNNConfig(**kwargs)
