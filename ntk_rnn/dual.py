"""Dual activations (V-transforms) for the infinite-width recursion (theory.md §3).

For (u, v) ~ N(0, [[q11, q12], [q12, q22]]):

    dual(phi, q11, q12, q22)            = E[phi(u) phi(v)]
    dual_derivative(phi, q11, q12, q22) = E[phi'(u) phi'(v)]

Closed forms exist for "relu" (arc-cosine kernels of degree 1 and 0, Cho & Saul 2009), "step"
(phi = 1[u > 0]), "erf" (Williams 1998) and "linear"; "tanh" and any elementwise jax callable go
through 2-D Gauss-Hermite quadrature. Every function broadcasts over arrays of q11, q12, q22 and is
jax-traceable (usable under jit and lax.scan). Covariances may be degenerate: q12 is clipped to
[-sqrt(q11 q22), sqrt(q11 q22)] (the correlation to [-1, 1]) and zero variances give no NaN. At a
zero variance u = 0 exactly, and derivatives follow JAX's conventions there: relu'(0) = step(0) = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.config import ACTIVATIONS

CLOSED_FORMS = ("relu", "step", "erf", "linear")
DEFAULT_NODES = 64  # Gauss-Hermite nodes per dimension

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


def dual(activation: Activation, q11, q12, q22, nodes: int = DEFAULT_NODES) -> jax.Array:
    """E[phi(u) phi(v)] for (u, v) ~ N(0, [[q11, q12], [q12, q22]]), broadcast over the inputs.

    Units: those of phi squared (q in units of the pre-activation squared). `nodes` is the number of
    Gauss-Hermite nodes per dimension, used only without a closed form.
    """
    return dual_pair(activation, q11, q12, q22, nodes)[0]


def dual_derivative(activation: Activation, q11, q12, q22, nodes: int = DEFAULT_NODES) -> jax.Array:
    """E[phi'(u) phi'(v)] for (u, v) ~ N(0, [[q11, q12], [q12, q22]]), broadcast over the inputs.

    For "step" this is 0: its derivative vanishes almost everywhere (the Dirac mass at 0 is not
    seen by autodiff, so 0 is also what the empirical kernel of a step network sees).
    """
    return dual_pair(activation, q11, q12, q22, nodes)[1]


def dual_pair(activation: Activation, q11, q12, q22, nodes: int = DEFAULT_NODES) -> tuple[jax.Array, jax.Array]:
    """(dual, dual_derivative) together; quadrature shares its function evaluations between them."""
    q11, q12, q22 = jnp.broadcast_arrays(*(jnp.asarray(q, dtype=jnp.float64) for q in (q11, q12, q22)))
    q11, q22 = jnp.maximum(q11, 0.0), jnp.maximum(q22, 0.0)
    root = jnp.sqrt(q11 * q22)
    q12 = jnp.clip(q12, -root, root)
    spec = resolve(activation)
    if spec == "linear":
        return q12, jnp.ones_like(q12)
    if spec == "erf":
        prod = (1 + 2 * q11) * (1 + 2 * q22)
        value = (2 / math.pi) * jnp.arcsin(jnp.clip(2 * q12 / jnp.sqrt(prod), -1.0, 1.0))
        return value, (4 / math.pi) / jnp.sqrt(prod - 4 * q12**2)
    if spec in ("relu", "step"):
        positive = root > 0
        rho = jnp.clip(q12 / jnp.where(positive, root, 1.0), -1.0, 1.0)
        theta = jnp.arccos(rho)
        # arc-cosine kernels: degree 0 is E[1(u>0) 1(v>0)], degree 1 is E[relu(u) relu(v)]
        degree0 = jnp.where(positive, (math.pi - theta) / (2 * math.pi), 0.0)
        degree1 = root * (jnp.sqrt(jnp.maximum(1 - rho**2, 0.0)) + (math.pi - theta) * rho) / (2 * math.pi)
        if spec == "relu":
            return degree1, degree0
        return degree0, jnp.zeros_like(q12)
    return _quadrature(spec, q11, q12, q22, nodes)


def hermite_rule(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss-Hermite nodes z and weights w with sum_k w_k f(z_k) ~ E f(Z), Z ~ N(0, 1)."""
    if not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes must be a positive int, got {nodes!r}")
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    return z, w / math.sqrt(2 * math.pi)


def _quadrature(phi: Callable, q11, q12, q22, nodes: int) -> tuple[jax.Array, jax.Array]:
    """2-D Gauss-Hermite via the Cholesky factor u = a z1, v = b z1 + c z2 (a >= 0, c >= 0).

    Cost: nodes^2 evaluations of phi and phi' per entry, in a loop over nodes (memory stays that of
    the inputs). Exact for polynomials of degree < 2 nodes in each variable.
    """
    z, w = (jnp.asarray(t) for t in hermite_rule(nodes))
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
