"""Kernels as pure JAX functions (ntk_rnn.empirical_ntk_fn, limit_ntk_fn, nngp_fn): against an autodiff NTK written
here, under jit, vmap and grad; the variances as data (no compilation when they change); widths compiled at a few
zero-padded buckets; and ntk_rnn.batch against the unbatched function."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.kernels.empirical import bucket_width, pad_params
from ntk_rnn.network.cells import FLAX_GRU

CASES = {
    "elman": dict(),
    "elman-tanh-bias": dict(activation="tanh", sigma_b2=0.3, trainable=("W", "A", "b", "B")),
    "gru": dict(cell="gru", sigma_b2=0.2, trainable=("W", "A", "b")),
    "lstm": dict(cell="lstm", readout="last", trainable=("W", "A", "B")),
    "stacked-bidirectional": dict(
        num_layers=2, bidirectional=True, parameterization="standard", trainable=("W", "A", "B")
    ),
    "ntk-mean": dict(parameterization="ntk", readout="mean", trainable=("W", "A", "B")),
}
N, L, DX = 4, 5, 3
LENGTHS = np.array([5, 2, 4, 5])
FAST_COMPILE = {"xla_backend_optimization_level": 0}  # the reference's one program is tiny: compiling dominates


def draw(cfg: ntk_rnn.RNNConfig, seed: int) -> dict:
    """Parameters N(0, init_std^2) as ntk_rnn.init_params draws them, but with numpy: init_params compiles a
    sampler for every new shape, and these tests are of the kernel, not of the initialization."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}


def model(case: str, width: int = 12) -> tuple[ntk_rnn.RNNConfig, dict]:
    cfg = ntk_rnn.RNNConfig(width=width, input_dim=DX, output_dim=2, **CASES[case])
    return cfg, draw(cfg, 1)


def inputs(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, L, DX))


def autodiff_ntk(cfg, params, x, lengths=None) -> np.ndarray:
    """J J^T from jax.jacrev of the model's outputs at width cfg.width (no padding): rows (sample, position, unit)
    over every position 1..L-1 (readout "all") or (sample, unit). The Jacobian is one jitted program: run op by
    op, each scan of the model and each small operation would be compiled on its own."""
    positions = tuple(range(1, x.shape[1])) if cfg.readout == "all" else None
    theta = {k: params[k] for k in cfg.trainable_names}

    def outputs(t):
        y = ntk_rnn.apply(cfg, {**params, **t}, jnp.asarray(x), None if lengths is None else jnp.asarray(lengths))
        return (y if positions is None else y[:, np.asarray(positions)]).reshape(-1)

    jac = jax.jit(jax.jacrev(outputs), compiler_options=FAST_COMPILE)(theta)
    J = np.concatenate([np.asarray(j).reshape(np.asarray(j).shape[0], -1) for j in jax.tree.leaves(jac)], axis=1)
    return J @ J.T


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_jitted_function_equals_autodiff_and_empirical_ntk(case, with_lengths):
    cfg, params = model(case)
    x, lengths = inputs(), (LENGTHS if with_lengths else None)
    ntk = ntk_rnn.empirical_ntk_fn(cfg)
    assert ntk.inner.width == 16  # computed zero-padded to the bucket
    K = np.asarray(jax.jit(ntk)(params, x, lengths1=lengths))
    reference = autodiff_ntk(cfg, params, x, lengths)
    scale = np.abs(reference).max()
    np.testing.assert_allclose(K, reference, rtol=0, atol=1e-12 * scale)
    positions = tuple(range(1, L)) if cfg.readout == "all" else None
    keep = ntk_rnn.network.model.real_rows(cfg, positions, lengths, N)
    batched = ntk_rnn.empirical_ntk(cfg, params, x, lengths1=lengths)
    np.testing.assert_allclose(K[np.ix_(keep, keep)], batched, rtol=0, atol=1e-12 * scale)
    if with_lengths and cfg.readout == "all":
        assert not keep.all() and np.all(K[~keep] == 0)  # padded positions output 0: their rows are 0


ALL = ("W", "A", "b", "bh", "B", "bo")
LAYOUTS = {  # PyTorch's layouts: two cell biases, a readout bias, upper layers reading both directions
    "gru-concat-two-biases": dict(cell="gru", num_layers=2, bidirectional=True, stacking="concat", sigma_b2=0.3,
                                  hidden_bias=True, output_bias=True, parameterization="standard", trainable=ALL),
    "lstm-concat-last": dict(cell="lstm", num_layers=2, bidirectional=True, stacking="concat", sigma_b2=0.3,
                             hidden_bias=True, output_bias=True, readout="last", trainable=ALL),
    "elman-three-layers-ntk": dict(num_layers=3, bidirectional=True, stacking="concat", parameterization="ntk",
                                   trainable=("W", "A", "B")),
    "flax-gru-mean": dict(cell=FLAX_GRU, num_layers=2, bidirectional=True, stacking="concat", sigma_b2=0.3,
                          hidden_bias=True, readout="mean", trainable=("W", "A", "b", "bh")),
}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "with_lengths"), [(case, True) for case in LAYOUTS] + [("gru-concat-two-biases", False)]
)
def test_pytorch_layouts_equal_autodiff(case, with_lengths):
    """The structured kernel of every new parameter and of concat stacking (whose lower forward layers are seen by
    the reverse direction at every step: no causality there) against jax.jacrev at the model's own width."""
    cfg = ntk_rnn.RNNConfig(width=6, input_dim=DX, output_dim=2, **LAYOUTS[case])
    params = draw(cfg, 1)
    if cfg.output_bias:
        params["bo"] = jnp.array([0.3, -0.2])
    x, lengths = inputs(), (LENGTHS if with_lengths else None)
    K = np.asarray(ntk_rnn.empirical_ntk_fn(cfg)(params, x, lengths1=lengths))
    reference = autodiff_ntk(cfg, params, x, lengths)
    np.testing.assert_allclose(K, reference, rtol=0, atol=1e-12 * np.abs(reference).max())


def test_matrix_free_eigenvalues_of_a_concat_stack_equal_the_dense_spectrum():
    """|lambda - lambda_dense| <= ||K v - lambda v|| <= DEFAULT_TOL lambda_max for a converged Ritz pair."""
    cfg = ntk_rnn.RNNConfig(width=6, input_dim=DX, output_dim=2, **LAYOUTS["gru-concat-two-biases"])
    params, x, lengths = draw(cfg, 1), inputs(6), np.array([5, 2, 4, 5, 3, 5])
    result = ntk_rnn.ntk_extreme_eigenvalues(cfg, params, x, key=jax.random.key(0), lengths=lengths)
    dense = np.linalg.eigvalsh(ntk_rnn.empirical_ntk(cfg, params, x, lengths1=lengths))
    bound = ntk_rnn.eigen.lobpcg.DEFAULT_TOL * dense[-1]
    np.testing.assert_allclose([result.lambda_min, result.lambda_max], dense[[0, -1]], rtol=0, atol=bound)


def test_two_inputs_positions_and_references():
    cfg, params = model("elman")
    x1, x2 = inputs(3, seed=1), inputs(2, seed=2)
    for method in ntk_rnn.kernels.empirical.METHODS:
        ntk = jax.jit(ntk_rnn.empirical_ntk_fn(cfg, positions=(4, 0, 2), method=method))
        K = np.asarray(ntk(params, x1, x2))
        full = ntk_rnn.empirical_ntk(cfg, params, x1, x2, positions=(4, 0, 2), method="jacobian")
        np.testing.assert_allclose(K, full, rtol=0, atol=1e-12 * np.abs(full).max())


def test_zero_padding_is_exact_only_where_the_padded_units_stay_zero():
    """A padded unit of phi(0) = 0 stays 0 and has zero backward vectors (docs/theory.md §14): the padded network's
    kernel is the original's. With phi(0) != 0 the padded units carry phi(0) and the kernel would change: such a
    model is computed at its own width."""
    cfg, params = model("gru", width=5)
    wide = cfg.replace(width=8)
    padded = pad_params(cfg, params, 8)
    x = inputs()
    np.testing.assert_allclose(autodiff_ntk(wide, padded, x), autodiff_ntk(cfg, params, x), rtol=1e-13, atol=1e-13)
    shifted = ntk_rnn.RNNConfig(width=5, input_dim=DX, activation=jax.nn.softplus)
    assert ntk_rnn.empirical_ntk_fn(shifted).inner.width == 5
    p = draw(shifted, 0)
    not_equal = autodiff_ntk(shifted.replace(width=8), pad_params(shifted, p, 8), x)
    assert np.abs(not_equal - autodiff_ntk(shifted, p, x)).max() > 1e-3 * np.abs(not_equal).max()
    deep_ntk = ntk_rnn.RNNConfig(width=5, input_dim=DX, parameterization="ntk", num_layers=2)
    assert ntk_rnn.empirical_ntk_fn(deep_ntk).inner.width == 5  # the A of layer 2 has fan-in m: not recoverable
    assert [bucket_width(m) for m in (1, 2, 3, 128, 129, 1000, 1024)] == [1, 2, 4, 128, 256, 1024, 1024]


def test_vmap_over_an_ensemble_of_parameters_equals_separate_calls():
    cfg, _ = model("elman-tanh-bias")
    keys = jax.random.split(jax.random.key(7), 8)
    ensemble = jax.vmap(lambda k: ntk_rnn.init_params(cfg, key=k))(keys)
    x = inputs()
    ntk = ntk_rnn.empirical_ntk_fn(cfg)
    stacked = np.asarray(jax.jit(jax.vmap(ntk, in_axes=(0, None)))(ensemble, x))
    assert stacked.shape == (8, N * (L - 1) * 2, N * (L - 1) * 2)
    for s in range(8):
        one = np.asarray(ntk(jax.tree.map(lambda a, s=s: a[s], ensemble), x))
        np.testing.assert_allclose(stacked[s], one, rtol=0, atol=1e-12 * np.abs(one).max())


def test_vmap_over_inputs():
    cfg, params = model("gru")
    xs = np.stack([inputs(seed=s) for s in range(3)])
    stacked = np.asarray(jax.vmap(ntk_rnn.empirical_ntk_fn(cfg), in_axes=(None, 0))(params, xs))
    for s in range(3):
        one = autodiff_ntk(cfg, params, xs[s])
        np.testing.assert_allclose(stacked[s], one, rtol=0, atol=1e-12 * np.abs(one).max())


@pytest.mark.parametrize("case", ["elman-tanh-bias", "lstm"])
def test_grad_of_a_kernel_scalar_matches_central_differences(case):
    cfg, params = model(case)
    x = inputs()
    ntk = ntk_rnn.empirical_ntk_fn(cfg)
    weights = jnp.asarray(np.random.default_rng(3).normal(size=ntk(params, x).shape))

    def scalar(p):
        return jnp.sum(weights * ntk(p, x))

    direction = jax.tree.map(lambda a: jax.random.normal(jax.random.key(9), a.shape), params)
    grad = jax.grad(scalar)(params)
    along = sum(float(jnp.vdot(grad[k], direction[k])) for k in params)
    eps = 1e-5
    plus = scalar(jax.tree.map(lambda a, d: a + eps * d, params, direction))
    minus = scalar(jax.tree.map(lambda a, d: a - eps * d, params, direction))
    central = float(plus - minus) / (2 * eps)
    assert abs(along - central) < 1e-7 * max(abs(central), 1.0)


@pytest.mark.parametrize(
    "kind, activation",
    [("ntk", "relu"), ("ntk", "erf"), ("nngp", "relu"), ("nngp", "tanh")],  # closed forms and quadrature
)
def test_limit_functions_jit_vmap_and_grad_in_sigma_w2(kind, activation):
    cfg = ntk_rnn.RNNConfig(width=1, input_dim=DX, output_dim=2, activation=activation, parameterization="ntk",
                            sigma_b2=0.1, trainable=("W", "A", "b", "B"), num_layers=2)  # fmt: skip
    make, batched = (
        (ntk_rnn.limit_ntk_fn, ntk_rnn.limit_ntk) if kind == "ntk" else (ntk_rnn.nngp_fn, ntk_rnn.nngp_kernel)
    )
    nodes = 200 if activation == "tanh" else 64  # quadrature: its error below the finite differences' 1e-7
    kernel = make(cfg, nodes=nodes)
    x = inputs()
    grid = jnp.asarray([0.6, 1.1, 1.7])
    stacked = np.asarray(jax.jit(jax.vmap(lambda s: kernel(x, lengths1=LENGTHS, sigma_w2=s)))(grid))
    positions = tuple(range(1, L))
    keep = ntk_rnn.network.model.real_rows(cfg, positions, LENGTHS, N)
    for s, K in zip(np.asarray(grid), stacked, strict=True):
        expected = batched(cfg.replace(sigma_w2=float(s)), x, lengths1=LENGTHS, nodes=nodes)
        np.testing.assert_allclose(K[np.ix_(keep, keep)], expected, rtol=0, atol=1e-12 * np.abs(expected).max())
        assert np.all(K[~keep] == 0)

    def scalar(s):
        return jnp.sum(kernel(x, sigma_w2=s))

    eps = 1e-5
    central = float(scalar(1.1 + eps) - scalar(1.1 - eps)) / (2 * eps)
    assert abs(float(jax.grad(scalar)(1.1)) - central) < 1e-7 * abs(central)


@pytest.mark.parametrize("q", [(1.3, 0.4, 0.7), (0.8, 0.8, 0.8), (0.5, -0.6, 0.9), (0.9, 0.3, 2.0)])
def test_quadrature_dual_is_differentiable_on_and_off_the_diagonal(q):
    """Price's theorem as the derivative rule of the quadrature: gradients of E[phi(u) phi(v)] and E[phi'(u) phi'(v)]
    in (q11, q12, q22) equal central differences, also at correlation 1 (q12 = q11 = q22: the kernel's diagonal,
    where the Cholesky factor's derivative is infinite)."""
    from ntk_rnn.kernels.dual import dual_pair

    def both(q11, q12, q22):
        return jnp.stack(dual_pair(jnp.tanh, q11, q12, q22, nodes=100))

    q = jnp.asarray(q)
    on_diagonal = bool(q[0] == q[1] == q[2])
    directions = [jnp.ones(3)] if on_diagonal else list(jnp.eye(3))  # on it, q moves along the diagonal only
    for direction in directions:
        tangent = jax.jvp(lambda t, d=direction: both(*(q + t * d)), (0.0,), (1.0,))[1]
        eps = 1e-5
        central = (both(*(q + eps * direction)) - both(*(q - eps * direction))) / (2 * eps)
        assert np.all(np.isfinite(tangent))
        np.testing.assert_allclose(tangent, central, rtol=1e-7, atol=1e-9)


def compile_counter():
    """A list that grows by the function name of every XLA compilation from now on."""
    names: list[str] = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    return names


@pytest.mark.parametrize("case", ["elman", "gru"])
def test_other_variances_compile_nothing(case):
    x = inputs()
    configs = [
        model(case)[0].replace(sigma_w2=s, sigma_v2=v) for s, v in ((1.0, 1.0), (1.5, 0.7), (2.5, 2.0), (3.0, 1.0))
    ]
    params = [draw(c, 0) for c in configs]
    limit_cfg = configs[0].replace(cell="elman")
    ntk_rnn.empirical_ntk(configs[0], params[0], x)
    ntk_rnn.limit_ntk(limit_cfg, x)
    compiled = compile_counter()
    for c, p in zip(configs[1:], params[1:], strict=True):
        ntk_rnn.empirical_ntk(c, p, x)
        ntk_rnn.limit_ntk(c.replace(cell="elman"), x)
    assert compiled == []


def test_a_sweep_over_eight_widths_compiles_each_kernel_program_at_most_four_times():
    x = inputs(2)
    widths = (128, 160, 200, 256, 300, 512, 700, 1024)
    compiled = compile_counter()
    for m in widths:
        cfg = ntk_rnn.RNNConfig(width=m, input_dim=DX)
        ntk_rnn.empirical_ntk(cfg, draw(cfg, 0), x)
    kernel_programs = [name for name in compiled if name in ("jit(_backward_vectors)", "jit(_pair_kernel)")]
    assert set(kernel_programs) == {"jit(_backward_vectors)", "jit(_pair_kernel)"}  # the counter sees them
    assert max(kernel_programs.count(name) for name in set(kernel_programs)) <= 4


@pytest.mark.parametrize("case", ["elman", "gru", "stacked-bidirectional"])
def test_batch_in_small_chunks_equals_the_function(case):
    cfg, params = model(case)
    x1, x2 = inputs(7, seed=3), inputs(5, seed=4)
    ntk = ntk_rnn.empirical_ntk_fn(cfg)
    budget = 600_000  # a few samples per chunk: several blocks, upper ones only for K(x, x)
    positions = tuple(range(1, L)) if cfg.readout == "all" else None
    assert ntk.chunk_size(7, L, L, positions, positions, budget) < 5
    for args in ((x1,), (x1, x2)):
        expected = np.asarray(ntk(params, *args))
        got = ntk_rnn.batch(ntk, max_bytes=budget)(params, *args)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    limit = ntk_rnn.limit_ntk_fn(cfg.replace(cell="elman"))
    expected = np.asarray(limit(x1, lengths1=np.arange(7) % L + 1))
    positions = tuple(range(1, L)) if cfg.readout == "all" else None
    keep = ntk_rnn.network.model.real_rows(cfg, positions, np.arange(7) % L + 1, 7)
    got = ntk_rnn.batch(limit, max_bytes=20_000)(x1, lengths1=np.arange(7) % L + 1)
    np.testing.assert_allclose(got, expected[np.ix_(keep, keep)], rtol=0, atol=1e-12 * np.abs(expected).max())


def test_bad_arguments_are_refused_by_name():
    cfg, params = model("elman")
    with pytest.raises(ValueError, match="method must be one of"):
        ntk_rnn.empirical_ntk_fn(cfg, method="fast")
    with pytest.raises(ValueError, match="positions does not apply"):
        ntk_rnn.empirical_ntk_fn(cfg.replace(readout="last"), positions=(1,))
    with pytest.raises(ValueError, match="x1 has token dimension"):
        ntk_rnn.empirical_ntk_fn(cfg)(params, np.zeros((2, 3, DX + 1)))
    with pytest.raises(ValueError, match="lengths1 must have shape"):
        ntk_rnn.empirical_ntk_fn(cfg)(params, inputs(), lengths1=[1, 2])
    with pytest.raises(TypeError, match="sigma_w"):
        ntk_rnn.limit_ntk_fn(cfg)(inputs(), sigma_w=1.0)
    with pytest.raises(TypeError, match="the variances are"):
        ntk_rnn.batch(ntk_rnn.limit_ntk_fn(cfg))(inputs(), sigma_w=1.0)
    with pytest.raises(ValueError, match="sigma_b2 needs a model with biases"):
        ntk_rnn.limit_ntk_fn(cfg)(inputs(), sigma_b2=1.0)
    with pytest.raises(ValueError, match="max_bytes must be a positive int"):
        ntk_rnn.batch(ntk_rnn.empirical_ntk_fn(cfg), max_bytes=0)
    with pytest.raises(TypeError, match="kernel_fn must be"):
        ntk_rnn.batch(lambda p, x: x)
