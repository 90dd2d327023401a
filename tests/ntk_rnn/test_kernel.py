"""The structured kernel against two autodiff references, plus shapes, ordering and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import ntk_rnn
from ntk_rnn.kernels.empirical import BackwardPlan, structured_flops


def _draw(cfg, seed):
    """Parameters N(0, init_std^2) as ntk_rnn.init_params draws them, but with numpy: init_params and
    jax.random.normal compile a sampler for every new shape (about a second per configuration), which would
    dominate these tests of the kernel."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}


def _inputs(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape)


def _setup(n, length, dx, d, m, seed, activation="relu", **options):
    cfg = ntk_rnn.RNNConfig(width=m, input_dim=dx, output_dim=d, activation=activation, **options)
    return cfg, _draw(cfg, seed), _inputs(seed + 1, (n, length, dx))


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@st.composite
def kernel_cases(draw):
    length = draw(st.integers(1, 6))
    length2 = draw(st.integers(1, 6))
    min_len = min(length, length2)
    positions = draw(
        st.one_of(
            st.none() if min_len >= 2 else st.nothing(),
            st.lists(st.integers(0, min_len - 1), min_size=1, max_size=min_len, unique=True),
        )
    )
    return dict(
        n=draw(st.integers(1, 4)),
        n2=draw(st.one_of(st.none(), st.integers(1, 3))),
        length=length,
        length2=length2,
        dx=draw(st.integers(1, 4)),
        d=draw(st.integers(1, 3)),
        m=draw(st.sampled_from([4, 8, 16])),
        seed=draw(st.integers(0, 2**16)),
        positions=positions,
        activation=draw(st.sampled_from(["relu", "tanh", "erf", "linear"])),
        options=draw(
            st.fixed_dictionaries(
                {
                    "parameterization": st.sampled_from(["paper", "standard", "ntk"]),
                    "sigma_b2": st.sampled_from([0.0, 0.3]),
                    "trainable": st.lists(st.sampled_from(["W", "A", "b", "B"]), min_size=1, max_size=4, unique=True),
                    "readout": st.sampled_from(["all", "all", "last", "mean"]),
                }
            )
        ),
    )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=kernel_cases())
def test_three_methods_agree(case):
    """structured == jacobian == ntvp to 1e-10 relative, over random shapes, seeds, positions,
    activations, parameterizations, trainable sets, biases and readouts."""
    options = dict(case["options"])
    if options["sigma_b2"] == 0 and "b" in options["trainable"]:
        options["trainable"] = [k for k in options["trainable"] if k != "b"] or ["W"]
    if options["readout"] != "all":
        case["positions"] = None
    # positions None means 1..L-1, empty for L = 1 on a symmetric kernel: nothing to compare
    symmetric_default = case["n2"] is None and case["positions"] is None and options["readout"] == "all"
    assume(not (symmetric_default and case["length"] < 2))
    cfg, params, x1 = _setup(
        case["n"], case["length"], case["dx"], case["d"], case["m"], case["seed"], case["activation"], **options
    )
    x2 = None
    if case["n2"] is not None:
        x2 = _inputs(case["seed"] + 7, (case["n2"], case["length2"], case["dx"]))
    kernels = {
        method: ntk_rnn.empirical_ntk(cfg, params, x1, x2, positions=case["positions"], method=method)
        for method in ("structured", "jacobian", "ntvp")
    }
    ref = kernels["jacobian"]
    scale = max(np.abs(ref).max(), 1e-300)
    assert kernels["structured"].shape == ref.shape
    assert np.abs(kernels["structured"] - ref).max() / scale < 1e-10
    assert np.abs(kernels["ntvp"] - ref).max() / scale < 1e-10


def test_agreement_at_moderate_width_with_chunking():
    """Many chunks (tiny memory budget) give the same kernel as one chunk, and match autodiff."""
    cfg, params, x = _setup(n=21, length=5, dx=3, d=2, m=64, seed=3)
    one = ntk_rnn.empirical_ntk(cfg, params, x)
    chunked = ntk_rnn.empirical_ntk(
        cfg, params, x, max_bytes=2 * 8 * (3 * (2 * 10 * 2) ** 2 + 2 * 2 * 10 * 2 * 64 + 4 * 2 * 5 * 64)
    )
    ref = ntk_rnn.empirical_ntk(cfg, params, x, method="jacobian")
    assert _rel(one, ref) < 1e-12
    assert _rel(chunked, ref) < 1e-12
    np.testing.assert_allclose(one, one.T, rtol=0, atol=1e-12 * np.abs(one).max())


def test_row_order_is_sample_position_unit():
    """Blocks per sample pair match kernels of single samples; within a block, (position, unit) in C order."""
    cfg, params, x = _setup(n=3, length=4, dx=2, d=2, m=8, seed=0)
    K = ntk_rnn.empirical_ntk(cfg, params, x, positions=(3, 1))
    for i in range(3):
        for j in range(3):
            single = ntk_rnn.empirical_ntk(cfg, params, x[i : i + 1], x[j : j + 1], positions=(3, 1))
            np.testing.assert_allclose(K[i * 4 : (i + 1) * 4, j * 4 : (j + 1) * 4], single, rtol=1e-12)
    # position 3 then position 1, each with units 0, 1: compare with one output at a time
    y = lambda W, p, k: ntk_rnn.apply(cfg, {**params, "W": W}, x[:1])[0, p, k]  # noqa: E731
    grads = [np.asarray(jax.grad(y)(params["W"], p, k)).ravel() for p in (3, 1) for k in (0, 1)]
    np.testing.assert_allclose(K[:4, :4], np.array(grads) @ np.array(grads).T, rtol=1e-10)


def test_position_zero_has_no_w_gradient():
    """y_1 = B relu(A x_1) does not depend on W (h_0 = 0): its kernel rows are exactly zero."""
    cfg, params, x = _setup(n=3, length=4, dx=2, d=1, m=8, seed=0)
    K = ntk_rnn.empirical_ntk(cfg, params, x, positions=(0, 2))
    assert np.all(K.reshape(3, 2, 3, 2)[:, 0] == 0)
    assert np.all(K.reshape(3, 2, 3, 2)[:, 1, :, 1].diagonal() > 0)


def test_kernel_is_psd_and_same_seed_same_numbers():
    cfg, params, x = _setup(n=6, length=5, dx=3, d=1, m=32, seed=11)
    K = ntk_rnn.empirical_ntk(cfg, params, x)
    assert np.linalg.eigvalsh(K)[0] > -1e-10 * np.abs(K).max()
    cfg2, params2, x2 = _setup(n=6, length=5, dx=3, d=1, m=32, seed=11)
    assert np.array_equal(K, ntk_rnn.empirical_ntk(cfg2, params2, x2))


def test_user_params_dict_accepted():
    cfg, plain, x = _setup(n=2, length=3, dx=2, d=1, m=4, seed=0)  # numpy arrays
    params = {k: jnp.asarray(v) for k, v in plain.items()}
    np.testing.assert_array_equal(ntk_rnn.empirical_ntk(cfg, plain, x), ntk_rnn.empirical_ntk(cfg, params, x))


def test_plan_counts_only_causal_pairs_after_the_first_step():
    plan = BackwardPlan.build(tuple(range(1, 16)), first=1)
    assert plan.size == 15 * 16 // 2  # pairs 1 <= a <= l for l = 1..15
    assert np.all(plan.time_of >= 1) and np.all(plan.time_of <= np.asarray(plan.positions)[plan.position_of])
    assert len(set(zip(plan.position_of, plan.time_of, strict=True))) == plan.size
    # backward products: one per (l, a) with 1 <= a < l; the Gram term dominates at m=1024
    flops = structured_flops(32, 32, 16, tuple(range(1, 16)), 1024, 1, 8, True)
    assert flops > 2 * 1024 * (32 * 120) ** 2 / 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="fast"), "method must be one of"),
        (dict(positions=(0, 9)), r"positions must lie in \[0, L\)"),
        (dict(positions=(1, 1)), "must not repeat"),
        (dict(positions=()), "must not be empty"),
        (dict(x2=np.zeros((2, 3, 5))), "x2 has token dimension 5"),
        (dict(x2=np.full((2, 3, 2), np.nan)), "x2 contains NaN"),
        (dict(max_bytes=1000), "max_bytes=1000 is too small"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    cfg, params, x = _setup(n=2, length=3, dx=2, d=1, m=4, seed=0)
    with pytest.raises(ValueError, match=match):
        ntk_rnn.empirical_ntk(cfg, params, x, **kwargs)


def test_bad_params_and_inputs_raise():
    cfg, params, x = _setup(n=2, length=3, dx=2, d=1, m=4, seed=0)
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(4, 4\)"):
        ntk_rnn.empirical_ntk(cfg, {**params, "W": jnp.zeros((3, 3))}, x)
    with pytest.raises(ValueError, match="missing"):
        ntk_rnn.apply(cfg, {"W": params["W"]}, x)
    with pytest.raises(ValueError, match=r"x must have shape \(n, L, d_x\)"):
        ntk_rnn.apply(cfg, params, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="positions does not apply to readout='mean'"):
        ntk_rnn.empirical_ntk(cfg.replace(readout="mean"), params, x, positions=(1,))


# ----------------------------------------------------------------------------- per-sequence readouts
# For readout "last"/"mean" the structured kernel forms each row's Jacobian sum_t delta_t v_t^T for the groups
# where that is cheaper than the step Gram (ntk_rnn.kernels.structured._summed_groups) and contracts it. Every
# configuration compiles both the structured kernel and the autodiff reference (seconds each), so the cases
# are few: the summed path for elman "last", gru "mean", lstm "last"
# and a bidirectional 2-layer elman "mean"; the step Gram for an elman on 2-step sequences (the hypothesis
# test of tests/ntk_rnn/test_cells.py draws the other pairs at random).

LENGTHS = np.array([12, 6, 1, 11, 12])  # variable lengths, one of a single step, and full ones


def _per_sequence_case(cell, readout, m, length, layers=1, bidirectional=False, seed=0):
    """cfg, params and 5 sequences x (5, length, 2): all parameters trained, biases, 2 outputs."""
    cfg = ntk_rnn.RNNConfig(width=m, input_dim=2, output_dim=2, cell=cell, readout=readout, sigma_b2=0.3,
                            trainable=("W", "A", "b", "B"), parameterization="ntk", num_layers=layers,
                            bidirectional=bidirectional)  # fmt: skip
    return cfg, _draw(cfg, seed), _inputs(seed + 1, (5, length, 2))


def _max_rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def _check_against_jacobian(cfg, params, x):
    """Structured == autodiff to 1e-12 (max entry relative) for x[:3] against x[3:] and x[:3] with itself,
    with full lengths and with LENGTHS clipped to L; the reference is one Jacobian kernel over all 5."""
    lengths = np.minimum(LENGTHS, x.shape[1])
    for len1, len2, ref_lengths in ((None, None, None), (lengths[:3], lengths[3:], lengths)):
        ref = ntk_rnn.empirical_ntk(cfg, params, x, method="jacobian", lengths1=ref_lengths)
        cross = ntk_rnn.empirical_ntk(cfg, params, x[:3], x[3:], lengths1=len1, lengths2=len2)
        sym = ntk_rnn.empirical_ntk(cfg, params, x[:3], lengths1=len1)
        assert cross.shape == (6, 4) and sym.shape == (6, 6)
        assert _max_rel(cross, ref[:6, 6:]) < 1e-12
        assert _max_rel(sym, ref[:6, :6]) < 1e-12


@pytest.mark.parametrize("cell, readout", [("elman", "last"), ("gru", "mean"), ("lstm", "last")])
def test_summed_jacobian_path_matches_autodiff(cell, readout):
    """L = 12, width 8: every group takes the summed-Jacobian path, and the kernel equals autodiff's."""
    from ntk_rnn.kernels.structured import _groups, _summed_groups

    cfg, params, x = _per_sequence_case(cell, readout, m=8, length=12)
    assert _summed_groups(cfg, 12, 12) == tuple(_groups(cfg))
    _check_against_jacobian(cfg, params, x)


def test_summed_jacobian_path_bidirectional_two_layers_unequal_lengths():
    """A bidirectional 2-layer Elman RNN, readout "mean", every one of its 4 groups summed; padded lengths
    12 against 9 (x2 is the reference's last 2 sequences cut to their first 9 steps, lengths 9 and 4): the
    kernel equals the autodiff reference over all 5 sequences padded to 12, to 1e-12."""
    from ntk_rnn.kernels.structured import _groups, _summed_groups

    cfg, params, x = _per_sequence_case("elman", "mean", m=8, length=12, layers=2, bidirectional=True)
    assert len(_groups(cfg)) == 4 and _summed_groups(cfg, 12, 9) == tuple(_groups(cfg))
    lengths = np.array([12, 6, 1, 9, 4])
    ref = ntk_rnn.empirical_ntk(cfg, params, x, method="jacobian", lengths1=lengths)
    got = ntk_rnn.empirical_ntk(cfg, params, x[:3], x[3:, :9], lengths1=lengths[:3], lengths2=lengths[3:])
    assert got.shape == (6, 4)
    assert _max_rel(got, ref[:6, 6:]) < 1e-12


def test_gram_path_matches_autodiff():
    """L = 2, width 16: the step Gram is cheaper (L1 L2 (k m + f) = 140 < k m f = 304), no group is summed,
    and the kernel (readout "last") still equals autodiff's to 1e-12."""
    from ntk_rnn.kernels.structured import _summed_groups

    cfg, params, x = _per_sequence_case("elman", "last", m=16, length=2)
    assert _summed_groups(cfg, 2, 2) == ()
    _check_against_jacobian(cfg, params, x)
