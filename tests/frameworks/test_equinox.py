"""from_equinox against Equinox itself: after a few SGD steps, ntk_rnn.apply equals the cells scanned over the
sequences (jax.lax.scan, padded steps keeping the state) and ntk_rnn.empirical_ntk equals J J^T with J =
jax.jacrev of that forward pass over every inexact array of the cells and head."""

import ast
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ntk_rnn

eqx = pytest.importorskip("equinox")

N, L, D_X, M, D = 4, 6, 3, 8, 2
LENGTHS = np.array([6, 3, 1, 5])
FAST_COMPILE = {"xla_backend_optimization_level": 0}  # test time: compilation dominates, the programs are tiny


def inputs() -> jax.Array:
    return jnp.asarray(np.random.default_rng(0).normal(size=(N, L, D_X)))


def build(factory, seed: int):
    """factory() with its arrays drawn from N(0, 0.3^2) by numpy: its shapes from jax.eval_shape, so that no random
    initializer is compiled."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape)), jax.eval_shape(factory))


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
def test_refusals(make, match):
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
