"""Datasets in the paper's token form (docs/theory.md §1): measuring the form, building it, and the two
datasets of the studies, the paper's synthetic sequences and scikit-learn's digits read as rows.

The paper assumes every token has unit norm and last coordinate 1/sqrt(2) (a bias), and that the first
tokens of the n sequences are delta-separated: ||x_{i,1} - x_{j,1}|| >= delta for i != j.
Arrays are float64; import ``ntk_rnn`` first so that JAX runs in 64-bit mode.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.network.checks import check_float_array, check_int, numpy_rng
from ntk_rnn.network.data import SequenceData

INV_SQRT2 = 1.0 / math.sqrt(2.0)
_REPULSION_STEPS = 500
_REPULSION_LR = 0.2
_REPULSION_MOMENTUM = 0.7
_REPULSION_MARGIN = 0.05  # the repulsion aims this fraction above the separation asked for
_BOUND_RTOL = 1e-12  # slack allowed at the exact bounds for rounding
BINARY_DIGITS = (3, 8)  # the two-class digits task the studies and the CLI use


def _tokens_of(x, name: str = "x") -> np.ndarray:
    if isinstance(x, SequenceData):
        return np.asarray(x.x)
    arr = check_float_array(x, name, "(..., d_x)")
    if arr.ndim < 1 or arr.shape[-1] < 1:
        raise ValueError(f"{name} must have shape (..., d_x) with d_x >= 1, got shape {arr.shape}")
    return arr


# --------------------------------------------------------------------------- measuring the assumptions


def token_assumption_error(x) -> float:
    """max over tokens of max(| ||x_t|| - 1 |, |x_t[-1] - 1/sqrt(2)|): 0 for data in the paper's form.

    x: (..., d_x) tokens, or a SequenceData. Returns 0.0 when there are no tokens.
    """
    arr = _tokens_of(x)
    if arr.size == 0:
        return 0.0
    norm_err = np.abs(np.linalg.norm(arr, axis=-1) - 1.0)
    bias_err = np.abs(arr[..., -1] - INV_SQRT2)
    return float(max(norm_err.max(), bias_err.max()))


def _min_pairwise_distance(p: np.ndarray, block: int = 256) -> float:
    """min_{i != j} ||p_i - p_j|| for p (n, k), from exact differences (no Gram-matrix cancellation)."""
    n = p.shape[0]
    if n < 2:
        return math.inf
    best = math.inf
    for start in range(0, n - 1, block):
        rows = p[start : start + block]
        d = np.linalg.norm(rows[:, None, :] - p[None, start:, :], axis=-1)
        d[np.arange(rows.shape[0]), np.arange(rows.shape[0])] = np.inf  # i == j
        d[np.tril_indices(rows.shape[0], -1)] = np.inf  # pairs already seen
        best = min(best, float(d.min()))
    return best


def first_token_separation(x) -> float:
    """delta = min_{i != j} ||x_{i,1} - x_{j,1}|| for x (n, L, d_x) or a SequenceData (inf for n = 1)."""
    arr = _tokens_of(x)
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"x must have shape (n, L, d_x) with n, L >= 1, got shape {arr.shape}")
    return _min_pairwise_distance(arr[:, 0, :])


# --------------------------------------------------------------------------- building tokens


def _unit_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """v / ||v|| along the last axis, scaled by max|v| first so that tiny and huge vectors are exact.

    Returns (unit rows, mask of zero rows); zero rows come back as zeros.
    """
    scale = np.max(np.abs(v), axis=-1, keepdims=True)
    zero = scale[..., 0] == 0
    w = v / np.where(scale == 0, 1.0, scale)
    norm = np.linalg.norm(w, axis=-1, keepdims=True)
    return w / np.where(norm == 0, 1.0, norm), zero


def _tokens_from_units(u: np.ndarray) -> np.ndarray:
    """[u / sqrt(2), 1 / sqrt(2)] for unit vectors u (..., k) -> (..., k + 1)."""
    bias = np.full((*u.shape[:-1], 1), INV_SQRT2)
    return np.concatenate([u * INV_SQRT2, bias], axis=-1)


def normalize_tokens(v) -> jax.Array:
    """Map features v (..., k) to tokens (..., k+1) in the paper's form: [v/||v|| / sqrt(2), 1/sqrt(2)].

    Every token then has unit norm and last coordinate 1/sqrt(2). A zero feature vector raises ValueError
    naming its index.
    """
    arr = check_float_array(v, "v", "(..., k)")
    if arr.ndim < 1 or arr.shape[-1] < 1:
        raise ValueError(f"v must have shape (..., k) with k >= 1, got shape {arr.shape}")
    u, zero = _unit_rows(arr)
    if np.any(zero):
        where = tuple(int(i) for i in np.argwhere(zero)[0])
        raise ValueError(f"v{list(where)} is a zero feature vector; it has no direction to normalise")
    return jnp.asarray(_tokens_from_units(u), dtype=jnp.float64)


def gaussian_labels(n: int, length: int, output_dim: int, *, key: jax.Array) -> jax.Array:
    """(n, L, d) float64 labels, i.i.d. N(0, 1), deterministic in the key."""
    shape = (check_int(n, "n", 1), check_int(length, "length", 1), check_int(output_dim, "output_dim", 1))
    return jnp.asarray(numpy_rng(key).standard_normal(shape), dtype=jnp.float64)


def _random_units(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform unit vectors (..., k): normalised Gaussians (a zero draw, probability 0, becomes e_1)."""
    g = rng.standard_normal(shape)
    u, zero = _unit_rows(g)
    u[zero] = np.eye(shape[-1])[0]
    return u


def _separation_bound(n: int, input_dim: int) -> tuple[float, str]:
    """An upper bound on the first-token separation of n tokens of dimension input_dim, and its reason."""
    k = input_dim - 1  # u lives on the unit sphere of R^k, and ||x_i - x_j|| = ||u_i - u_j|| / sqrt(2)
    if n < 2:
        return math.inf, "a single sequence is separated by any delta"
    if k == 1:
        return math.sqrt(2.0), "for input_dim = 2 the tokens are [+-1/sqrt(2), 1/sqrt(2)], at distance sqrt(2)"
    bounds = [
        (math.sqrt(n / (n - 1)), "n unit vectors have min pairwise distance <= sqrt(2n/(n-1)) (Rankin's simplex bound)")
    ]
    if k == 2:
        bounds.append((math.sqrt(2.0) * math.sin(math.pi / n), "on a circle the best is the chord 2 sin(pi/n)"))
    elif n > k + 1:
        bounds.append((1.0, f"more than k + 1 = {k + 1} unit vectors in R^k cannot all be at angles > 90 degrees"))
    return min(bounds)


def _repel(u: np.ndarray, target: float) -> tuple[np.ndarray, float]:
    """Push the closest pairs of unit vectors u (n, k) apart until min ||u_i - u_j|| >= target.

    Deterministic projected gradient steps with heavy-ball momentum on the hinge energy
    sum_{i<j} max(0, t - ||u_i - u_j||)^2 / 2, t = target (1 + margin), renormalising onto the sphere.
    Returns the best configuration seen and its separation (from the Gram matrix; checked exactly later).
    """
    aim = target * (1.0 + _REPULSION_MARGIN)
    best, best_sep = u, -1.0
    velocity = np.zeros_like(u)
    for _ in range(_REPULSION_STEPS + 1):
        d2 = 2.0 - 2.0 * (u @ u.T)
        np.fill_diagonal(d2, 4.0 + aim * aim)  # i == j never binds
        d = np.sqrt(np.maximum(d2, 0.0))
        sep = float(d.min())
        if sep > best_sep:
            best, best_sep = u, sep
        if sep >= target * (1.0 + 1e-9):  # a little slack over the Gram matrix's rounding
            break
        w = np.maximum(aim - d, 0.0) / np.maximum(d, 1e-12)
        push = u * w.sum(axis=1, keepdims=True) - w @ u  # minus the energy's gradient
        velocity = _REPULSION_MOMENTUM * velocity + _REPULSION_LR * push
        velocity -= u * np.sum(velocity * u, axis=1, keepdims=True)  # tangent to the sphere
        u, _ = _unit_rows(u + velocity)
    return best, best_sep


def _separated_units(rng: np.random.Generator, n: int, k: int, target: float) -> np.ndarray:
    """n unit vectors in R^k, random then repelled, with min pairwise distance >= target (best effort)."""
    u = _random_units(rng, (n, k))
    if k == 1:  # the sphere is {-1, +1}: n <= 2 unless target == 0
        return np.array([u[0], -u[0]]) if n == 2 and target > 0 else u
    if n < 2 or target <= 0:
        return u
    return _repel(u, target)[0]


def _check_labels(labels, n: int, length: int, output_dim: int) -> jax.Array:
    expected = f"(n, length, output_dim) = ({n}, {length}, {output_dim})"
    arr = check_float_array(labels, "labels", expected)
    if arr.shape != (n, length, output_dim):
        raise ValueError(f"labels must have shape {expected}, got shape {arr.shape}")
    return jnp.asarray(arr, dtype=jnp.float64)


def synthetic_sequences(
    n: int,
    length: int,
    input_dim: int,
    output_dim: int = 1,
    delta: float = 0.5,
    labels=None,
    *,
    key: jax.Array,
) -> SequenceData:
    """The paper's synthetic data: x (n, L, input_dim) tokens [u/sqrt(2), 1/sqrt(2)] with u a unit vector, y (n, L, d).

    Tokens at steps 2..L are independent and uniform; the first tokens are delta-separated,
    ||x_{i,1} - x_{j,1}|| >= delta for i != j (random draws, then a deterministic repulsion if needed;
    at an exact bound, up to 1e-12 relative rounding). For input_dim = 2 and delta > 0, n <= 2.
    labels: None for N(0, 1) labels drawn with the key, or an array (n, length, output_dim).
    Deterministic given the key. Raises ValueError for impossible or unfound separations.
    """
    n = check_int(n, "n", 1)
    length = check_int(length, "length", 1)
    input_dim = check_int(input_dim, "input_dim", 2)
    output_dim = check_int(output_dim, "output_dim", 1)
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not math.isfinite(delta) or delta < 0:
        raise ValueError(f"delta must be a finite float >= 0, got {delta!r}")
    delta = float(delta)
    if input_dim == 2 and n > 2 and delta > 0:
        raise ValueError(
            f"cannot make n={n} sequences with input_dim={input_dim} delta-separated for delta={delta} > 0: for "
            "input_dim = 2 every token is [+-1/sqrt(2), 1/sqrt(2)], so at most 2 distinct first tokens exist"
        )
    bound, why = _separation_bound(n, input_dim)
    if delta > bound * (1.0 + _BOUND_RTOL):
        raise ValueError(
            f"cannot make n={n} sequences with input_dim={input_dim} delta-separated for delta={delta}: "
            f"the largest possible separation is at most {bound:.6g}, since {why}"
        )
    y = None if labels is None else _check_labels(labels, n, length, output_dim)

    rng = numpy_rng(key)  # tokens; the labels use jax.random.fold_in(key, 1)
    target = delta * math.sqrt(2.0)  # ||u_i - u_j|| needed
    rest = _random_units(rng, (n, length - 1, input_dim - 1))
    u_first = _separated_units(rng, n, input_dim - 1, target)
    x = np.concatenate([_tokens_from_units(u_first)[:, None, :], _tokens_from_units(rest)], axis=1)
    found = _min_pairwise_distance(x[:, 0, :])
    if found < delta * (1.0 - _BOUND_RTOL):
        raise ValueError(
            f"could not find n={n} first tokens with input_dim={input_dim} that are delta-separated for "
            f"delta={delta}: the best separation found was {found:.6g}; try a smaller delta or a larger input_dim"
        )
    if y is None:
        y = gaussian_labels(n, length, output_dim, key=jax.random.fold_in(key, 1))
    return SequenceData(x, y, "synthetic")


# --------------------------------------------------------------------------- scikit-learn digits


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    targets = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)
    targets.setflags(write=False)
    return images, targets


def digits_sequences(
    n: int | None = None, classes: Sequence[int] = tuple(range(10)), *, key: jax.Array | None = None
) -> SequenceData:
    """scikit-learn's 8x8 digits read row by row: x (n, 8, 9), y (n, 8, d) with the target at every step.

    Each row r (pixels 0..16) becomes v = (r - 8)/8 and then a token by normalize_tokens. A row whose
    centred value is exactly zero (all pixels 8; none occur in the bundled data) is given the direction e_1.
    Targets: for two classes d = 1 with +1 for classes[0] and -1 for classes[1]; otherwise the one-hot
    vector over `classes` minus 1/len(classes), d = len(classes).
    n: None for every image whose label is in `classes`, in dataset order; otherwise a random subset of
    n of them (kept in dataset order), drawn with `key`, which is then required.
    """
    cls = tuple(classes)
    if (
        len(cls) < 2
        or len(set(cls)) != len(cls)
        or any(isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 0 <= c <= 9 for c in cls)
    ):
        raise ValueError(f"classes must hold at least 2 distinct ints in 0..9, got {classes!r}")
    images, targets = _digits()
    idx = np.flatnonzero(np.isin(targets, cls))
    if n is not None:
        n = check_int(n, "n", 1)
        if n > idx.size:
            raise ValueError(f"n={n} exceeds the {idx.size} digits images with labels in classes={cls}")
        if key is None:
            raise ValueError("key is required to draw a random subset when n is given; pass key=jax.random.key(...)")
        pick = numpy_rng(key).choice(idx.size, n, replace=False)
        idx = idx[np.sort(pick)]
    v = (images[idx] - 8.0) / 8.0  # (n, 8, 8)
    zero = np.all(v == 0, axis=-1)
    v[zero, 0] = 1.0
    x = normalize_tokens(v)
    t = targets[idx]
    if len(cls) == 2:
        y = np.where(t == cls[0], 1.0, -1.0)[:, None]
    else:
        y = (t[:, None] == np.asarray(cls)[None, :]).astype(np.float64) - 1.0 / len(cls)
    y = np.broadcast_to(y[:, None, :], (idx.size, x.shape[1], y.shape[1]))
    return SequenceData(x, y, "digits")
