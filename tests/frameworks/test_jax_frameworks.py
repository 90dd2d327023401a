"""from_flax and from_equinox against Flax and Equinox themselves: after a few SGD steps, ntk_rnn.apply equals the
module's own forward pass (Flax's RNN with seq_lengths; Equinox's cells scanned over the sequences, padded steps
keeping the state) and ntk_rnn.empirical_ntk equals J J^T with J = jax.jacrev of that forward pass over all of the
framework's parameters."""

import ast
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ntk_rnn

linen = pytest.importorskip("flax.linen")
eqx = pytest.importorskip("equinox")

N, L, D_X, M, D = 4, 6, 3, 8, 2
LENGTHS = np.array([6, 3, 1, 5])
FAST_COMPILE = {"xla_backend_optimization_level": 0}  # test time: compilation dominates, the programs are tiny
F64 = {"param_dtype": jnp.float64}


def inputs() -> jax.Array:
    return jnp.asarray(np.random.default_rng(0).normal(size=(N, L, D_X)))


def real(y: jax.Array, lengths) -> jax.Array:
    """The rows (sample, position, unit) of y (n, L, d) at real positions, flat."""
    mask = np.arange(y.shape[1])[None, :] < np.asarray(lengths)[:, None]
    return y[np.nonzero(mask)].reshape(-1)


def trained(forward, params, steps: int = 3, lr: float = 0.1):
    """(params after `steps` optax SGD steps of the squared loss toward random targets, the outputs and the NTK
    J J^T there), J = jax.jacrev(forward) over every leaf of params."""
    outputs_and_jacobian = jax.jit(lambda p: (forward(p), jax.jacrev(forward)(p)), compiler_options=FAST_COMPILE)
    out, jac = outputs_and_jacobian(params)
    target = np.random.default_rng(1).normal(size=out.shape)
    optimizer = optax.sgd(lr)
    state = optimizer.init(params)
    for _ in range(steps):
        residual = out - target
        grads = jax.tree.map(lambda j, r=residual: jnp.tensordot(r, j, axes=1), jac)
        updates, state = optimizer.update(grads, state)
        params = optax.apply_updates(params, updates)
        out, jac = outputs_and_jacobian(params)
    J = jnp.concatenate([j.reshape(out.shape[0], -1) for j in jax.tree.leaves(jac)], axis=1)
    return params, np.asarray(out), np.asarray(J @ J.T)


def relative(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def check(cfg, params, x, out, K) -> None:
    """ntk_rnn's outputs and kernel on x with LENGTHS equal Flax's (out at real rows, K) to 1e-10 relative."""
    y = jax.jit(ntk_rnn.apply, compiler_options=FAST_COMPILE)(cfg, params, x, jnp.asarray(LENGTHS))
    assert relative(real(y, LENGTHS) if cfg.readout == "all" else y.reshape(-1), out) < 1e-10
    positions = tuple(range(L)) if cfg.readout == "all" else None
    kernel = ntk_rnn.empirical_ntk(cfg, params, x, positions=positions, lengths1=LENGTHS)
    assert kernel.shape == K.shape
    assert relative(kernel, K) < 1e-10


def random_params(module, *args, key: int):
    """Params of the module's shapes (jax.eval_shape of its init: no initializer is compiled) drawn from
    N(0, 0.3^2) by numpy."""
    rng = np.random.default_rng(key)
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args)["params"]
    return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape)), shapes)


def dense(features: int, bias: bool, fan_in: int, key: int):
    """A Dense head and its params."""
    head = linen.Dense(features, use_bias=bias, **F64)
    return head, random_params(head, jnp.ones(fan_in), key=key)


CELLS = {"gru": linen.GRUCell, "lstm": linen.LSTMCell}


@pytest.mark.parametrize("name", CELLS)
def test_cell_with_dense_head(name):
    """RNN(cell) on padded sequences, Dense head with bias on the final carry h (readout "last"); LSTM carries are
    (c, h)."""
    x, lengths = inputs(), jnp.asarray(LENGTHS)
    rnn = linen.RNN(CELLS[name](M, **F64), return_carry=True)
    head, head_params = dense(D, True, M, key=3)
    params = {"rnn": random_params(rnn, x, key=2), "head": head_params}

    def forward(p):
        carry, _ = rnn.apply({"params": p["rnn"]}, x, seq_lengths=lengths)
        return head.apply({"params": p["head"]}, carry[1] if name == "lstm" else carry).reshape(-1)

    params, out, K = trained(forward, params)
    cfg, ours = ntk_rnn.from_flax(rnn, {"params": params["rnn"]}, head, {"params": params["head"]})
    assert (cfg.cell_name, cfg.readout, cfg.output_dim) == (name, "last", D)
    assert cfg.trainable == (("W", "A", "b", "bh", "B", "bo") if name == "gru" else ("W", "A", "b", "B", "bo"))
    if name == "gru":
        np.testing.assert_array_equal(ours["bh"], params["rnn"]["cell"]["hn"]["bias"])
    check(cfg, ours, x, out, K)


def test_simple_cell_identity_head_output_sequence():
    """SimpleCell with another activation, no head (the states, not trained), readout "all" at the real steps."""
    x = inputs()
    rnn = linen.RNN(linen.SimpleCell(M, activation_fn=jax.nn.gelu, **F64))
    params = random_params(rnn, x, key=4)

    def forward(p):
        return real(rnn.apply({"params": p}, x, seq_lengths=jnp.asarray(LENGTHS)), LENGTHS)

    params, out, K = trained(forward, params)
    cfg, ours = ntk_rnn.from_flax(rnn, {"params": params}, readout="all")
    assert cfg.activation is jax.nn.gelu and cfg.output_dim == M and "B" not in cfg.trainable
    check(cfg, ours, x, out, K)


def test_bidirectional_output_sequence():
    """Bidirectional(RNN(OptimizedLSTMCell), RNN(LSTMCell)) (the same equations), Dense head without bias on the
    merged output sequence [forward; backward] (readout "all")."""
    x = inputs()
    rnn = linen.Bidirectional(linen.RNN(linen.OptimizedLSTMCell(M, **F64)), linen.RNN(linen.LSTMCell(M, **F64)))
    head, head_params = dense(D, False, 2 * M, key=6)
    params = {"rnn": random_params(rnn, x, key=5), "head": head_params}

    def forward(p):
        h = rnn.apply({"params": p["rnn"]}, x, seq_lengths=jnp.asarray(LENGTHS))
        return real(head.apply({"params": p["head"]}, h), LENGTHS)

    params, out, K = trained(forward, params)
    cfg, ours = ntk_rnn.from_flax(rnn, {"params": params["rnn"]}, head, {"params": params["head"]}, readout="all")
    assert (cfg.bidirectional, cfg.cell_name, cfg.output_bias) == (True, "lstm", False)
    check(cfg, ours, x, out, K)


def bidirectional_gru_stack():
    """Two Bidirectional GRU layers and their random params."""
    layers = [
        linen.Bidirectional(linen.RNN(linen.GRUCell(M, **F64)), linen.RNN(linen.GRUCell(M, **F64))) for _ in range(2)
    ]
    params = [random_params(layers[0], inputs(), key=7), random_params(layers[1], jnp.ones((N, L, 2 * M)), key=8)]
    return layers, params


def test_bidirectional_stack_final_carries():
    """A list of two Bidirectional GRU layers, the upper reading [forward; backward] (stacking "concat"), with
    seq_lengths in both; Dense head with bias on the top layer's final carries (readout "last")."""
    x, lengths = inputs(), jnp.asarray(LENGTHS)
    layers, layer_params = bidirectional_gru_stack()
    head, head_params = dense(D, True, 2 * M, key=9)
    params = {"layers": layer_params, "head": head_params}

    def forward(p):
        h = layers[0].apply({"params": p["layers"][0]}, x, seq_lengths=lengths)
        carry, _ = layers[1].apply({"params": p["layers"][1]}, h, seq_lengths=lengths, return_carry=True)
        return head.apply({"params": p["head"]}, jnp.concatenate(carry, axis=-1)).reshape(-1)

    params, out, K = trained(forward, params)
    variables = [{"params": v} for v in params["layers"]]
    cfg, ours = ntk_rnn.from_flax(layers, variables, head, {"params": params["head"]})
    assert (cfg.num_layers, cfg.bidirectional, cfg.stacking, cfg.cell_name) == (2, True, "concat", "gru")
    assert ours["A_l1_reverse"].shape == (3 * M, 2 * M)
    check(cfg, ours, x, out, K)


def test_sequential_is_the_list_of_layers():
    """linen.Sequential([layer, layer]) with its variables {'layers_0', 'layers_1'} gives the list form's model."""
    layers, params = bidirectional_gru_stack()
    expected = ntk_rnn.from_flax(layers, [{"params": p} for p in params], readout="all")
    layers[1] = layers[1].clone(return_carry=True)  # the top layer may return its carry
    cfg, ours = ntk_rnn.from_flax(
        linen.Sequential(layers), {"params": {"layers_0": params[0], "layers_1": params[1]}}, readout="all"
    )
    assert cfg == expected[0]
    for name in cfg.param_names:
        np.testing.assert_array_equal(ours[name], expected[1][name])
    kernel = np.asarray(params[1]["backward_rnn"]["cell"]["hz"]["kernel"])
    np.testing.assert_array_equal(ours["W_l1_reverse"][M : 2 * M], kernel.T)


def test_names_and_variables_forms():
    """relu and tanh SimpleCells map to the named activations; a bare cell takes the cell's params; variables may
    be the params alone."""
    rnn = linen.RNN(linen.SimpleCell(M, activation_fn=linen.relu, **F64))
    params = random_params(rnn, inputs(), key=10)
    cfg, ours = ntk_rnn.from_flax(rnn, params)
    assert cfg.activation == "relu" and cfg.cell_name == "elman"
    np.testing.assert_array_equal(ours["W"], np.asarray(params["cell"]["h"]["kernel"]).T)
    np.testing.assert_array_equal(ours["b"], params["cell"]["i"]["bias"])
    cfg, _ = ntk_rnn.from_flax(linen.SimpleCell(M, **F64), {"params": params["cell"]})
    assert cfg.activation == "tanh"


def _simple_params(d_in: int = D_X) -> dict:
    return {"i": {"kernel": np.zeros((d_in, M)), "bias": np.zeros(M)}, "h": {"kernel": np.zeros((M, M))}}


def _rnn(d_in: int = D_X) -> dict:
    """The variables of linen.RNN(linen.SimpleCell(M)) (zeros)."""
    return {"params": {"cell": _simple_params(d_in)}}


def _bidirectional_sum():
    simple = linen.RNN(linen.SimpleCell(M))
    return linen.Bidirectional(simple, simple.clone(), merge_fn=lambda a, b: a + b), {}


def _sequential_with_carry():
    return linen.Sequential([linen.RNN(linen.SimpleCell(M), return_carry=True), linen.RNN(linen.SimpleCell(M))]), {}


def _relu_above_tanh():
    layers = [linen.RNN(linen.SimpleCell(M)), linen.RNN(linen.SimpleCell(M, activation_fn=jax.nn.relu))]
    return layers, [_rnn(), _rnn(M)]


REFUSED = {  # name: (() -> (rnn, variables), the error's pattern)
    "residual": (lambda: (linen.RNN(linen.SimpleCell(M, residual=True)), _rnn()), "residual=True"),
    "gate_fn": (lambda: (linen.RNN(linen.GRUCell(M, gate_fn=jnp.tanh)), _rnn()), r"rnn.cell.gate_fn must be its"),
    "activation_fn": (lambda: (linen.RNN(linen.LSTMCell(M, activation_fn=jax.nn.relu)), _rnn()), "activation_fn"),
    "mgu": (lambda: (linen.RNN(linen.MGUCell(M)), _rnn()), "SimpleCell, GRUCell, LSTMCell or OptimizedLSTMCell"),
    "carry_init": (lambda: (linen.RNN(linen.SimpleCell(M, carry_init=linen.initializers.ones)), _rnn()), "carry_init"),
    "reverse": (lambda: (linen.RNN(linen.SimpleCell(M), reverse=True), _rnn()), "reverse=True"),
    "untied": (lambda: (linen.RNN(linen.SimpleCell(M), variable_axes={"params": 0}), _rnn()), "share its params"),
    "merge_fn": (_bidirectional_sum, "merge_fn"),
    "tied_directions": (lambda: (linen.Bidirectional(*[linen.RNN(linen.SimpleCell(M))] * 2), {}), "shares one RNN"),
    "dense": (lambda: (linen.Dense(M), {}), "must be a flax.linen.RNN"),
    "return_carry": (_sequential_with_carry, r"rnn.layers\[0\] has return_carry=True"),
    "other_variables": (lambda: (linen.RNN(linen.LSTMCell(M)), _rnn()), r"must hold exactly \['hf', 'hg'"),
    "width": (
        lambda: (linen.RNN(linen.SimpleCell(M + 1)), _rnn()),
        r"variables\['params'\]\['cell'\]\['i'\]\['kernel'\] \(in, out\) must have shape \(3, 9\)",
    ),
    "complex": (
        lambda: (
            linen.RNN(linen.SimpleCell(M)),
            {"params": {"cell": _simple_params() | {"h": {"kernel": 1j * np.eye(M)}}}},
        ),
        "real floating array",
    ),
    "variables_list": (lambda: ([linen.RNN(linen.SimpleCell(M))], _rnn()), "variables must be a list"),
    "mixed_layers": (_relu_above_tanh, "same equations and width"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_flax_refusals(name):
    make, match = REFUSED[name]
    rnn, variables = make()
    with pytest.raises((TypeError, ValueError), match=match):
        ntk_rnn.from_flax(rnn, variables)


def test_head_and_readout_refusals():
    rnn, variables = linen.RNN(linen.SimpleCell(M)), _rnn()
    with pytest.raises(TypeError, match=r"head must be a flax.linen.Dense"):
        ntk_rnn.from_flax(rnn, variables, linen.DenseGeneral(D), {})
    with pytest.raises(ValueError, match="head_variables"):
        ntk_rnn.from_flax(rnn, variables, linen.Dense(D))
    wrong = {"params": {"kernel": np.zeros((M, 3)), "bias": np.zeros(3)}}
    with pytest.raises(
        ValueError, match=r"head_variables\['params'\]\['kernel'\] \(in, out\) must have shape \(8, 2\)"
    ):
        ntk_rnn.from_flax(rnn, variables, linen.Dense(D), wrong)
    with pytest.raises(ValueError, match="readout must be one of"):
        ntk_rnn.from_flax(rnn, variables, readout="first")


# ----------------------------------------------------------------------------- Equinox


def build(factory, seed: int):
    """factory() with its arrays drawn from N(0, 0.3^2) by numpy: its shapes from jax.eval_shape, so that no random
    initializer is compiled."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape)), jax.eval_shape(factory))


def scan_layers(cells, x: jax.Array, length: jax.Array):
    """The cells stacked over one sequence x (L, d_x) from zero states, the state kept at padded steps:
    (the top layer's h at every step (L, m), its final h (m,))."""
    for cell in cells:
        zero = jnp.zeros(cell.hidden_size, x.dtype)
        lstm = isinstance(cell, eqx.nn.LSTMCell)

        def step(state, inputs, cell=cell, lstm=lstm):
            t, x_t = inputs
            new = cell(x_t, state)
            state = jax.tree.map(lambda a, b: jnp.where(t < length, a, b), new, state)
            return state, state[0] if lstm else state

        final, x = jax.lax.scan(step, (zero, zero) if lstm else zero, (jnp.arange(x.shape[0]), x))
    return x, final[0] if lstm else final


def model_and_forward(kind: str, use_bias: bool, layers: int, head_bias: bool | None, readout: str):
    """(model = (cells, head), forward(params) = the flat outputs at real rows) for the readout."""
    cell, key = {"gru": eqx.nn.GRUCell, "lstm": eqx.nn.LSTMCell}[kind], jax.random.key(0)
    cells = [build(lambda j=j: cell(D_X if j == 0 else M, M, use_bias=use_bias, key=key), j) for j in range(layers)]
    head = None if head_bias is None else build(lambda: eqx.nn.Linear(M, D, use_bias=head_bias, key=key), 9)
    model = (cells, head)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    x, lengths = inputs(), jnp.asarray(LENGTHS)

    def forward(p):
        cells, head = eqx.combine(p, static)
        states, final = jax.vmap(lambda xi, li: scan_layers(cells, xi, li))(x, lengths)
        readin = final if readout == "last" else states
        y = readin if head is None else jnp.vectorize(head, signature="(m)->(d)")(readin)
        return y.reshape(-1) if readout == "last" else real(y, LENGTHS)

    return params, static, forward


CASES = [  # (cell, use_bias, layers, head: None or its use_bias, readout)
    ("gru", True, 1, True, "last"),
    ("lstm", True, 1, False, "all"),
    ("gru", False, 2, None, "all"),
    ("lstm", False, 2, True, "last"),
]


@pytest.mark.parametrize(("kind", "use_bias", "layers", "head_bias", "readout"), CASES)
def test_matches_equinox(kind, use_bias, layers, head_bias, readout):
    params, static, forward = model_and_forward(kind, use_bias, layers, head_bias, readout)
    params, out, K = trained(forward, params)
    cells, head = eqx.combine(params, static)
    cfg, ours = ntk_rnn.from_equinox(cells if layers > 1 else cells[0], head, readout=readout)
    hidden_bias = use_bias and kind == "gru"  # bias_n
    assert (cfg.cell_name, cfg.num_layers, cfg.has_bias, cfg.hidden_bias) == (kind, layers, use_bias, hidden_bias)
    assert cfg.output_dim == (M if head is None else D) and ("B" in cfg.trainable) == (head is not None)
    assert cfg.output_bias == bool(head_bias)
    if kind == "gru" and use_bias:
        np.testing.assert_array_equal(ours["bh"], cells[0].bias_n)
    x, lengths = inputs(), jnp.asarray(LENGTHS)
    y = jax.jit(ntk_rnn.apply, compiler_options=FAST_COMPILE)(cfg, ours, x, lengths)
    assert relative(y.reshape(-1) if readout == "last" else real(y, LENGTHS), out) < 1e-10
    positions = tuple(range(L)) if readout == "all" else None
    kernel = ntk_rnn.empirical_ntk(cfg, ours, x, positions=positions, lengths1=lengths)
    assert kernel.shape == K.shape
    assert relative(kernel, K) < 1e-10


def test_scalar_head():
    """A Linear(m, "scalar") head is d = 1."""
    cell, head = _gru(), build(lambda: eqx.nn.Linear(M, "scalar", key=jax.random.key(0)), 4)
    cfg, params = ntk_rnn.from_equinox(cell, head)
    assert cfg.output_dim == 1
    np.testing.assert_array_equal(params["B"], head.weight)
    np.testing.assert_array_equal(params["bo"], head.bias)


def _gru(d_in: int = D_X, m: int = M, use_bias: bool = True):
    return build(lambda: eqx.nn.GRUCell(d_in, m, use_bias=use_bias, key=jax.random.key(0)), 5)


def _linear(d_in, d_out):
    return build(lambda: eqx.nn.Linear(d_in, d_out, key=jax.random.key(0)), 6)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: (_linear(D_X, M), None), "must be an eqx.nn.GRUCell or eqx.nn.LSTMCell"),
        (lambda: ([], None), "cells is empty"),
        (lambda: ([_gru(), build(lambda: eqx.nn.LSTMCell(M, M, key=jax.random.key(0)), 0)], None), "same cell type"),
        (lambda: ([_gru(), _gru(M, M, use_bias=False)], None), "same cell type, hidden_size and use_bias"),
        (lambda: ([_gru(), _gru(D_X, M)], None), "input_size must be 8, got 3"),
        (lambda: (_gru(), eqx.nn.Identity()), "head must be an eqx.nn.Linear"),
        (lambda: (_gru(), _linear(M + 1, D)), "in_features=9"),
        (lambda: (_gru(), _linear("scalar", D)), "in_features='scalar'"),
        (lambda: (eqx.tree_at(lambda c: c.weight_hh, _gru(), _gru().weight_hh * 1j), None), "real floating array"),
    ],
)
def test_equinox_refusals(make, match):
    cells, head = make()
    with pytest.raises((TypeError, ValueError), match=match):
        ntk_rnn.from_equinox(cells, head)


def test_readout_refusal():
    with pytest.raises(ValueError, match="readout must be one of"):
        ntk_rnn.from_equinox(_gru(), readout="first")


def import_time_imports(tree: ast.Module):
    """The modules a file imports when it is imported: its import statements outside function bodies."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""
        stack.extend(ast.iter_child_nodes(node))


def test_frameworks_stay_optional():
    """No module of ntk_rnn imports Flax or Equinox when imported (only from_flax and from_equinox do, when
    called)."""
    for path in pathlib.Path(ntk_rnn.__file__).parent.rglob("*.py"):
        names = list(import_time_imports(ast.parse(path.read_text())))
        assert not [n for n in names if n.split(".")[0] in ("flax", "equinox")], path
