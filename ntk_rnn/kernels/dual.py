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
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.network.config import ACTIVATIONS

CLOSED_FORMS = ("relu", "step", "erf", "linear")
"""Activations with closed-form dual transforms; every other one goes through quadrature."""
DEFAULT_NODES = 64
"""Quadrature nodes per dimension."""
DEFAULT_RULE = "trapezoid"
"""The default quadrature rule (accuracy table in the module docstring)."""
RULES = ("trapezoid", "hermite")
"""The quadrature rules."""
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
    """(E[phi(u) phi(v)], E[phi'(u) phi'(v)]) by quadrature, differentiable in (q11, q12, q22) everywhere
    (_quadrature_pair's derivative rule)."""
    return _quadrature_pair(phi, nodes, rule, q11, q12, q22)


def _derivative(f: Callable) -> Callable:
    """t -> f'(t), elementwise, by a jvp (nests for higher derivatives)."""
    return lambda t: jax.jvp(f, (t,), (jnp.ones_like(t),))[1]


@partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _quadrature_pair(phi: Callable, nodes: int, rule: str, q11, q12, q22) -> tuple[jax.Array, jax.Array]:
    d1 = _derivative(phi)
    return tuple(_expectations([(phi, phi), (d1, d1)], q11, q12, q22, nodes, rule))


@_quadrature_pair.defjvp
def _quadrature_pair_jvp(phi: Callable, nodes: int, rule: str, primals, tangents):
    """Price's theorem: d E[f(u) g(v)] = E[f'(u) g'(v)] dq12 + 1/2 E[f''(u) g(v)] dq11 + 1/2 E[f(u) g''(v)] dq22.
    Autodiff through the Cholesky factor instead would divide by c = 0 where the correlation is +-1 (the
    kernel's diagonal)."""
    q11, q12, q22 = primals
    t11, t12, t22 = (jnp.broadcast_to(t, jnp.shape(q11)) for t in tangents)
    d1 = _derivative(phi)
    d2 = _derivative(d1)
    d3 = _derivative(d2)
    pairs = [(phi, phi), (d1, d1), (d2, phi), (phi, d2), (d2, d2), (d3, d1), (d1, d3)]
    s, k, s11, s22, k12, k11, k22 = _expectations(pairs, q11, q12, q22, nodes, rule)
    ds = k * t12 + 0.5 * (s11 * t11 + s22 * t22)
    dk = k12 * t12 + 0.5 * (k11 * t11 + k22 * t22)
    return (s, k), (ds, dk)


def _expectations(pairs: list[tuple[Callable, Callable]], q11, q12, q22, nodes: int, rule: str) -> list[jax.Array]:
    """E[f(u) g(v)] for each (f, g) of `pairs`, by 2-D quadrature over the Cholesky factor U = a z1,
    V = b z1 + c z2 (a >= 0, c >= 0) of the variable with the larger variance first; where that is v, the
    pair's value is E[g(U) f(V)], so the result is exactly symmetric in (q11, q22). `pairs` must hold (g, f)
    with every (f, g) whose members differ. Cost: nodes^2 evaluations of each function per entry, in a loop
    over nodes (memory stays that of the inputs)."""
    z, w = (jnp.asarray(t) for t in normal_rule(nodes, rule))
    q11, q12, q22 = jnp.broadcast_arrays(q11, q12, q22)
    swap = q11 < q22
    qa, qb = jnp.maximum(q11, q22), jnp.minimum(q11, q22)
    a = jnp.sqrt(qa)
    b = jnp.where(a > 0, q12 / jnp.where(a > 0, a, 1.0), 0.0)
    c = jnp.sqrt(jnp.maximum(qb - b**2, 0.0))
    functions = list(dict.fromkeys(f for pair in pairs for f in pair))  # each evaluated once per node
    index = {f: i for i, f in enumerate(functions)}

    def outer(i, acc):
        at_u = [f(a * z[i]) for f in functions]

        def inner(j, inner_acc):
            at_v = [f(b * z[i] + c * z[j]) for f in functions]
            return [total + w[j] * at_v[index[g]] for total, (_, g) in zip(inner_acc, pairs, strict=True)]

        sums = jax.lax.fori_loop(0, nodes, inner, [jnp.zeros_like(a) for _ in pairs])
        return [total + w[i] * at_u[index[f]] * g_sum for total, (f, _), g_sum in zip(acc, pairs, sums, strict=True)]

    values = jax.lax.fori_loop(0, nodes, outer, [jnp.zeros_like(a) for _ in pairs])
    position = {(f, g): k for k, (f, g) in enumerate(pairs)}
    return [jnp.where(swap, values[position[(g, f)]], value) for (f, g), value in zip(pairs, values, strict=True)]
