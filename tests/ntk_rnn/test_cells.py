"""Cells, stacked and bidirectional layers, variable lengths: the model against independent transcriptions,
and the structured kernel of docs/theory.md §8 against autodiff."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ntk_rnn import RNNConfig, apply, empirical_ntk
from ntk_rnn.network.cells import Cell
from ntk_rnn.network.checks import check_lengths

FAST_COMPILE = {"xla_backend_optimization_level": 0}  # for the autodiff references: tiny programs, compiling dominates


def _draw(cfg, seed):
    """Parameters N(0, init_std^2) as ntk_rnn.init_params draws them, but with numpy: init_params compiles a
    sampler for every new shape (these tests, of the cells and their kernel, draw many), not one per process."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}


def _x(seed, n, length, dx):
    return np.random.default_rng(seed).standard_normal((n, length, dx)) / np.sqrt(dx)


def _sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def _torch_gru(p, x):
    """PyTorch's nn.GRU equations (docs), one layer, bias_hh = 0, written per gate in NumPy."""
    m = p["W"].shape[1]
    Wr, Wz, Wn = np.split(p["W"], 3)
    Ar, Az, An = np.split(p["A"], 3)
    br, bz, bn = np.split(p["b"], 3)
    h, out = np.zeros((x.shape[0], m)), []
    for t in range(x.shape[1]):
        xt = x[:, t]
        r = _sigmoid(xt @ Ar.T + br + h @ Wr.T)
        z = _sigmoid(xt @ Az.T + bz + h @ Wz.T)
        n = np.tanh(xt @ An.T + bn + r * (h @ Wn.T))
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1)


def _torch_lstm(p, x):
    """PyTorch's nn.LSTM equations (docs), one layer, bias_hh = 0, gates (i, f, g, o)."""
    m = p["W"].shape[1]
    gates_w, gates_a, gates_b = np.split(p["W"], 4), np.split(p["A"], 4), np.split(p["b"], 4)
    h, c, out = np.zeros((x.shape[0], m)), np.zeros((x.shape[0], m)), []
    for t in range(x.shape[1]):
        pre = [x[:, t] @ a.T + b + h @ w.T for w, a, b in zip(gates_w, gates_a, gates_b, strict=True)]
        i, f, g, o = _sigmoid(pre[0]), _sigmoid(pre[1]), np.tanh(pre[2]), _sigmoid(pre[3])
        c = f * c + i * g
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


@pytest.mark.parametrize(("cell", "reference"), [("gru", _torch_gru), ("lstm", _torch_lstm)])
def test_gated_cells_follow_pytorchs_equations(cell, reference):
    cfg = RNNConfig(6, 3, 2, cell=cell, sigma_b2=0.5, parameterization="standard")
    params = _draw(cfg, 0)
    x = _x(1, 4, 5, 3)
    h = reference({k: np.asarray(v) for k, v in params.items()}, x)
    np.testing.assert_allclose(np.asarray(apply(cfg, params, x)), h @ np.asarray(params["B"]).T, rtol=1e-12, atol=1e-14)


def test_stacked_bidirectional_elman_by_hand():
    cfg = RNNConfig(5, 3, 1, num_layers=2, bidirectional=True, activation="tanh", readout="last")
    params = {k: np.asarray(v) for k, v in _draw(cfg, 0).items()}
    x = _x(2, 3, 4, 3)

    def stack(seq, suffix):
        h1 = h2 = np.zeros((seq.shape[0], 5))
        for t in range(seq.shape[1]):
            h1 = np.tanh(h1 @ params["W" + suffix].T + seq[:, t] @ params["A" + suffix].T)
            h2 = np.tanh(h2 @ params["W_l1" + suffix].T + h1 @ params["A_l1" + suffix].T)
        return h2

    expected = stack(x, "") @ params["B"].T + stack(x[:, ::-1], "_reverse") @ params["B_reverse"].T
    np.testing.assert_allclose(np.asarray(apply(cfg, params, x)), expected, rtol=1e-12, atol=1e-14)


def test_parameter_names_and_shapes_follow_pytorch():
    cfg = RNNConfig(4, 3, 2, cell="lstm", num_layers=2, bidirectional=True, sigma_b2=1.0)
    torch_names = [
        f"{kind}_l{j}{d}" for j in range(2) for d in ("", "_reverse") for kind in ("weight_hh", "weight_ih", "bias_ih")
    ]
    ours = [
        {"weight_hh": "W", "weight_ih": "A", "bias_ih": "b"}[n.rsplit("_l", 1)[0]] + n[n.index("_l") :]
        for n in torch_names
    ]
    ours = [n.replace("_l0", "") for n in ours]
    assert cfg.param_names == (*ours, "B", "B_reverse")
    assert cfg.param_shapes["W_l1_reverse"] == (16, 4) and cfg.param_shapes["A"] == (16, 3)
    assert cfg.param_shapes["A_l1"] == (16, 4) and cfg.param_shapes["b_l1"] == (16,)


def test_upper_layers_read_the_lower_state_with_fan_in_m():
    cfg = RNNConfig(64, 3, 1, num_layers=2, parameterization="standard", sigma_u2=2.0)
    assert cfg.init_std["A"] == pytest.approx(np.sqrt(2.0 / 3)) and cfg.init_std["A_l1"] == pytest.approx(
        np.sqrt(2.0 / 64)
    )
    ntk = cfg.replace(parameterization="ntk")
    assert ntk.multipliers["A_l1"] == pytest.approx(np.sqrt(2.0 / 64)) and ntk.init_std["A_l1"] == 1.0


# ----------------------------------------------------------------------------- variable lengths


@pytest.mark.parametrize("readout", ["all", "last", "mean"])
@pytest.mark.parametrize("cell", ["elman", "lstm"])
def test_padded_steps_change_nothing(cell, readout):
    cfg = RNNConfig(6, 3, 2, cell=cell, bidirectional=True, readout=readout, sigma_b2=0.3, parameterization="standard")
    params = _draw(cfg, 0)
    x = _x(3, 4, 6, 3)
    lengths = np.array([6, 3, 6, 3])
    y = np.asarray(apply(cfg, params, x, lengths))
    junk = np.where(np.arange(6)[None, :, None] < lengths[:, None, None], x, 1e3)  # other values in the padding
    np.testing.assert_array_equal(np.asarray(apply(cfg, params, junk, lengths)), y)
    short = np.asarray(apply(cfg, params, x[1::2, :3]))  # the two sequences of length 3, unpadded
    full = np.asarray(apply(cfg, params, x[0::2]))
    if readout == "all":
        np.testing.assert_allclose(y[1::2, :3], short, rtol=1e-12, atol=1e-14)
        assert not y[1::2, 3:].any()
        np.testing.assert_allclose(y[0::2], full, rtol=1e-12, atol=1e-14)
    else:
        np.testing.assert_allclose(y[1::2], short, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(y[0::2], full, rtol=1e-12, atol=1e-14)


def test_kernel_with_lengths_is_the_kernel_of_the_truncated_sequences():
    cfg = RNNConfig(8, 3, 1, cell="gru", parameterization="standard", trainable=("W", "A", "B"))
    params = _draw(cfg, 0)
    theta = {k: params[k] for k in cfg.trainable_names}
    x = _x(4, 3, 5, 3)
    lengths, positions = np.array([5, 3, 3]), (0, 2, 4)
    K = empirical_ntk(cfg, params, x, positions=positions, lengths1=lengths)

    def rows(i):  # Jacobian rows of sample i alone, truncated to its length, at its real positions
        def f(th):
            y = apply(cfg, {**params, **th}, x[i : i + 1, : lengths[i]])
            return y[0, [p for p in positions if p < lengths[i]], 0]

        jac = jax.jit(jax.jacrev(f), compiler_options=FAST_COMPILE)(theta)  # one program, not one per operation
        return np.concatenate([np.asarray(j).reshape(j.shape[0], -1) for j in jax.tree.leaves(jac)], axis=1)

    J = np.concatenate([rows(i) for i in range(3)])
    np.testing.assert_allclose(K, J @ J.T, rtol=1e-11, atol=1e-12 * np.abs(K).max())


def test_lengths_errors_name_the_argument():
    x = jnp.zeros((3, 4, 2))
    for bad, match in [([1, 2], r"shape \(n,\)"), ([0, 1, 2], r"\[1, L\]"), ([1, 5, 2], r"\[1, L\]"),
                       ([1.5, 2, 3], "integers"), (["a", "b", "c"], "integers")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            check_lengths(bad, x, "lengths1")
    cfg = RNNConfig(4, 2)
    with pytest.raises(ValueError, match="lengths1"):
        empirical_ntk(cfg, _draw(cfg, 0), x + 1.0, lengths1=[1, 2, 9])


# ----------------------------------------------------------------------------- user cells


def mgu_step(params, h, x):
    """A user's cell, a minimal gated unit: z = W h + A x with a forget block f = sigmoid(z_f) and a candidate
    block, h' = (1 - f) h + f tanh(z_c)."""
    m = h.shape[0]
    z = params["W"] @ h + params["A"] @ x
    z = z + params["b"] if "b" in params else z
    f = jax.nn.sigmoid(z[:m])
    return (1.0 - f) * h + f * jnp.tanh(z[m:])


MGU = Cell("mgu", mgu_step, gates=2)


@pytest.mark.parametrize("shared", [(), (("W", "A", "b"),)])
def test_user_cell_kernel_matches_autodiff(shared):
    cell = Cell("mgu", mgu_step, gates=2, shared=shared)  # W h, A x and b add into one pre-activation
    cfg = RNNConfig(7, 3, 1, cell=cell, parameterization="standard", trainable=("W", "A", "b", "B"), readout="mean",
                    sigma_b2=0.3)  # fmt: skip
    params = _draw(cfg, 0)
    x = _x(5, 4, 5, 3)
    K = empirical_ntk(cfg, params, x)
    np.testing.assert_allclose(K, empirical_ntk(cfg, params, x, method="jacobian"), rtol=1e-10, atol=1e-12)
    assert cfg.to_dict()["cell"] == "mgu"


@pytest.mark.parametrize(
    ("step", "match"),
    [
        (lambda p, h, x: jnp.tanh(p["W"] @ h + p["W"] @ h + p["A"] @ x)[:4], "more than once"),
        (lambda p, h, x: jnp.tanh(p["W"] @ h), "never uses"),
        (lambda p, h, x: jnp.tanh(p["W"] @ h + p["A"] @ x)[:3], "shape"),
        (lambda p, h, x: jnp.tanh(h @ p["W"].T + p["A"] @ x), "only as"),
    ],
)
def test_user_cell_misuse_is_named(step, match):
    cfg = RNNConfig(4, 2, 1, cell=Cell("bad", step), trainable=("W", "A"), readout="last")
    params = _draw(cfg, 0)
    with pytest.raises((ValueError, TypeError, AttributeError), match=match):
        empirical_ntk(cfg, params, jnp.ones((2, 3, 2)))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"cell": "rnn"}, "cell"),
        ({"num_layers": 0}, "num_layers"),
        ({"bidirectional": "yes"}, "bidirectional"),
    ],
)
def test_bad_configs_are_named(changes, match):
    with pytest.raises(ValueError, match=match):
        RNNConfig(4, 2, **changes)


def test_gate_stacked_shapes_are_checked():
    cfg = RNNConfig(4, 2, cell="gru")
    params = dict(_draw(cfg, 0))
    params["W"] = params["W"][:8]
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(12, 4\)"):
        empirical_ntk(cfg, params, jnp.ones((2, 3, 2)))


def test_generic_path_equals_the_elman_fast_path():
    cfg = RNNConfig(16, 3, 2, sigma_b2=0.4, trainable=("W", "A", "b", "B"), parameterization="ntk")
    params = _draw(cfg, 0)
    x = _x(6, 5, 6, 3)
    fast = empirical_ntk(cfg, params, x, positions=(0, 3, 5))
    generic = empirical_ntk(cfg, params, x, positions=(0, 3, 5), lengths1=np.full(5, 6))
    np.testing.assert_allclose(generic, fast, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- the kernel against autodiff

TRAINABLE = [("W",), ("A",), ("W", "b"), ("W", "A", "b", "B"), ("B", "A")]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # fmt: skip
@given(
    cell=st.sampled_from(["elman", "gru", "lstm", "mgu"]),
    num_layers=st.integers(1, 2),
    bidirectional=st.booleans(),
    trainable=st.sampled_from(TRAINABLE),
    readout=st.sampled_from(["all", "last", "mean"]),
    parameterization=st.sampled_from(["paper", "standard", "ntk"]),
    output_dim=st.integers(1, 2),
    variable=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_structured_kernel_matches_jacrev_and_ntvp(
    cell, num_layers, bidirectional, trainable, readout, parameterization, output_dim, variable, seed
):
    rng = np.random.default_rng(seed)
    cfg = RNNConfig(
        int(rng.integers(3, 9)), 2, output_dim, cell=MGU if cell == "mgu" else cell, num_layers=num_layers,
        bidirectional=bidirectional, trainable=trainable, readout=readout, parameterization=parameterization,
        sigma_b2=0.5, activation="tanh",
    )  # fmt: skip
    params = _draw(cfg, seed)
    n1, n2, length = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(2, 5))
    x1, x2 = _x(seed, n1, length, 2), _x(seed + 1, n2, length, 2)
    lengths1 = rng.integers(1, length + 1, n1) if variable else None
    lengths2 = rng.integers(1, length + 1, n2) if variable else None
    positions = tuple(sorted(rng.choice(length, size=int(rng.integers(1, length + 1)), replace=False))) if (
        readout == "all") else None  # fmt: skip
    kwargs = dict(positions=positions, lengths1=lengths1, lengths2=lengths2)
    K = empirical_ntk(cfg, params, x1, x2, **kwargs)
    ref = empirical_ntk(cfg, params, x1, x2, method="jacobian", **kwargs)
    assert K.shape == ref.shape  # empty when every chosen position lies past every sequence's length
    assert np.abs(K - ref).max(initial=0.0) <= 1e-10 * max(np.abs(ref).max(initial=0.0), 1e-300)
    # the symmetric path (upper blocks mirrored) against the same inputs passed as two sides
    sym = empirical_ntk(cfg, params, x1, positions=positions, lengths1=lengths1)
    cross = empirical_ntk(cfg, params, x1, x1.copy(), positions=positions, lengths1=lengths1, lengths2=lengths1)
    assert sym.shape == cross.shape
    assert np.abs(sym - cross).max(initial=0.0) <= 1e-12 * max(np.abs(cross).max(initial=0.0), 1e-300)


def test_structured_kernel_matches_vjp_jvp_columns():
    cfg = RNNConfig(6, 2, 2, cell="lstm", bidirectional=True, num_layers=2, trainable=("W", "A", "b", "B"),
                    sigma_b2=0.5, parameterization="ntk")  # fmt: skip
    params = _draw(cfg, 3)
    x1, x2 = _x(7, 3, 4, 2), _x(8, 2, 4, 2)
    kwargs = dict(positions=(1, 3), lengths1=[4, 2, 3], lengths2=[1, 4])
    K = empirical_ntk(cfg, params, x1, x2, **kwargs)
    np.testing.assert_allclose(K, empirical_ntk(cfg, params, x1, x2, method="ntvp", **kwargs), rtol=1e-10, atol=1e-12)


def test_small_memory_budget_recomputes_chunks_with_the_same_kernel():
    cfg = RNNConfig(8, 3, 1, cell="lstm", bidirectional=True, sigma_b2=0.5, parameterization="standard",
                    trainable=("W", "A", "b", "B"))  # fmt: skip
    params = _draw(cfg, 0)
    x, lengths = _x(9, 7, 4, 3), np.array([4, 3, 2, 1, 4, 3, 2])
    roomy = empirical_ntk(cfg, params, x, lengths1=lengths)
    tight = empirical_ntk(cfg, params, x, lengths1=lengths, max_bytes=2**17)  # one-sample chunks, recomputed
    np.testing.assert_allclose(tight, roomy, rtol=1e-13, atol=1e-13 * np.abs(roomy).max())
