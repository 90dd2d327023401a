"""The model as pure functions: the forward pass against a plain loop, the initialization, and jit, vmap
and grad composing with apply."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_rnn


def test_apply_matches_a_plain_numpy_loop():
    cfg = ntk_rnn.RNNConfig(width=16, input_dim=3, output_dim=2)
    params = ntk_rnn.init_params(cfg, key=jax.random.key(0))
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
    params = ntk_rnn.init_params(cfg, key=jax.random.key(0))
    # sample variance of N(0, s2) over k entries has relative standard error sqrt(2/k)
    for name, s2 in (("W", 2 / 512), ("A", 2 / 512), ("B", 1 / 4)):
        k = params[name].size
        assert abs(float(params[name].var()) / s2 - 1) < 5 * np.sqrt(2 / k), name
    assert set(params) == {"W", "A", "B"}
    assert params["W"].shape == (512, 512) and params["A"].shape == (512, 64) and params["B"].shape == (4, 512)


def test_same_key_same_params_and_different_key_different():
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=2)
    a, b = ntk_rnn.init_params(cfg, key=jax.random.key(3)), ntk_rnn.init_params(cfg, key=jax.random.key(3))
    c = ntk_rnn.init_params(cfg, key=jax.random.key(4))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W"], c["W"])


def test_forward_stability_with_unit_tokens():
    """relu with W ~ N(0, 2/m) and unit tokens: ||h_l||^2 grows like l (docs/theory.md §3), not exponentially."""
    cfg = ntk_rnn.RNNConfig(width=2048, input_dim=4)
    params = ntk_rnn.init_params(cfg, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 12, 4))
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    _, h = ntk_rnn.hidden_states(cfg, params, x)
    sq = np.asarray((h**2).sum(-1))
    np.testing.assert_allclose(sq / np.arange(1, 13), 1.0, rtol=0.25)


# --------------------------------------------------------------------------- composing with JAX


@pytest.fixture(scope="module")
def model():
    cfg = ntk_rnn.RNNConfig(width=24, input_dim=3, output_dim=2, sigma_b2=0.2, trainable=("W", "A", "b", "B"))
    params = ntk_rnn.init_params(cfg, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, 4, 3))
    return cfg, params, x


def test_apply_under_jit_equals_the_plain_call(model):
    cfg, params, x = model
    plain = ntk_rnn.apply(cfg, params, x)
    jitted = jax.jit(lambda p, x: ntk_rnn.apply(cfg, p, x))(params, x)
    static = jax.jit(ntk_rnn.apply, static_argnums=0)(cfg, params, x)
    np.testing.assert_allclose(jitted, plain, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(static, plain, rtol=1e-13, atol=1e-15)


def test_apply_under_vmap_over_initializations_and_over_batches(model):
    cfg, params, x = model
    keys = jax.random.split(jax.random.key(7), 3)
    ensemble = jax.vmap(lambda k: ntk_rnn.init_params(cfg, key=k))(keys)
    out = jax.vmap(lambda p: ntk_rnn.apply(cfg, p, x))(ensemble)
    assert out.shape == (3, 5, 4, 2)
    for i, k in enumerate(keys):
        np.testing.assert_allclose(out[i], ntk_rnn.apply(cfg, ntk_rnn.init_params(cfg, key=k), x), rtol=1e-13)
    batches = jnp.stack([x, 2.0 * x])
    out = jax.vmap(lambda xb: ntk_rnn.apply(cfg, params, xb))(batches)
    np.testing.assert_allclose(out[1], ntk_rnn.apply(cfg, params, 2.0 * x), rtol=1e-13)
    # one sequence at a time, as a (1, L, d_x) batch, gives the batch's rows
    rows = jax.vmap(lambda s: ntk_rnn.apply(cfg, params, s[None])[0])(x)
    np.testing.assert_allclose(rows, ntk_rnn.apply(cfg, params, x), rtol=1e-13)


def test_grad_of_a_loss_built_from_apply_matches_central_differences(model):
    cfg, params, x = model
    y = jax.random.normal(jax.random.key(2), (5, 4, 2))

    def loss(p):
        return 0.5 * jnp.sum((ntk_rnn.apply(cfg, p, x) - y) ** 2)

    grads = jax.grad(loss)(params)
    jitted = jax.jit(jax.grad(loss))(params)
    direction = {k: jax.random.normal(jax.random.fold_in(jax.random.key(3), i), v.shape)
                 for i, (k, v) in enumerate(params.items())}  # fmt: skip
    eps = 1e-5
    shifted = lambda s: {k: params[k] + s * eps * direction[k] for k in params}  # noqa: E731
    numeric = (loss(shifted(1)) - loss(shifted(-1))) / (2 * eps)
    analytic = sum(jnp.vdot(grads[k], direction[k]) for k in params)
    assert float(analytic) == pytest.approx(float(numeric), rel=1e-7)
    for k in params:
        np.testing.assert_allclose(jitted[k], grads[k], rtol=1e-12, atol=1e-15)


def test_structure_errors_are_clear_under_jit(model):
    cfg, params, x = model
    f = jax.jit(lambda p, x: ntk_rnn.apply(cfg, p, x))
    with pytest.raises(ValueError, match=r"x has token dimension 4 but the config's input_dim is 3"):
        f(params, jnp.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(24, 24\)"):
        f({**params, "W": jnp.zeros((3, 3))}, x)
    with pytest.raises(ValueError, match="missing \\['b'\\]"):
        f({k: v for k, v in params.items() if k != "b"}, x)


def test_flat_outputs_are_in_the_kernels_row_order(model):
    cfg, params, x = model
    y = np.asarray(ntk_rnn.apply(cfg, params, x))
    flat = np.asarray(ntk_rnn.flat_outputs(cfg, params, x, (3, 1)))
    assert flat.shape == (5 * 2 * 2,)
    np.testing.assert_array_equal(flat.reshape(5, 2, 2), y[:, [3, 1]])
    last = cfg.replace(readout="last")  # B h_L alone: another product than B h for all steps, equal to rounding
    gap = np.abs(np.asarray(ntk_rnn.flat_outputs(last, params, x, None)) - y[:, -1].reshape(-1)).max()
    assert gap <= 1e-12 * np.abs(y).max()


def test_importing_the_package_enables_float64():
    assert jax.config.jax_enable_x64
    assert ntk_rnn.apply(*_tiny()).dtype == jnp.float64


def _tiny():
    cfg = ntk_rnn.RNNConfig(width=4, input_dim=2)
    return cfg, ntk_rnn.init_params(cfg, key=jax.random.key(0)), np.ones((1, 2, 2), np.float32)


# ----------------------------------------------------------------------------- PyTorch's layouts


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_concat_stacking_and_both_biases_match_a_plain_loop():
    """A two-layer bidirectional tanh Elman RNN as PyTorch stacks it: layer 1 of both directions reads
    [h_forward; h_reverse] of layer 0 at the same step; y = B h_f + B_reverse h_r + bo; right-padded lengths."""
    cfg = ntk_rnn.RNNConfig(width=5, input_dim=3, output_dim=2, activation="tanh", num_layers=2, bidirectional=True,
                            stacking="concat", sigma_b2=0.5, hidden_bias=True, output_bias=True)  # fmt: skip
    params = ntk_rnn.init_params(cfg, key=jax.random.key(0))
    assert cfg.param_shapes["A_l1"] == (5, 10) and cfg.param_shapes["A_l1_reverse"] == (5, 10)
    np.testing.assert_array_equal(params["bo"], 0.0)  # the readout bias starts at 0
    params = {**params, "bo": jnp.array([0.5, -1.0])}
    p = {k: np.asarray(v) for k, v in params.items()}
    x = np.asarray(jax.random.normal(jax.random.key(1), (3, 6, 3)))
    lengths = np.array([6, 2, 4])

    def run(inputs, layer, direction):
        s = layer + direction
        h, out = np.zeros(5), []
        for u in inputs:
            h = np.tanh(p["W" + s] @ h + p["bh" + s] + p["A" + s] @ u + p["b" + s])
            out.append(h)
        return np.array(out)

    y = np.zeros((3, 6, 2))
    for i, n in enumerate(lengths):
        seq = x[i, :n]
        f0, r0 = run(seq, "", ""), run(seq[::-1], "", "_reverse")[::-1]
        both = np.concatenate([f0, r0], axis=1)
        f1, r1 = run(both, "_l1", ""), run(both[::-1], "_l1", "_reverse")[::-1]
        y[i, :n] = f1 @ p["B"].T + r1 @ p["B_reverse"].T + p["bo"]
    np.testing.assert_allclose(ntk_rnn.apply(cfg, params, x, lengths), y, rtol=1e-12, atol=1e-13)


def test_gru_hidden_bias_sits_inside_the_reset_product():
    """PyTorch's GRU: n = tanh(A_n x + b_n + r * (W_n h + bh_n)); Flax's and Equinox's keep only bh_n."""
    from ntk_rnn.network.cells import FLAX_GRU

    m, x = 4, np.asarray(jax.random.normal(jax.random.key(2), (2, 3, 3)))
    for cell, bh_rows in (("gru", 3 * m), (FLAX_GRU, m)):
        cfg = ntk_rnn.RNNConfig(width=m, input_dim=3, cell=cell, sigma_b2=1.0, hidden_bias=True, readout="last",
                                parameterization="standard")  # fmt: skip
        params = ntk_rnn.init_params(cfg, key=jax.random.key(3))
        p = {k: np.asarray(v) for k, v in params.items()}
        assert p["bh"].shape == (bh_rows,)
        bh = p["bh"] if bh_rows == 3 * m else np.concatenate([np.zeros(2 * m), p["bh"]])
        want = []
        for seq in x:
            h = np.zeros(m)
            for u in seq:
                gx, gh = p["A"] @ u + p["b"], p["W"] @ h + bh
                r, z = _sigmoid(gx[:m] + gh[:m]), _sigmoid(gx[m : 2 * m] + gh[m : 2 * m])
                n = np.tanh(gx[2 * m :] + r * gh[2 * m :])
                h = (1 - z) * n + z * h
            want.append(p["B"] @ h)
        np.testing.assert_allclose(ntk_rnn.apply(cfg, params, x), np.array(want), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(stacking="concat"), "bidirectional=True"),
        (dict(stacking="joint", bidirectional=True), "stacking must be one of"),
        (dict(hidden_bias=True), "needs sigma_b2 > 0"),
        (dict(sigma_b2=1.0, trainable=("W", "bh")), "hidden_bias=False"),
        (dict(trainable=("W", "bo")), "output_bias=False"),
        (dict(output_bias=1), "output_bias must be True or False"),
    ],
)
def test_new_layout_fields_are_validated_by_name(fields, message):
    with pytest.raises(ValueError, match=message):
        ntk_rnn.RNNConfig(width=4, input_dim=2, **fields)


def test_one_training_step_of_a_concat_stack_is_the_gradient_step():
    """train_step on every parameter of a PyTorch-style model (concat stacks, both biases, a head bias) moves each by
    -lr times its gradient of the loss, with variable lengths."""
    import optax

    cfg = ntk_rnn.RNNConfig(width=5, input_dim=3, cell="lstm", num_layers=2, bidirectional=True, stacking="concat",
                            sigma_b2=0.5, hidden_bias=True, output_bias=True, readout="last",
                            trainable=("W", "A", "b", "bh", "B", "bo"))  # fmt: skip
    params = ntk_rnn.init_params(cfg, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, 4, 3))
    y, lengths = jax.random.normal(jax.random.key(2), (3, 4, 1)), jnp.array([4, 2, 3])
    theta = ntk_rnn.network.model.trainable(cfg, params)
    optimizer = optax.sgd(0.1)
    new, _, _ = ntk_rnn.train_step(cfg, optimizer, params, theta, optimizer.init(theta), x, y, None, lengths=lengths)
    # the reference gradient as one program (op by op, each scan of the stack and small operation compiles alone),
    # and a tiny one: compiling dominates
    fast_compile = {"xla_backend_optimization_level": 0}
    loss = lambda t: ntk_rnn.loss(cfg, {**params, **t}, x, y, None, lengths)  # noqa: E731
    grads = jax.jit(jax.grad(loss), compiler_options=fast_compile)(theta)
    assert set(new) == set(cfg.param_names)
    for name in new:
        np.testing.assert_allclose(new[name], theta[name] - 0.1 * grads[name], rtol=1e-12, atol=1e-14)
