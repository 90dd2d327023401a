"""Infinite-width kernels of PyTorch-style bidirectional stacks (stacking "concat": upper layers read both
directions) and of the two cell biases and the output bias: wide networks' kernels converge to the limit like
m^-1/2 within Monte Carlo error, an independent NumPy transcription of the recursion, and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.kernels.bidirectional import stacked_kernel
from ntk_rnn.kernels.empirical import empirical_ntk_fn, pad_params
from ntk_rnn.kernels.limit import forward_kernels, limit_ntk, limit_ntk_fn, nngp_fn, nngp_kernel
from ntk_rnn.kernels.recursion import recursion, scalar_kernel
from ntk_rnn.network.model import real_rows

ALL = ("W", "A", "b", "B")
LENGTHS = np.array([4, 2, 3])


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _x(seed, n, length, dx, scale=1.3):
    return np.asarray(jax.random.normal(jax.random.key(seed), (n, length, dx))) * scale / np.sqrt(dx)


def _padded(x, lengths, seed=99):
    """x with its padded steps overwritten by large junk, which the kernels must ignore."""
    junk = 5.0 * np.random.default_rng(seed).standard_normal(x.shape)
    return np.where(np.arange(x.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None], x, junk)


def _concat(**options):
    """A PyTorch-style bidirectional stack (two layers unless options say otherwise)."""
    return ntk_rnn.RNNConfig(**{"width": 8, "input_dim": 3, "num_layers": 2, "bidirectional": True,
                                "stacking": "concat", **options})  # fmt: skip


# ----------------------------------------------------------------------------- Monte Carlo over widths


def _draw(cfg, rng, *draws):
    """Parameter sets N(0, init_std^2) (bo at 0) with leading axes `draws`, drawn in float32 by numpy (much faster
    than float64 or jax.random on a CPU, which matters at m = 1024), used in float64."""
    std = cfg.init_std
    return {k: jnp.asarray(rng.standard_normal((*draws, *s), dtype=np.float32) * np.float32(std[k])).astype(jnp.float64)
            for k, s in cfg.param_shapes.items()}  # fmt: skip


def _monte_carlo(cfg, x, lengths, positions, widths, seeds, cap=None):
    """Per width, the normalized empirical kernels (K/m, or K in "ntk") of seeds[i] networks, real rows only,
    (S, N, N). With cap, one compiled kernel of width cap computes every width on zero-padded parameters
    (exact for "paper" and "standard": ntk_rnn.kernels.empirical.pad_params)."""
    rows = real_rows(cfg, positions, lengths, x.shape[0])
    compiled = {}
    out = []
    for m, count in zip(widths, seeds, strict=True):
        small = cfg.replace(width=m)
        if (cap or m) not in compiled:
            compiled[cap or m] = jax.jit(empirical_ntk_fn(cfg.replace(width=cap or m), positions=positions))
        kernel = compiled[cap or m]
        rng = np.random.default_rng(m)
        scale = 1.0 if cfg.parameterization == "ntk" else m
        kernels = []
        for _ in range(count):
            params = _draw(small, rng)
            params = pad_params(small, params, cap) if cap and cap != m else params
            kernels.append(np.asarray(kernel(params, x, lengths1=lengths))[np.ix_(rows, rows)] / scale)
        out.append(np.array(kernels))
    return out


def _check_convergence(widths, kernels, limit):
    """The mean kernel equals the limit within 3 Monte Carlo standard errors at every width, and the mean
    relative error falls like m^-1/2: its log-log slope, fitted with weights from the seeds' standard errors,
    lies within 3 of its standard errors of -1/2. Returns (errors, standard errors, slope, slope error)."""
    norm = np.linalg.norm(limit)
    errors, spreads = [], []
    for m, K in zip(widths, kernels, strict=True):
        S = K.shape[0]
        mean = K.mean(axis=0)
        mc = np.sqrt(((K - mean) ** 2).sum() / (S * (S - 1))) / norm  # standard error of the mean, relative
        assert _rel(mean, limit) <= 3 * mc, (m, _rel(mean, limit), mc)
        e = np.array([_rel(k, limit) for k in K])
        errors.append(e.mean())
        spreads.append(e.std(ddof=1) / np.sqrt(S))
    x, y = np.log(widths), np.log(errors)
    w = (np.array(errors) / np.array(spreads)) ** 2  # 1 / var(log error)
    xm = (w * x).sum() / w.sum()
    slope = (w * (x - xm) * y).sum() / (w * (x - xm) ** 2).sum()
    slope_error = 1 / np.sqrt((w * (x - xm) ** 2).sum())
    assert abs(slope + 0.5) <= 3 * slope_error, (slope, slope_error, errors, spreads)
    return errors, spreads, slope, slope_error


@pytest.mark.parametrize(
    "options",
    [
        # PyTorch's stacked bidirectional RNN at relu, the paper's scaling with both cell biases trained
        dict(activation="relu", parameterization="paper", readout="all", trainable=("W", "A", "b", "bh"),
             sigma_b2=0.2, hidden_bias=True),
        # tanh (quadrature), standard scaling, one output per sequence from both directions' last states
        dict(activation="tanh", parameterization="standard", readout="last", trainable=("W", "A", "B"),
             sigma_b2=0.3, hidden_bias=True),
    ],
)  # fmt: skip
def test_concat_limit_is_the_mean_of_wide_networks(options):
    """Two layers, both directions reading [h_fwd; h_rev], lengths (4, 2, 3): at m = 64, 256, 1024 the
    empirical kernels' mean is the limit within Monte Carlo error and their error falls like m^-1/2."""
    cfg = _concat(sigma_w2=1.5, sigma_u2=1.3, **options)
    x = _padded(_x(7, 3, 4, 3), LENGTHS)
    positions = (0, 1, 2, 3) if cfg.readout == "all" else None
    limit = limit_ntk(cfg, x, positions=positions, lengths1=LENGTHS)
    widths = (64, 256, 1024)
    kernels = _monte_carlo(cfg, x, LENGTHS, positions, widths, (16, 12, 8), cap=1024)
    errors, spreads, slope, slope_error = _check_convergence(widths, kernels, limit)
    print(
        f"\n{cfg.activation} {cfg.readout}: errors {np.round(errors, 4)} +- {np.round(spreads, 4)}, "
        f"slope {slope:.3f} +- {slope_error:.3f}"
    )
    # the stacking matters: the separate stacks' limit is far outside the Monte Carlo error
    separate = limit_ntk(cfg.replace(stacking="separate"), x, positions=positions, lengths1=LENGTHS)
    assert _rel(kernels[-1].mean(axis=0), separate) > 0.1


def test_concat_ntk_parameterization_with_every_parameter_trained():
    """erf, "ntk" (the upper A's multiplier is sqrt(sigma_u2 / 2m)), both cell biases and the output bias trained,
    readout "mean" with lengths: the mean of 8 networks at m = 512 is the limit within Monte Carlo error (and the
    output bias's term, 1 per pair of rows, is resolved)."""
    cfg = _concat(activation="erf", parameterization="ntk", readout="mean", sigma_w2=1.2, sigma_u2=1.6, sigma_b2=0.2,
                  hidden_bias=True, output_bias=True, trainable=(*ALL, "bh", "bo"))  # fmt: skip
    x = _padded(_x(8, 3, 4, 3), LENGTHS)
    limit = limit_ntk(cfg, x, lengths1=LENGTHS)
    (K,) = _monte_carlo(cfg, x, LENGTHS, None, (512,), (8,))
    S, mean = K.shape[0], K.mean(axis=0)
    mc = np.sqrt(((K - mean) ** 2).sum() / (S * (S - 1))) / np.linalg.norm(limit)
    assert _rel(mean, limit) <= 3 * mc, (_rel(mean, limit), mc)
    assert _rel(mean, limit - 1.0) > 10 * mc


def test_concat_nngp_is_the_output_covariance_over_initializations():
    """E[y y^T] over 150 networks of width 128 with 64 output units (relu, standard, both cell biases, readout
    "all" with lengths) against the limit, within 3 Monte Carlo standard errors (per network, the covariance
    of its units; the spread of those over networks)."""
    cfg = _concat(activation="relu", parameterization="standard", output_dim=64, sigma_w2=2.0, sigma_u2=1.3,
                  sigma_b2=0.3, hidden_bias=True).replace(width=128)  # fmt: skip
    x = jnp.asarray(_padded(_x(9, 3, 4, 3), LENGTHS))
    positions = (0, 1, 2, 3)
    scalar = cfg.replace(output_dim=1)
    rows = real_rows(scalar, positions, LENGTHS, 3)
    limit = nngp_kernel(scalar, x, positions=positions, lengths1=LENGTHS)
    draws = 150
    outputs = jax.jit(jax.vmap(lambda p: ntk_rnn.apply(cfg, p, x, jnp.asarray(LENGTHS))))
    ys = np.asarray(outputs(_draw(cfg, np.random.default_rng(3), draws)))  # (draws, n, L, d)
    ys = ys.reshape(draws, -1, cfg.output_dim)[:, rows]  # (draws, real rows, units)
    per_network = np.einsum("srk,sqk->srq", ys, ys) / cfg.output_dim
    mean = per_network.mean(axis=0)
    mc = np.sqrt(((per_network - mean) ** 2).sum() / (draws * (draws - 1))) / np.linalg.norm(limit)
    assert _rel(mean, limit) <= 3 * mc, (_rel(mean, limit), mc)
    separate = nngp_kernel(scalar.replace(stacking="separate"), x, positions=positions, lengths1=LENGTHS)
    assert _rel(mean, separate) > 5 * mc, (_rel(mean, separate), mc)  # the stacking is resolved


# ----------------------------------------------------------------------------- an independent transcription


def _v(activation, q11, q12, q22):
    """(E[phi(u) phi(v)], E[phi'(u) phi'(v)]) in closed form for relu, erf and linear."""
    if activation == "linear":
        return q12, 1.0
    if activation == "relu":
        root = np.sqrt(q11 * q22)
        th = np.arccos(np.clip(q12 / root, -1, 1))
        return root * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi), (np.pi - th) / (2 * np.pi)
    prod = (1 + 2 * q11) * (1 + 2 * q22)
    return 2 / np.pi * np.arcsin(2 * q12 / np.sqrt(prod)), 4 / np.pi / np.sqrt(prod - 4 * q12**2)


def _constants(cfg):
    """The normalized limit's constants for a "concat" stack, written out from the model's initialization:
    q of layer 1 reads first * x.x', upper layers read up * (S_fwd + S_rev) (A of variance sigma_u2/m in "paper",
    fan-in 2m otherwise); direct: each parameter's gradient term in lim K/m ("paper", "standard") or lim K."""
    par, dx, d = cfg.parameterization, cfg.input_dim, cfg.output_dim
    sw2, su2, sb2, sv2 = cfg.sigma_w2, cfg.sigma_u2, cfg.sigma_b2, cfg.sigma_v2
    t = {p: float(p in cfg.trainable) for p in ("W", "A", "b", "bh", "B", "bo")}
    up = su2 if par == "paper" else su2 / 2
    if par == "paper":
        direct = dict(W=t["W"], A1=t["A"], Aup=t["A"], b=t["b"] + t["bh"], B=0.0, bo=0.0)
    elif par == "standard":
        direct = dict(W=t["W"], A1=0.0, Aup=t["A"], b=0.0, B=t["B"], bo=0.0)
    else:
        direct = dict(W=sw2 * t["W"], A1=su2 / dx * t["A"], Aup=up * t["A"], b=sb2 * (t["b"] + t["bh"]),
                      B=sv2 * t["B"], bo=t["bo"])  # fmt: skip
    return dict(first=su2 if par == "paper" else su2 / dx, up=up, bias=sb2 * (1 + cfg.hidden_bias),
                c0=sv2 / d if par == "paper" else sv2, sw2=sw2, direct=direct)  # fmt: skip


def _before(a, b, shape, reverse):
    """The previous step of (a, b) in a direction, or None at the zero state."""
    a, b = (a + 1, b + 1) if reverse else (a - 1, b - 1)
    return (a, b) if 0 <= a < shape[0] and 0 <= b < shape[1] else None


def _steps(n, reverse):
    return range(n - 1, -1, -1) if reverse else range(n)


def _forward_pair(cfg, c, u, v, var_u, var_v):
    """Per layer, per direction (S, k, q) on the (len u, len v) grid of two unpadded sequences; var_u, var_v: per
    layer, per direction self-variances (None: u is v, and only the diagonal is computed: the self-variances)."""
    shape, out = (len(u), len(v)), []
    for j in range(cfg.num_layers):
        layer = []
        for rev in (False, True):
            S, k, q = np.zeros(shape), np.zeros(shape), np.zeros(shape)
            for a in _steps(shape[0], rev):
                for b in _steps(shape[1], rev) if var_u is not None else [a]:
                    drive = (
                        c["first"] * u[a] @ v[b] if j == 0 else c["up"] * (out[-1][0][0][a, b] + out[-1][1][0][a, b])
                    )
                    before = _before(a, b, shape, rev)
                    q[a, b] = c["sw2"] * (S[before] if before else 0.0) + drive + c["bias"]
                    own = (q[a, b], q[a, b]) if var_u is None else (var_u[j][rev][a], var_v[j][rev][b])
                    S[a, b], k[a, b] = _v(cfg.activation, own[0], q[a, b], own[1])
            layer.append((S, k, q))
        out.append(layer)
    return out


def _reference_pair(cfg, u, v, kind):
    """The limit between two unpadded sequences: (len u, len v) for readout "all", else a scalar. The NTK is
    summed backwards, as in docs/theory.md §8: sum over parameters and step pairs of (delta . delta') times their
    inputs' Gram, with delta . delta' from a backward pass over layers and directions (both directions of
    layer j - 1 receive from both of layer j at the same step)."""
    c = _constants(cfg)

    def own(w):  # per layer, per direction, q_aa of w with itself
        return [[np.diag(direction[2]) for direction in layer] for layer in _forward_pair(cfg, c, w, w, None, None)]

    top = cfg.num_layers - 1
    fwd = _forward_pair(cfg, c, u, v, own(u), own(v))
    shape = (len(u), len(v))

    def sources():  # (output index, source matrix of the forward readout, of the reverse readout)
        if cfg.readout == "all":
            for a in range(shape[0]):
                for b in range(shape[1]):
                    e = np.zeros(shape)
                    e[a, b] = 1.0
                    yield (a, b), e, e
        elif cfg.readout == "last":
            first, last = np.zeros(shape), np.zeros(shape)
            last[-1, -1], first[0, 0] = 1.0, 1.0
            yield (), last, first
        else:
            yield (), np.full(shape, 1 / (shape[0] * shape[1])), np.full(shape, 1 / (shape[0] * shape[1]))

    result = np.zeros(shape) if cfg.readout == "all" else np.zeros(())
    for index, *srcs in sources():
        total = 0.0
        for readout, src in enumerate(srcs):
            total += (c["c0"] if kind == "nngp" else c["direct"]["B"]) * (src * fwd[top][readout][0]).sum()
            if kind == "nngp":
                continue
            delta = [[np.zeros(shape), np.zeros(shape)] for _ in range(cfg.num_layers)]
            for j in range(top, -1, -1):
                for rev in (False, True):
                    if j == top and rev != readout:
                        continue
                    for a in _steps(shape[0], not rev):  # backwards in the direction's own time
                        for b in _steps(shape[1], not rev):
                            after = _before(a, b, shape, not rev)
                            inner = c["sw2"] * (delta[j][rev][after] if after else 0.0)
                            if j == top:
                                inner += c["c0"] * src[a, b]
                            else:
                                inner += c["up"] * (delta[j + 1][0][a, b] + delta[j + 1][1][a, b])
                            delta[j][rev][a, b] = fwd[j][rev][1][a, b] * inner
                    d = c["direct"]
                    for a in range(shape[0]):
                        for b in range(shape[1]):
                            before = _before(a, b, shape, rev)
                            inputs = u[a] @ v[b] if j == 0 else fwd[j - 1][0][0][a, b] + fwd[j - 1][1][0][a, b]
                            term = d["W"] * (fwd[j][rev][0][before] if before else 0.0) + d["b"]
                            term += (d["A1"] if j == 0 else d["Aup"]) * inputs
                            total += delta[j][rev][a, b] * term
        result[index] = total + (c["direct"]["bo"] if kind == "ntk" else 0.0)
    return result


def _reference(cfg, x1, x2, len1, len2, kind):
    """The whole kernel from _reference_pair on the truncated sequences, rows (sample, real position, unit)."""
    blocks = [[_reference_pair(cfg, x1[i, :li], x2[j, :lj], kind) for j, lj in enumerate(len2)]
              for i, li in enumerate(len1)]  # fmt: skip
    if cfg.readout == "all":
        rows = [np.concatenate([blocks[i][j] for j in range(len(len2))], axis=1) for i in range(len(len1))]
        scalar = np.concatenate(rows, axis=0)
    else:
        scalar = np.array(blocks, dtype=float)
    return np.kron(scalar, np.eye(cfg.output_dim))


REFERENCE_CASES = [
    (dict(activation="relu", parameterization="paper", trainable=("W", "A", "b", "bh"), sigma_b2=0.2,
          hidden_bias=True), "all"),
    (dict(activation="erf", parameterization="standard", trainable=("W", "A", "B"), sigma_b2=0.3), "last"),
    (dict(activation="erf", parameterization="ntk", trainable=(*ALL, "bh", "bo"), sigma_b2=0.3, hidden_bias=True,
          output_bias=True, output_dim=2), "mean"),
    (dict(activation="linear", parameterization="ntk", trainable=("W", "A"), num_layers=3), "all"),
]  # fmt: skip


@pytest.mark.parametrize("options, readout", REFERENCE_CASES)
def test_concat_limit_equals_an_independent_transcription(options, readout):
    """limit_ntk and nngp_kernel against a plain NumPy transcription (closed-form V-transforms, loops over the
    truncated sequences, the NTK summed backwards over parameters) to 1e-10: lengths, L1 != L2, both biases and
    the output bias, three parameterizations, two and three layers, relu, erf and the linear closed form."""
    options = {"num_layers": 2, **options}
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=3, bidirectional=True, stacking="concat", readout=readout,
                            sigma_w2=1.3, sigma_u2=1.1, **options)  # fmt: skip
    len1, len2 = np.array([4, 1, 3]), np.array([2, 3])
    steps2 = 4 if readout == "all" else 3  # "all": one set of positions for both sides
    x1, x2 = _padded(_x(1, 3, 4, 3), len1), _padded(_x(2, 2, steps2, 3), len2)
    positions = (0, 1, 2, 3) if readout == "all" else None
    for kernel, kind in ((limit_ntk, "ntk"), (nngp_kernel, "nngp")):
        got = kernel(cfg, x1, x2, positions, lengths1=len1, lengths2=len2)
        want = _reference(cfg, x1, x2, len1, len2, kind)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


# ----------------------------------------------------------------------------- closed forms and special cases


def test_one_layer_concat_is_separate_and_the_concat_recursion_run_separately_is_the_separate_stacks():
    """With one layer there is nothing to concatenate: "concat" is "separate", exactly. And the concat recursion
    (its grid and its diagonals for "last"), run with each direction reading only its own layer below, equals
    the separate stacks' recursion (ntk_rnn.kernels.recursion) to rounding, with lengths."""
    len1, len2 = np.array([4, 1, 3]), np.array([2, 4])
    x1, x2 = _padded(_x(3, 3, 4, 3), len1), _padded(_x(4, 2, 4, 3), len2)
    one = _concat(activation="erf", parameterization="ntk", trainable=ALL, sigma_b2=0.3, num_layers=1)
    np.testing.assert_array_equal(
        limit_ntk(one, x1, x2, lengths1=len1, lengths2=len2),
        limit_ntk(one.replace(stacking="separate"), x1, x2, lengths1=len1, lengths2=len2),
    )
    for cfg in (_concat(activation="relu", parameterization="paper", trainable=("W", "A"), readout="all"),
                _concat(activation="erf", parameterization="standard", trainable=("W", "A", "B"), sigma_b2=0.2,
                        readout="last")):  # fmt: skip
        rec = recursion(cfg, 64, "trapezoid", "ntk")
        pos = (0, 1, 2, 3) if cfg.readout == "all" else None
        want = np.asarray(scalar_kernel(rec, cfg.readout, True, x1, x2, pos, pos, len1, len2))
        got = np.asarray(stacked_kernel(rec, cfg.readout, x1, x2, pos, pos, len1, len2, concat=False))
        if pos is not None:  # the separate recursion leaves padded rows to the caller
            want = want * (np.arange(4) < len1[:, None])[:, :, None, None] * (np.arange(4) < len2[:, None])[None, None]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14 * np.abs(want).max())


def test_forward_covariances_of_a_concat_stack():
    """relu, paper, sigma_w2 = sigma_u2 = 2, unit tokens, L = 5: the bottom layer is the one-layer recursion
    (||h_a||^2 -> a + 1), and the second layer reads both directions, ||h_fwd,a||^2 + ||h_rev,a||^2 = L + 1 at
    every step, so ||h^2_a||^2 -> (a + 1)(L + 1) (separate stacks: (a + 1)(a + 2)/2)."""
    x = ntk_rnn.synthetic_sequences(key=jax.random.key(0), n=2, length=5, input_dim=4).x
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=4, num_layers=2, bidirectional=True, stacking="concat")
    bottom, top = forward_kernels(cfg, x, layer=0).S, forward_kernels(cfg, x).S
    a = np.arange(1, 6)
    np.testing.assert_allclose(np.einsum("iaia->ia", bottom), np.tile(a, (2, 1)), rtol=1e-13)
    np.testing.assert_allclose(np.einsum("iaia->ia", top), np.tile(a * 6, (2, 1)), rtol=1e-13)


@pytest.mark.parametrize("parameterization", ["paper", "ntk"])
def test_two_cell_biases_are_one_bias_of_twice_the_variance(parameterization):
    """b and bh are independent with the same law and enter one pre-activation: the forward limit is one bias of
    variance 2 sigma_b2, and each trained bias adds its term. "ntk": the terms are sigma_b2 each, so it is the
    one-bias model at 2 sigma_b2; "paper": each bias's term is sigma_b2-free, so training both counts it twice."""
    cfg = _concat(activation="relu", parameterization=parameterization, readout="last", sigma_b2=0.3, hidden_bias=True,
                  trainable=("W", "b", "bh"))  # fmt: skip
    x = _padded(_x(5, 3, 4, 3), LENGTHS)
    one = cfg.replace(hidden_bias=False, sigma_b2=0.6, trainable=("W", "b"))
    got = limit_ntk(cfg, x, lengths1=LENGTHS)
    want = limit_ntk(one, x, lengths1=LENGTHS)
    if parameterization == "paper":
        want = want + limit_ntk(one.replace(trainable=("b",)), x, lengths1=LENGTHS)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    if parameterization == "ntk":  # the NNGP: sigma_b2 enters twice
        np.testing.assert_allclose(nngp_kernel(cfg, x, lengths1=LENGTHS), nngp_kernel(one, x, lengths1=LENGTHS),
                                   rtol=1e-12)  # fmt: skip


def test_output_bias_adds_one_per_pair_of_real_rows_in_the_ntk_parameterization():
    """bo starts at 0 and dy/dbo = [k = k'] at every real row: + 1 (same unit) to lim K in "ntk", nothing to lim K/m
    in "paper" and "standard" (a bo-only kernel is then 0, with a warning), nothing to the NNGP."""
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=3, output_dim=2, activation="erf", parameterization="ntk",
                            bidirectional=True, trainable=("W", "B"), output_bias=True)  # fmt: skip
    len1, len2 = np.array([3, 1]), np.array([2, 3, 1])
    x1, x2 = _padded(_x(6, 2, 3, 3), len1), _padded(_x(7, 3, 3, 3), len2)
    for readout, positions in (("all", (0, 1, 2)), ("last", None)):
        c = cfg.replace(readout=readout)
        plain = limit_ntk(c, x1, x2, positions, lengths1=len1, lengths2=len2)
        with_bo = limit_ntk(c.replace(trainable=("W", "B", "bo")), x1, x2, positions, lengths1=len1, lengths2=len2)
        ones = np.kron(np.ones((plain.shape[0] // 2, plain.shape[1] // 2)), np.eye(2))
        np.testing.assert_allclose(with_bo, plain + ones, rtol=1e-13)
    np.testing.assert_array_equal(nngp_kernel(cfg, x1), nngp_kernel(cfg.replace(output_bias=False), x1))
    with pytest.warns(UserWarning, match="identically 0"):
        assert not np.any(limit_ntk(cfg.replace(parameterization="standard", trainable=("bo",)), x1))


def test_limit_functions_of_a_concat_stack_vmap_over_variances():
    """limit_ntk_fn and nngp_fn of a concat stack, vmapped over sigma_u2 (which sets the upper A's multiplier in
    "ntk"), equal limit_ntk and nngp_kernel at each value (there the rows of padded positions are dropped)."""
    cfg = _concat(activation="erf", parameterization="ntk", trainable=(*ALL, "bh", "bo"), sigma_b2=0.2,
                  hidden_bias=True, output_bias=True)  # fmt: skip
    x = _padded(_x(8, 3, 4, 3), LENGTHS)
    positions = (0, 1, 2, 3)
    values = jnp.array([0.7, 1.9])
    rows = real_rows(cfg, positions, LENGTHS, 3)
    ntk_fn, gp_fn = limit_ntk_fn(cfg, positions=positions), nngp_fn(cfg, positions=positions)
    both = jax.jit(
        jax.vmap(lambda s: (ntk_fn(x, lengths1=LENGTHS, sigma_u2=s), gp_fn(x, lengths1=LENGTHS, sigma_u2=s)))
    )
    for kernel, batched in zip((limit_ntk, nngp_kernel), both(values), strict=True):
        for value, got in zip(values, np.asarray(batched), strict=True):
            want = kernel(cfg.replace(sigma_u2=float(value)), x, positions=positions, lengths1=LENGTHS)
            assert not np.any(got[~rows]) and not np.any(got[:, ~rows])
            np.testing.assert_allclose(got[np.ix_(rows, rows)], want, rtol=1e-12)


# ----------------------------------------------------------------------------- two cell biases, empirically


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_a_kernel_over_both_cell_biases_counts_the_bias_twice(cell):
    """The kernel over every parameter (as torch.func takes it) of a model with b and bh against the one-bias model
    at b_one = b + bh: for Elman and the LSTM, b and bh enter one pre-activation, so the two models are one function,
    dy/dbh = dy/db, and K_two = K_one + K_b. For the GRU, bh_r and bh_z repeat b_r and b_z, but bh_n sits inside the
    reset product: its gradient is not b_n's, and the models differ."""
    two = ntk_rnn.RNNConfig(width=4, input_dim=3, output_dim=2, cell=cell, activation="tanh", parameterization="ntk",
                            sigma_b2=0.5, hidden_bias=True, trainable=("W", "A", "b", "bh", "B"))  # fmt: skip
    one = two.replace(hidden_bias=False, trainable=("W", "A", "b", "B"))
    x = jnp.asarray(_x(10, 2, 3, 3))
    params = ntk_rnn.init_params(two, key=jax.random.key(1))

    @jax.jit
    def kernels(p2):
        p1 = {**{k: v for k, v in p2.items() if k != "bh"}, "b": p2["b"] + p2["bh"]}
        jacobians = [
            jax.jacrev(lambda p, c=c: ntk_rnn.apply(c, p, x).reshape(-1))(p) for c, p in ((two, p2), (one, p1))
        ]
        flat = [{k: j.reshape(j.shape[0], -1) for k, j in J.items()} for J in jacobians]
        gram = [sum(j @ j.T for j in J.values()) for J in flat]
        outputs = [ntk_rnn.apply(c, p, x) for c, p in ((two, p2), (one, p1))]
        return gram[0], gram[1], flat[1]["b"] @ flat[1]["b"].T, flat[0]["b"], flat[0]["bh"], outputs

    K_two, K_one, K_b, J_b, J_bh, (y_two, y_one) = (np.asarray(a) if not isinstance(a, list) else a
                                                     for a in kernels(params))  # fmt: skip
    scale = np.abs(K_two).max()
    if cell != "gru":
        np.testing.assert_allclose(y_two, y_one, rtol=1e-13)
        np.testing.assert_allclose(J_bh, J_b, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(K_two, K_one + K_b, rtol=1e-12, atol=1e-14 * scale)
        return
    m = two.width
    np.testing.assert_allclose(J_bh[:, : 2 * m], J_b[:, : 2 * m], rtol=1e-13, atol=1e-15)  # r and z
    assert np.abs(J_bh[:, 2 * m :] - J_b[:, 2 * m :]).max() > 0.1 * np.abs(J_b[:, 2 * m :]).max()  # n
    assert np.abs(K_two - K_one - K_b).max() > 0.01 * scale
    assert np.abs(np.asarray(y_two) - np.asarray(y_one)).max() > 1e-3
