"""Perturbation probes against explicit products, closed forms and the paper's predicted trends."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn import probes
from ntk_rnn.training.fitting import power_law_fit


def _numpy_states(cfg, params, x):
    """g, h (n, L, m) by an explicit loop (paper parameterization, no bias)."""
    W, A = np.asarray(params["W"]), np.asarray(params["A"])
    phi = {"relu": lambda u: np.maximum(u, 0.0), "linear": lambda u: u, "tanh": np.tanh}[cfg.activation]
    n, length, _ = x.shape
    g = np.zeros((n, length, cfg.width))
    h = np.zeros_like(g)
    prev = np.zeros((n, cfg.width))
    for t in range(length):
        g[:, t] = prev @ W.T + x[:, t] @ A.T
        h[:, t] = prev = phi(g[:, t])
    return g, h


def _draw(cfg, seed):
    """Parameters N(0, init_std^2) as ntk_rnn.init_params draws them, but with numpy: init_params compiles a
    sampler for every new shape, and these tests use many widths."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}


def _setup(width=16, activation="relu", n=3, length=5, output_dim=1, seed=0):
    cfg = ntk_rnn.RNNConfig(width=width, input_dim=4, output_dim=output_dim, activation=activation)
    data = ntk_rnn.synthetic_sequences(n, length, 4, output_dim=output_dim, key=jax.random.key(seed + 100))
    return cfg, _draw(cfg, seed), data


def test_forward_norms_match_a_numpy_loop_and_the_relu_limit_is_sqrt_l():
    cfg, params, data = _setup()
    _, h = _numpy_states(cfg, params, np.asarray(data.x))
    np.testing.assert_allclose(probes.forward_norms(cfg, params, data.x), np.linalg.norm(h, axis=-1), rtol=1e-12)
    # relu, sigma_w2 = sigma_u2 = 2, unit tokens: ||h_l||^2 -> ||h_{l-1}||^2 + 1, so l + 1 at 0-based step l
    expected = np.sqrt(np.arange(1, 6))[None].repeat(3, axis=0)
    np.testing.assert_allclose(probes.limit_forward_norms(cfg, data.x), expected, rtol=1e-12)


@pytest.mark.slow
def test_forward_stability_trends():
    """relu: polynomial growth, at the limit's level once m is large; linear: x sqrt(2) per step; tanh saturates."""
    cfg, _, data = _setup(width=2048, n=4, length=8)
    runs = np.array([probes.forward_norms(cfg, _draw(cfg, s), data.x) for s in range(4)])
    limit = probes.limit_forward_norms(cfg, data.x)
    np.testing.assert_allclose(runs.mean(axis=(0, 1)), limit.mean(axis=0), rtol=0.1)
    linear = cfg.replace(activation="linear")
    norms = probes.forward_norms(linear, _draw(linear, 0), data.x).mean(axis=0)
    assert norms[-1] / norms[-2] == pytest.approx(np.sqrt(2), rel=0.1)
    tanh = ntk_rnn.RNNConfig(width=64, input_dim=4, activation="tanh")
    long = ntk_rnn.synthetic_sequences(2, 40, 4, key=jax.random.key(5)).x
    norms = probes.forward_norms(tanh, _draw(tanh, 0), long)
    assert np.all(norms[:, -1] < np.sqrt(64)) and np.all(norms[:, -1] > 0.3 * np.sqrt(64))  # saturated, not 2^20


def test_backward_norms_match_explicit_products():
    cfg, params, data = _setup(width=12, output_dim=2)
    x = np.asarray(data.x)
    g, _ = _numpy_states(cfg, params, x)
    W, B = np.asarray(params["W"]), np.asarray(params["B"])
    got = probes.backward_norms(cfg, params, x)
    for i in range(x.shape[0]):
        for step in range(x.shape[1]):
            for a in range(x.shape[1]):
                if a > step:
                    assert np.isnan(got[i, step, a])
                    continue
                product = B
                for j in range(step, a - 1, -1):
                    product = product @ np.diag((g[i, j] > 0).astype(float)) @ W
                assert got[i, step, a] == pytest.approx(np.linalg.norm(product, 2), rel=1e-10)


def test_limit_backward_norms_closed_forms():
    cfg, _, data = _setup(length=6)
    relu = probes.limit_backward_norms(cfg, data.x)
    lower = np.tril(np.ones((6, 6), bool))
    np.testing.assert_allclose(relu[:, lower], 1.0, rtol=1e-12)  # sigma_v2 = 1, sigma_w2 k = 2 * 1/2
    assert np.all(np.isnan(relu[:, ~lower]))
    linear = probes.limit_backward_norms(cfg.replace(activation="linear", sigma_v2=3.0), data.x)
    distance = np.subtract.outer(np.arange(6), np.arange(6))
    np.testing.assert_allclose(linear[0][lower], np.sqrt(3.0 * 2.0 ** (distance[lower] + 1)), rtol=1e-12)


@pytest.mark.slow
def test_relu_backward_norms_approach_the_flat_limit():
    cfg, _, data = _setup(width=2048, n=2, length=6)
    runs = [probes.backward_norms(cfg, _draw(cfg, s), data.x) for s in range(3)]
    lower = np.tril(np.ones((6, 6), bool))
    normalized = np.array(runs)[:, :, lower].mean(axis=(0, 1)) / np.sqrt(2048)
    np.testing.assert_allclose(normalized, 1.0, rtol=0.15)


def test_product_norms_match_dense_products():
    cfg, params, data = _setup(width=24, length=6)
    x = np.asarray(data.x)
    g, _ = _numpy_states(cfg, params, x)
    W = np.asarray(params["W"])
    got = probes.product_norms(cfg, params, x, start=2, sample=1)
    assert np.all(np.isnan(got[:2]))
    product = np.eye(24)
    for step in range(2, 6):
        product = np.diag((g[1, step] > 0).astype(float)) @ W @ product
        assert got[step] == pytest.approx(np.linalg.norm(product, 2), rel=1e-8)
    selected = probes.product_norms(cfg, params, x, start=2, sample=1, distances=(2, 0))
    np.testing.assert_allclose(selected[[2, 4]], got[[2, 4]], rtol=1e-8)
    assert np.all(np.isnan(selected[[0, 1, 3, 5]]))
    for bad in ((), (4,), (-1,), (1.0,)):
        with pytest.raises(ValueError, match=r"distances must be a non-empty sequence of ints l - start in 0\.\.3"):
            probes.product_norms(cfg, params, x, start=2, distances=bad)
    with pytest.raises(ValueError, match=r"start must be in 1\.\.5"):
        probes.product_norms(cfg, params, x, start=0)
    with pytest.raises(ValueError, match=r"sample must be in 0\.\.2"):
        probes.product_norms(cfg, params, x, sample=3)


@pytest.mark.parametrize("kind", probes.KINDS)
def test_directions_have_the_requested_spectral_norm(kind):
    cfg, params, data = _setup(width=20)
    delta = probes.perturbation_direction(cfg, params, data.x, kind, 0.3, key=jax.random.key(1), y=data.y)
    assert np.linalg.norm(np.asarray(delta), 2) == pytest.approx(0.3 / np.sqrt(20), rel=1e-10)


def test_flip_direction_flips_the_most_signs_at_one_step():
    """At every omega the flip direction's largest per-(sample, step) flip count beats the other kinds'
    (same key), with ||Delta||_2 = omega / sqrt(m); the counts add up to the flip fractions."""
    cfg, params, data = _setup(width=128, n=4, length=6)
    for omega in (0.1, 0.3, 1.0):
        most = {}
        for kind in probes.KINDS:
            delta = probes.perturbation_direction(cfg, params, data.x, kind, omega, key=jax.random.key(1), y=data.y)
            response = probes.perturbation_response(cfg, params, data.x, delta)
            assert response.flip_count.shape == (4, 6) and response.flip_count.dtype.kind == "i"
            np.testing.assert_array_equal(response.flip_count.sum(axis=0) / (4 * 128), response.flip_fraction)
            most[kind] = response.flip_count[:, 1:].max()
        assert all(most["flip"] >= most[k] for k in ("random", "gradient", "adversarial")), (omega, most)
        assert most["flip"] > most["random"], (omega, most)
        assert np.linalg.norm(np.asarray(delta), 2) == pytest.approx(omega / np.sqrt(128), rel=1e-10)


def test_backward_change_matches_dense_products():
    """||B D'_l (W + Delta) ... D'_a (W + Delta) - B D_l W ... D_a W||_2 / ||B||_2 by explicit numpy products."""
    cfg, params, data = _setup(width=10, n=2, length=4, output_dim=2)
    x = np.asarray(data.x)
    zero = probes.perturbation_response(cfg, params, x, np.zeros((10, 10))).backward_change
    lower = np.tril(np.ones((4, 4), bool))
    assert np.all(zero[:, lower] == 0) and np.all(np.isnan(zero[:, ~lower]))
    delta = np.asarray(probes.perturbation_direction(cfg, params, x, "random", 2.0, key=jax.random.key(8)))
    got = probes.perturbation_response(cfg, params, x, delta).backward_change
    moved = {**params, "W": params["W"] + delta}
    g, _ = _numpy_states(cfg, params, x)
    g1, _ = _numpy_states(cfg, moved, x)
    assert np.any((g > 0) != (g1 > 0))  # the reference covers changed signs, not only W + Delta
    W, B = np.asarray(params["W"]), np.asarray(params["B"])
    for i in range(2):
        for step in range(4):
            for a in range(step + 1):
                before, after = B, B
                for j in range(step, a - 1, -1):
                    before = before @ np.diag((g[i, j] > 0).astype(float)) @ W
                    after = after @ np.diag((g1[i, j] > 0).astype(float)) @ (W + delta)
                expected = np.linalg.norm(after - before, 2) / np.linalg.norm(B, 2)
                assert got[i, step, a] == pytest.approx(expected, rel=1e-10)
    assert np.all(np.isnan(got[:, ~lower]))


def test_ntk_parameterization_perturbs_the_effective_matrix():
    cfg = ntk_rnn.RNNConfig(width=16, input_dim=4, parameterization="ntk")
    params = _draw(cfg, 0)
    x = ntk_rnn.synthetic_sequences(2, 4, 4, key=jax.random.key(1)).x
    delta = probes.perturbation_direction(cfg, params, x, "random", 0.5, key=jax.random.key(2))
    moved = {**params, "W": params["W"] + delta / cfg.multipliers["W"]}
    change = cfg.multipliers["W"] * (moved["W"] - params["W"])
    assert np.linalg.norm(np.asarray(change), 2) == pytest.approx(0.5 / 4, rel=1e-10)
    assert probes.perturbation_response(cfg, params, x, delta).first_order > 0


def test_relu_signs_do_not_flip_as_omega_goes_to_zero():
    cfg, params, data = _setup(width=64)
    small = [
        probes.perturbation_response(
            cfg,
            params,
            data.x,
            probes.perturbation_direction(cfg, params, data.x, "random", omega, key=jax.random.key(3)),
        )
        for omega in (1e-7, 1e-6)
    ]
    assert all(np.all(r.flip_fraction == 0) for r in small)
    # without flips a relu network is piecewise linear in W: hidden changes scale exactly with omega
    np.testing.assert_allclose(small[1].hidden_change, 10 * small[0].hidden_change, rtol=1e-6)


def test_linear_first_order_error_is_the_exact_second_order_term():
    """Linear RNN, L = 3: y_2 = B (W^2 A x_0 + W A x_1 + A x_2), so the Taylor error of y_2 is exactly
    B Delta^2 A x_0, and y_1 is linear in W (no error)."""
    cfg, params, data = _setup(width=10, activation="linear", length=3)
    delta = probes.perturbation_direction(cfg, params, data.x, "random", 0.7, key=jax.random.key(4))
    response = probes.perturbation_response(cfg, params, data.x, delta)
    B, A, D = (np.asarray(a) for a in (params["B"], params["A"], delta))
    x = np.asarray(data.x)
    second = np.stack([np.zeros((3, 1)), x[:, 0] @ A.T @ D.T @ D.T @ B.T], axis=1)  # (n, positions 1..2, d)
    assert response.first_order_error * response.first_order == pytest.approx(np.linalg.norm(second), rel=1e-10)


def test_adversarial_moves_the_outputs_at_least_as_much_as_its_random_start():
    cfg, params, data = _setup(width=32)
    key = jax.random.key(6)
    change = {}
    for kind in ("random", "adversarial"):
        delta = probes.perturbation_direction(cfg, params, data.x, kind, 0.5, key=key, ascent_steps=4)
        moved = {**params, "W": params["W"] + delta}
        change[kind] = float(jnp.linalg.norm(ntk_rnn.apply(cfg, moved, data.x) - ntk_rnn.apply(cfg, params, data.x)))
    assert change["adversarial"] > change["random"]


@pytest.mark.slow
def test_perturbation_trends_at_small_size():
    """Hidden states move linearly in omega; flips grow like a power of omega between 2/3 and 1."""
    cfg, params, data = _setup(width=512, n=8, length=6)
    omegas = np.logspace(-1.5, 0.5, 5)
    responses = [
        probes.perturbation_response(
            cfg, params, data.x, probes.perturbation_direction(cfg, params, data.x, "random", w, key=jax.random.key(7))
        )
        for w in omegas
    ]
    hidden = power_law_fit(omegas, [r.hidden_change.max() for r in responses])
    flips = [r.flip_fraction[1:].mean() for r in responses]
    assert np.all(np.array(flips) > 0)
    flips = power_law_fit(omegas, flips)
    assert hidden["slope"] == pytest.approx(1.0, abs=0.1)
    assert 0.5 < flips["slope"] < 1.2, flips


def test_bad_arguments_raise_clear_errors():
    cfg, params, data = _setup()
    key = jax.random.key(0)
    for omega in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="omega must be a finite number > 0"):
            probes.perturbation_direction(cfg, params, data.x, "random", omega, key=key)
    with pytest.raises(ValueError, match="kind must be one of"):
        probes.perturbation_direction(cfg, params, data.x, "sideways", 0.1, key=key)
    with pytest.raises(ValueError, match="flip_candidates must be an int >= 1"):
        probes.perturbation_direction(cfg, params, data.x, "flip", 0.1, key=key, flip_candidates=0)
    with pytest.raises(ValueError, match="kind='flip' needs a step l >= 1"):
        probes.perturbation_direction(cfg, params, data.x[:, :1], "flip", 0.1, key=key, positions=(0,))
    with pytest.raises(ValueError, match="needs the targets y"):
        probes.perturbation_direction(cfg, params, data.x, "gradient", 0.1, key=key)
    with pytest.raises(ValueError, match="positions"):
        probes.perturbation_direction(cfg, params, data.x, "adversarial", 0.1, key=key, positions=(7,))
    with pytest.raises(ValueError, match="delta must be a finite"):
        probes.perturbation_response(cfg, params, data.x, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="positions"):
        probes.perturbation_response(cfg, params, data.x, np.zeros((16, 16)), positions=(-9,))
