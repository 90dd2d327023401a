"""Dual activations (V-transforms) for the infinite-width recursion (docs/theory.md §3).

For (u, v) ~ N(0, [[q11, q12], [q12, q22]]):

    dual(phi, q11, q12, q22)            = E[phi(u) phi(v)]
    dual_derivative(phi, q11, q12, q22) = E[phi'(u) phi'(v)]

Closed forms exist for "relu" (arc-cosine kernels of degree 1 and 0, Cho & Saul 2009), "step"
(phi = 1[u > 0]), "erf" (Williams 1998) and "linear"; "tanh" and any elementwise jax callable go
through 2-D quadrature over a product rule for N(0, 1) (`nodes` points per dimension). Every function
broadcasts over arrays of q11, q12, q22 and is jax-traceable (usable under jit and lax.scan).
Covariances may be degenerate: q12 is clipped to [-sqrt(q11 q22), sqrt(q11 q22)] (the correlation to
[-1, 1]) and zero variances give no NaN. At a zero variance u = 0 exactly, and derivatives follow
JAX's conventions there: relu'(0) = step(0) = 0, and a callable's own autodiff value at 0.

Quadrature rules. "trapezoid" (default): equally spaced nodes on [-8.5, 8.5] weighted by the normal
density; for integrands analytic in a strip it converges exponentially, like exp(-pi^2 / (sqrt(q) h))
for tanh (poles at distance pi / 2), h the spacing. "hermite": Gauss-Hermite
(numpy.polynomial.hermite_e.hermegauss), exact for polynomials but slower for tanh, whose poles
approach the real axis as the variance grows. Measured worst errors of E[tanh(u) tanh(v)] and its
derivative transform over correlations in [-1, 1] (q22 = 0.7 q11), against 601 trapezoid nodes:

    q11                      0.25    1       2       4       8
    trapezoid, 64 nodes      2e-14   5e-13   6e-9    3e-6    2e-4
    trapezoid, 100 nodes     1e-14   1e-14   9e-15   2e-10   3e-7
    hermite, 64 nodes        2e-14   2e-8    9e-6    5e-4    6e-3
    hermite, 100 nodes       2e-14   7e-11   2e-7    3e-5    1e-3

Kinked or discontinuous callables (relu-like, step-like) converge only algebraically under either
rule (about 1e-3 and 1e-2 at 100 nodes); use the closed forms for those.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.config import ACTIVATIONS

CLOSED_FORMS = ("relu", "step", "erf", "linear")
DEFAULT_NODES = 64  # quadrature nodes per dimension
DEFAULT_RULE = "trapezoid"
RULES = ("trapezoid", "hermite")
TRAPEZOID_RANGE = 8.5  # the normal density there is 2e-16 of its peak

Activation = str | Callable[[jax.Array], jax.Array]


def resolve(activation: Activation) -> str | Callable[[jax.Array], jax.Array]:
    """A closed-form name ("relu", "step", "erf", "linear") or a callable for quadrature.

    "tanh" and unknown callables become callables; the package's own relu/erf/linear functions
    (RNNConfig's ACTIVATIONS) are recognized and mapped to their closed forms.
    """
    if isinstance(activation, str):
        if activation in CLOSED_FORMS:
            return activation
        if activation in ACTIVATIONS:
            return ACTIVATIONS[activation]
        raise ValueError(f"activation must be one of {sorted({*CLOSED_FORMS, *ACTIVATIONS})} or a callable")
    if not callable(activation):
        raise ValueError(f"activation must be a name or a callable, got {activation!r}")
    for name in CLOSED_FORMS:
        if name in ACTIVATIONS and ACTIVATIONS[name] is activation:
            return name
    return activation


def dual(activation: Activation, q11, q12, q22, nodes: int = DEFAULT_NODES, rule: str = DEFAULT_RULE) -> jax.Array:
    """E[phi(u) phi(v)] for (u, v) ~ N(0, [[q11, q12], [q12, q22]]), broadcast over the inputs.

    Units: those of phi squared (q in units of the pre-activation squared). `nodes` (per dimension)
    and `rule` ("trapezoid" or "hermite") set the quadrature, used only without a closed form.
    """
    return dual_pair(activation, q11, q12, q22, nodes, rule)[0]


def dual_derivative(
    activation: Activation, q11, q12, q22, nodes: int = DEFAULT_NODES, rule: str = DEFAULT_RULE
) -> jax.Array:
    """E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[q11, q12], [q12, q22]]), broadcast over the inputs.

    For "step" this is 0: its derivative vanishes almost everywhere (the Dirac mass at 0 is not
    seen by autodiff, so 0 is also what the empirical kernel of a step network sees).
    """
    return dual_pair(activation, q11, q12, q22, nodes, rule)[1]


def dual_pair(
    activation: Activation, q11, q12, q22, nodes: int = DEFAULT_NODES, rule: str = DEFAULT_RULE
) -> tuple[jax.Array, jax.Array]:
    """(dual, dual_derivative), each of the broadcast shape of the inputs; quadrature shares its evaluations."""
    q11, q12, q22 = jnp.broadcast_arrays(*(jnp.asarray(q, dtype=jnp.float64) for q in (q11, q12, q22)))
    q11, q22 = jnp.maximum(q11, 0.0), jnp.maximum(q22, 0.0)
    root = jnp.sqrt(q11 * q22)
    q12 = jnp.clip(q12, -root, root)
    spec = resolve(activation)
    if spec == "linear":
        return q12, jnp.ones_like(q12)
    if spec == "erf":
        # (1 + 2 q11)(1 + 2 q22) - 4 q12^2 >= 1, written without cancellation; arcsin via arctan (faster in XLA)
        det = 1 + 2 * (q11 + q22) + 4 * (root - jnp.abs(q12)) * (root + jnp.abs(q12))
        return (2 / math.pi) * jnp.arctan(2 * q12 / jnp.sqrt(det)), (4 / math.pi) / jnp.sqrt(det)
    if spec in ("relu", "step"):
        positive = root > 0
        rho = jnp.clip(q12 / jnp.where(positive, root, 1.0), -1.0, 1.0)
        # within rounding of +-1 (e.g. q12 = q11 = q22, where sqrt(q11 q22) != q12 by an ulp) it is +-1:
        # arccos would turn the last ulp into an angle of 1e-8
        rho = jnp.where(1.0 - jnp.abs(rho) < 8 * jnp.finfo(rho.dtype).eps, jnp.sign(rho), rho)
        sine = jnp.sqrt((1 - rho) * (1 + rho))
        # theta = arccos(rho) = pi/2 - arctan(rho / sin); rho / 0 = +-inf gives theta = 0 or pi exactly
        theta = math.pi / 2 - jnp.arctan(rho / sine)
        # arc-cosine kernels: degree 0 is E[1(u>0) 1(v>0)], degree 1 is E[relu(u) relu(v)]
        degree0 = jnp.where(positive, (math.pi - theta) / (2 * math.pi), 0.0)
        degree1 = root * (sine + (math.pi - theta) * rho) / (2 * math.pi)
        if spec == "relu":
            return degree1, degree0
        return degree0, jnp.zeros_like(q12)
    return _quadrature(spec, q11, q12, q22, nodes, rule)


def normal_rule(nodes: int, rule: str = DEFAULT_RULE) -> tuple[np.ndarray, np.ndarray]:
    """Nodes z and weights w (each (nodes,)) with sum_k w_k f(z_k) ~ E f(Z), Z ~ N(0, 1)."""
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 2:
        raise ValueError(f"nodes must be an int >= 2, got {nodes!r}")
    if rule == "trapezoid":
        z = np.linspace(-TRAPEZOID_RANGE, TRAPEZOID_RANGE, nodes)
        return z, (z[1] - z[0]) * np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    if rule == "hermite":
        with np.errstate(all="ignore"):
            z, w = np.polynomial.hermite_e.hermegauss(nodes)
        if not np.all(np.isfinite(w)):
            raise ValueError(f"numpy's Gauss-Hermite weights overflow at nodes={nodes}; use fewer (<= 370)")
        return z, w / math.sqrt(2 * math.pi)
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def _quadrature(phi: Callable, q11, q12, q22, nodes: int, rule: str) -> tuple[jax.Array, jax.Array]:
    """2-D Gauss-Hermite via the Cholesky factor u = a z1, v = b z1 + c z2 (a >= 0, c >= 0).

    u is the variable with the larger variance, so the result is exactly symmetric in (q11, q22).
    Cost: nodes^2 evaluations of phi and phi' per entry, in a loop over nodes (memory stays that of
    the inputs).
    """
    z, w = (jnp.asarray(t) for t in normal_rule(nodes, rule))
    q11, q22 = jnp.maximum(q11, q22), jnp.minimum(q11, q22)
    a = jnp.sqrt(q11)
    b = jnp.where(a > 0, q12 / jnp.where(a > 0, a, 1.0), 0.0)
    c = jnp.sqrt(jnp.maximum(q22 - b**2, 0.0))

    def both(t):
        return jax.jvp(phi, (t,), (jnp.ones_like(t),))

    def outer(i, acc):
        f_u, df_u = both(a * z[i])

        def inner(j, inner_acc):
            f_v, df_v = both(b * z[i] + c * z[j])
            return inner_acc[0] + w[j] * f_v, inner_acc[1] + w[j] * df_v

        f_sum, df_sum = jax.lax.fori_loop(0, nodes, inner, (jnp.zeros_like(a), jnp.zeros_like(a)))
        return acc[0] + w[i] * f_u * f_sum, acc[1] + w[i] * df_u * df_sum

    return jax.lax.fori_loop(0, nodes, outer, (jnp.zeros_like(a), jnp.zeros_like(a)))
