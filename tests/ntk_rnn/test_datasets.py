"""Tests for ntk_rnn.apps.datasets: the paper's token form, delta-separation, the synthetic sequences and the digits."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ntk_rnn  # noqa: F401  (enables float64)
from ntk_rnn.apps.datasets import (
    digits_sequences,
    first_token_separation,
    gaussian_labels,
    normalize_tokens,
    synthetic_sequences,
    token_assumption_error,
)

INV_SQRT2 = 1 / math.sqrt(2)


def key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed)


def circle_bound(n: int) -> float:
    return math.sqrt(2) * math.sin(math.pi / n)


def test_token_assumption_error_measures_both_conditions():
    good = np.array(normalize_tokens(np.array([[3.0, 4.0], [-1.0, 0.0]])))
    assert token_assumption_error(good) < 1e-15
    assert token_assumption_error(2 * good) == pytest.approx(1.0)
    shifted = good.copy()
    shifted[0] = [0.0, 0.0, 1.0]  # unit norm, wrong bias coordinate
    assert token_assumption_error(shifted) == pytest.approx(1 - INV_SQRT2)


def test_first_token_separation():
    x = np.zeros((3, 2, 2))
    x[:, 0, :] = [[0, 0], [3, 4], [0, 1]]
    x[:, 1, :] = 100.0  # later tokens do not count
    assert first_token_separation(x) == pytest.approx(1.0)
    assert first_token_separation(x[:1]) == math.inf
    with pytest.raises(ValueError, match=r"\(n, L, d_x\)"):
        first_token_separation(np.zeros((3, 2)))


def test_first_token_separation_is_exact_for_close_points():
    # Gram-matrix formulas lose these distances to cancellation; exact differences do not.
    x = np.zeros((3, 1, 2))
    x[:, 0, :] = [[1.0, 0.0], [1.0 + 1e-9, 0.0], [0.0, 1.0]]
    assert first_token_separation(x) == pytest.approx(1e-9, rel=1e-6)


def test_normalize_tokens_values_and_errors():
    tok = np.asarray(normalize_tokens(np.array([3.0, 4.0])))
    np.testing.assert_allclose(tok, [0.6 * INV_SQRT2, 0.8 * INV_SQRT2, INV_SQRT2], rtol=0, atol=1e-16)
    with pytest.raises(ValueError, match=r"v\[1, 0\] is a zero feature vector"):
        normalize_tokens(np.array([[[1.0, 2.0]], [[0.0, 0.0]]]))
    with pytest.raises(ValueError, match="v contains NaN or inf"):
        normalize_tokens(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"v must have shape \(\.\.\., k\)"):
        normalize_tokens(np.float64(1.0))


@settings(max_examples=25, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
        elements=st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True),
    )
)
def test_normalize_tokens_property(v):
    zero = np.any(np.all(v == 0, axis=-1))
    if zero:
        with pytest.raises(ValueError, match="zero feature vector"):
            normalize_tokens(v)
    assume(not zero)
    tok = np.asarray(normalize_tokens(v))
    assert tok.shape == (*v.shape[:-1], v.shape[-1] + 1)
    np.testing.assert_allclose(np.linalg.norm(tok, axis=-1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(tok[..., -1], INV_SQRT2)
    assert token_assumption_error(tok) < 1e-12
    # the direction is kept: tok[..., :-1] is a positive multiple of v
    dots = np.sum(tok[..., :-1] * (v / np.max(np.abs(v), axis=-1, keepdims=True)), axis=-1)
    assert np.all(dots > 0)


def test_gaussian_labels():
    y = gaussian_labels(50, 4, 3, key=key(1))
    assert y.shape == (50, 4, 3) and y.dtype == np.float64
    assert abs(float(y.mean())) < 0.2 and abs(float(y.std()) - 1) < 0.1
    with pytest.raises(ValueError, match="output_dim must be an int >= 1"):
        gaussian_labels(2, 3, 0, key=key())


@pytest.mark.parametrize(("n", "length", "input_dim", "delta"), [(16, 5, 8, 0.5), (64, 3, 8, 0.5), (1, 4, 2, 0.0)])
def test_synthetic_token_form_and_separation(n, length, input_dim, delta):
    data = synthetic_sequences(n, length, input_dim, output_dim=2, delta=delta, key=key(3))
    assert data.x.shape == (n, length, input_dim) and data.y.shape == (n, length, 2)
    assert data.name == "synthetic"
    assert token_assumption_error(data) < 1e-12
    assert first_token_separation(data) >= delta


def test_synthetic_is_deterministic_in_the_key():
    a = synthetic_sequences(32, 4, 6, delta=0.6, key=key(7))
    b = synthetic_sequences(32, 4, 6, delta=0.6, key=key(7))
    c = synthetic_sequences(32, 4, 6, delta=0.6, key=key(8))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert not np.array_equal(a.y, c.y)


def test_synthetic_later_tokens_look_uniform():
    data = synthetic_sequences(400, 3, 4, delta=0.0, key=key(2))
    u = np.asarray(data.x[:, 1:, :-1]).reshape(-1, 3) * math.sqrt(2)
    np.testing.assert_allclose(u.mean(axis=0), 0.0, atol=0.1)  # mean of uniform unit vectors is 0
    np.testing.assert_allclose(u.T @ u / len(u), np.eye(3) / 3, atol=0.05)  # covariance I/k


def test_synthetic_repulsion_reaches_a_dense_request():
    assert first_token_separation(synthetic_sequences(512, 2, 8, delta=0.0, key=key(0))) < 0.5  # random tokens are not
    data = synthetic_sequences(512, 2, 8, delta=0.5, key=key(0))  # so the repulsion must do the work
    assert first_token_separation(data) >= 0.5


def test_synthetic_hard_but_feasible_hexagon():
    delta = 0.99 * circle_bound(6)
    data = synthetic_sequences(6, 3, 3, delta=delta, key=key(0))
    assert first_token_separation(data) >= delta


def test_synthetic_extreme_feasible_input_dim_2():
    data = synthetic_sequences(2, 3, 2, delta=math.sqrt(2), key=key(0))
    assert first_token_separation(data) == pytest.approx(math.sqrt(2), rel=1e-12)
    assert token_assumption_error(data) < 1e-12
    # without a separation requirement any n works; tokens are then random signs
    many = synthetic_sequences(50, 2, 2, delta=0.0, key=key(0))
    assert token_assumption_error(many) < 1e-12
    assert set(np.round(np.asarray(many.x[:, :, 0]) * math.sqrt(2), 12).ravel()) == {-1.0, 1.0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n=3, input_dim=2, delta=0.1), r"n=3.*input_dim=2.*delta=0\.1.*at most 2"),
        (dict(n=2, input_dim=2, delta=1.5), r"n=2.*input_dim=2.*delta=1\.5"),
        (dict(n=4, input_dim=10, delta=1.2), r"n=4.*input_dim=10.*delta=1\.2.*Rankin"),
        (dict(n=7, input_dim=3, delta=0.7), r"n=7.*input_dim=3.*delta=0\.7.*circle"),
        (dict(n=6, input_dim=3, delta=1.01 * circle_bound(6)), r"n=6.*input_dim=3.*circle"),
        (dict(n=5, input_dim=4, delta=1.05), r"n=5.*input_dim=4.*delta=1\.05"),
    ],
)
def test_synthetic_impossible_requests_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_sequences(key=key(), length=3, **kwargs)


def test_synthetic_unfound_separation_raises():
    # 100 points on the 2-sphere cannot be 0.3-separated (Tammes: about 0.26), but no simple bound rules it out
    with pytest.raises(ValueError, match=r"could not find n=100.*input_dim=4.*delta=0\.3.*best separation found"):
        synthetic_sequences(100, 2, 4, delta=0.3, key=key())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n=0), "n must be an int >= 1"),
        (dict(length=0), "length must be an int >= 1"),
        (dict(input_dim=1), "input_dim must be an int >= 2"),
        (dict(output_dim=True), "output_dim must be an int >= 1"),
        (dict(delta=-0.1), "delta must be a finite float >= 0"),
        (dict(delta=math.nan), "delta must be a finite float >= 0"),
        (dict(delta=math.inf), "delta must be a finite float >= 0"),
    ],
)
def test_synthetic_argument_validation(kwargs, match):
    args = dict(n=4, length=3, input_dim=5, output_dim=1, delta=0.5) | kwargs
    with pytest.raises(ValueError, match=match):
        synthetic_sequences(key=key(), **args)


def test_synthetic_rejects_a_non_key():
    with pytest.raises(ValueError, match="key must be a JAX PRNG key"):
        synthetic_sequences(2, 3, 4, key="seed")


def test_synthetic_user_labels():
    labels = np.arange(4 * 3 * 2, dtype=float).reshape(4, 3, 2)
    data = synthetic_sequences(4, 3, 5, output_dim=2, labels=labels, key=key())
    np.testing.assert_array_equal(data.y, labels)
    # the tokens do not depend on whether labels were given
    np.testing.assert_array_equal(data.x, synthetic_sequences(4, 3, 5, output_dim=2, key=key()).x)
    with pytest.raises(ValueError, match=r"labels must have shape \(n, length, output_dim\) = \(4, 3, 2\)"):
        synthetic_sequences(4, 3, 5, output_dim=2, labels=labels[:, :, :1], key=key())
    bad = labels.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="labels contains NaN or inf"):
        synthetic_sequences(4, 3, 5, output_dim=2, labels=bad, key=key())


def _feasible_separation(n: int, input_dim: int) -> float:
    """A separation known to be achievable (simplex, cross-polytope, regular polygon)."""
    k = input_dim - 1
    if k == 2:
        return circle_bound(n)
    if n <= k + 1:
        return math.sqrt(n / (n - 1))
    return 1.0  # n <= 2k: the cross-polytope


@st.composite
def feasible_settings(draw):
    input_dim = draw(st.integers(3, 8))
    n = draw(st.integers(2, 2 * (input_dim - 1) if input_dim > 3 else 10))
    frac = draw(st.floats(0.0, 0.9))
    return n, input_dim, frac * _feasible_separation(n, input_dim), draw(st.integers(0, 2**31 - 1))


# --------------------------------------------------------------------------- digits


# --------------------------------------------------------------------------- splits


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feasible_settings())
def test_synthetic_separation_property(setting):
    n, input_dim, delta, seed = setting
    data = synthetic_sequences(n, 2, input_dim, delta=delta, key=key(seed))
    assert first_token_separation(data) >= delta
    assert token_assumption_error(data) < 1e-12


def test_digits_all():
    data = digits_sequences()
    assert data.x.shape == (1797, 8, 9) and data.y.shape == (1797, 8, 10)
    assert data.name == "digits"
    assert token_assumption_error(data) < 1e-12
    y = np.asarray(data.y)
    np.testing.assert_allclose(y.sum(axis=-1), 0.0, atol=1e-12)  # centred one-hot
    assert set(np.round(np.unique(y), 12)) == {-0.1, 0.9}
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1], y.shape))  # same target at every step
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.testing.assert_array_equal(np.argmax(y[:, 0], axis=1), digits.target)
    # the first image's first row, by hand
    v = (digits.images[0, 0] - 8) / 8
    np.testing.assert_allclose(data.x[0, 0, :8], v / np.linalg.norm(v) * INV_SQRT2, atol=1e-15)


def test_digits_binary_labels():
    data = digits_sequences(classes=(3, 8))
    from sklearn.datasets import load_digits

    target = load_digits().target
    keep = np.isin(target, (3, 8))
    assert data.n == keep.sum() and data.output_dim == 1
    np.testing.assert_array_equal(data.y[:, 0, 0], np.where(target[keep] == 3, 1.0, -1.0))
    np.testing.assert_array_equal(data.y[:, :, 0], np.repeat(data.y[:, :1, 0], 8, axis=1))


def test_digits_subset_and_classes_order():
    a = digits_sequences(n=50, key=key(4), classes=(7, 1, 2))
    b = digits_sequences(n=50, key=key(4), classes=(7, 1, 2))
    assert a.x.shape == (50, 8, 9) and a.y.shape == (50, 8, 3)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_allclose(np.unique(np.asarray(a.y)), [-1 / 3, 2 / 3])
    assert not np.array_equal(a.x, digits_sequences(n=50, key=key(5), classes=(7, 1, 2)).x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n=10), "key is required"),
        (dict(n=400, key=key(), classes=(0, 1)), r"n=400 exceeds the 360 digits images"),
        (dict(classes=(3,)), "at least 2 distinct ints in 0..9"),
        (dict(classes=(3, 3)), "at least 2 distinct ints in 0..9"),
        (dict(classes=(3, 10)), "at least 2 distinct ints in 0..9"),
        (dict(n=0, key=key()), "n must be an int >= 1"),
    ],
)
def test_digits_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        digits_sequences(**kwargs)
