"""Recurrent cells: the one step  s_t = step(params, s_{t-1}, x_t)  that an RNN repeats with tied weights
(docs/theory.md §8).

A cell's parameters are W (k m, m), the hidden-to-hidden weights; A (k m, d_in), the input weights; and
optionally b and bh (k m,), the input-side and hidden-side biases, with k = Cell.gates blocks stacked in rows
(PyTorch's weight_hh, weight_ih, bias_ih, bias_hh). The step sees them with their multipliers applied and must
use each one exactly once: W and A as `params["W"] @ v` for a vector v it computes (h_{t-1}, r * h_{t-1}, x_t,
...), and a bias by adding it, `z + params["b"]`. That is all the structured kernel needs: the Jacobian of a
weight used once as V @ v is a sum over steps of rank-one terms delta_t v_t^T (docs/theory.md §8). The state has
Cell.state_factor * m entries; the hidden state h (what the next layer and the readout see) is its first m.
Steps act on one sequence: s (state_factor m,), x (d_in,); the model vmaps them over samples.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

Step = Callable[[Mapping[str, Any], jax.Array, jax.Array], jax.Array]
CELL_WEIGHTS = ("W", "A", "b", "bh")


@dataclasses.dataclass(frozen=True)
class Cell:
    """A recurrent cell: `step(params, s, x) -> s` in plain JAX, with each weight used once (module doc).

    Attributes:
      name: a label for tables and figures.
      step: the step function; params holds "W", "A" and, when the model has them, the biases "b" and
        "bh" (RNNConfig.hidden_bias).
      gates: k, the number of m-row blocks of W, A, b and bh (1 for Elman, 3 for GRU, 4 for LSTM).
      state_factor: the state has state_factor * m entries, h = s[:m] first (2 for LSTM: s = [h; c]).
      shared: groups of weights whose products the step adds into one pre-activation before anything
        else touches them (Elman and LSTM: ("W", "A", "b", "bh"); GRU: ("A", "b") and ("W", "bh")). Their
        backward vectors are equal, so the kernel computes one Gram matrix per group. A wrong group gives a
        wrong kernel.
      hidden_bias_gates: the m-row blocks of bh, hidden_bias_gates * m entries (None: all gates, PyTorch's
        bias_hh; 1 for FLAX_GRU, whose one hidden-side bias sits in the candidate).
    """

    name: str
    step: Step
    gates: int = 1
    state_factor: int = 1
    shared: tuple[tuple[str, ...], ...] = ()
    hidden_bias_gates: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Cell.name must be a non-empty str, got {self.name!r}")
        if not callable(self.step):
            raise ValueError(f"Cell.step must be a function step(params, s, x) -> s, got {self.step!r}")
        if self.hidden_bias_gates is None:
            object.__setattr__(self, "hidden_bias_gates", self.gates)
        for field in ("gates", "state_factor", "hidden_bias_gates"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Cell.{field} must be a positive int, got {value!r}")
        names = [k for group in self.shared for k in group]
        if not set(names) <= set(CELL_WEIGHTS) or len(set(names)) != len(names):
            raise ValueError(f"Cell.shared must be disjoint groups of {CELL_WEIGHTS}, got {self.shared!r}")

    def group_of(self, weight: str) -> tuple[str, ...]:
        """The shared group of a weight ("W", "A", "b" or "bh"), or the weight alone."""
        return next((group for group in self.shared if weight in group), (weight,))


def _affine(params: Mapping[str, Any], x: jax.Array) -> jax.Array:
    """A x (+ b): the input part of every built-in cell."""
    z = params["A"] @ x
    return z + params["b"] if "b" in params else z


def _recurrent(params: Mapping[str, Any], h: jax.Array) -> jax.Array:
    """W h (+ bh): the hidden part of every built-in cell."""
    z = params["W"] @ h
    return z + params["bh"] if "bh" in params else z


def _elman_step(phi: Callable[[jax.Array], jax.Array], params: Mapping[str, Any], h: jax.Array, x: jax.Array):
    return phi(_recurrent(params, h) + _affine(params, x))


def gru_step(params: Mapping[str, Any], h: jax.Array, x: jax.Array) -> jax.Array:
    """PyTorch's GRU: gates (r, z, n) stacked in rows, with the hidden bias bh when the model has one,
    r = sigmoid(A_r x + b_r + W_r h + bh_r), z = sigmoid(A_z x + b_z + W_z h + bh_z),
    n = tanh(A_n x + b_n + r * (W_n h + bh_n)), h' = (1 - z) * n + z * h."""
    m = h.shape[0]
    gx, gh = _affine(params, x), _recurrent(params, h)
    r = jax.nn.sigmoid(gx[:m] + gh[:m])
    z = jax.nn.sigmoid(gx[m : 2 * m] + gh[m : 2 * m])
    n = jnp.tanh(gx[2 * m :] + r * gh[2 * m :])
    return (1.0 - z) * n + z * h


def flax_gru_step(params: Mapping[str, Any], h: jax.Array, x: jax.Array) -> jax.Array:
    """The GRU of Flax (linen.GRUCell) and Equinox (nn.GRUCell): PyTorch's, but with one hidden-side bias bh (m,),
    in the candidate only: n = tanh(A_n x + b_n + r * (W_n h + bh))."""
    m = h.shape[0]
    gx, gh = _affine(params, x), params["W"] @ h
    r = jax.nn.sigmoid(gx[:m] + gh[:m])
    z = jax.nn.sigmoid(gx[m : 2 * m] + gh[m : 2 * m])
    candidate = gh[2 * m :] + params["bh"] if "bh" in params else gh[2 * m :]
    n = jnp.tanh(gx[2 * m :] + r * candidate)
    return (1.0 - z) * n + z * h


def lstm_step(params: Mapping[str, Any], s: jax.Array, x: jax.Array) -> jax.Array:
    """PyTorch's LSTM on the state s = [h; c]: gates (i, f, g, o) stacked in rows of W h + A x (+ b + bh),
    c' = f * c + i * g, h' = o * tanh(c')."""
    m = s.shape[0] // 2
    h, c = s[:m], s[m:]
    gates = _recurrent(params, h) + _affine(params, x)
    i, f, o = (jax.nn.sigmoid(gates[k * m : (k + 1) * m]) for k in (0, 1, 3))
    g = jnp.tanh(gates[2 * m : 3 * m])
    c = f * c + i * g
    return jnp.concatenate([o * jnp.tanh(c), c])


class TiedUse:
    """A weight as a step sees it in the structured kernel's pass (docs/theory.md §8): `V @ v` (a matrix)
    or `z + V` (a bias) returns the usual value plus a zero tap eps, whose cotangent is delta_t, and records
    the feature c v (c V's multiplier; v = 1 for a bias) that the kernel weights delta_t by."""

    __slots__ = ("feature", "name", "scale", "tap", "value")

    def __init__(self, name: str, value: jax.Array, scale: float, tap: jax.Array):
        self.name, self.value, self.scale, self.tap = name, value, scale, tap
        self.feature: jax.Array | None = None

    def _record(self, feature: jax.Array) -> None:
        if self.feature is not None:
            raise ValueError(f"the cell step uses params[{self.name!r}] more than once; each weight must enter "
                             f"a step once (stack the gates in its rows instead)")  # fmt: skip
        self.feature = feature

    def __matmul__(self, v) -> jax.Array:
        v = jnp.asarray(v)
        if self.value.ndim != 2 or v.ndim != 1:
            raise ValueError(f"the cell step must use params[{self.name!r}] as params[{self.name!r}] @ v with v a "
                             f"vector, got shapes {self.value.shape} @ {v.shape}")  # fmt: skip
        self._record(self.scale * v)
        return self.value @ v + self.tap

    def __add__(self, other) -> jax.Array:
        if self.value.ndim != 1:
            raise ValueError(f"the cell step must use params[{self.name!r}] as params[{self.name!r}] @ v, not +")
        self._record(jnp.full((1,), self.scale, self.value.dtype))
        return self.value + self.tap + other

    __radd__ = __add__

    def __getattr__(self, attribute: str):
        raise AttributeError(f"the cell step may use params[{self.name!r}] only as params[{self.name!r}] @ v (W, A) "
                        f"or z + params[{self.name!r}] (b), not .{attribute}")  # fmt: skip

    def __array__(self, *args, **kwargs):
        raise TypeError(f"the cell step may use params[{self.name!r}] only as params[{self.name!r}] @ v (W, A) "
                        f"or z + params[{self.name!r}] (b)")  # fmt: skip


GRU = Cell("gru", gru_step, gates=3, shared=(("A", "b"), ("W", "bh")))
"""PyTorch's GRU (gru_step), the cell of RNNConfig(cell="gru")."""
FLAX_GRU = Cell("gru", flax_gru_step, gates=3, shared=(("A", "b"),), hidden_bias_gates=1)
"""The GRU of Flax and Equinox (flax_gru_step), with one hidden-side bias in the candidate."""
LSTM = Cell("lstm", lstm_step, gates=4, state_factor=2, shared=(CELL_WEIGHTS,))
"""PyTorch's LSTM (lstm_step), the cell of RNNConfig(cell="lstm")."""
CELLS = ("elman", "gru", "lstm")
"""The built-in cells RNNConfig.cell names (builtin_cell)."""


@functools.cache
def elman_cell(activation: Callable[[jax.Array], jax.Array]) -> Cell:
    """The Elman cell h' = phi(W h + A x + b) for an activation function (one Cell per function, so that
    jit sees the same static config each time)."""
    return Cell("elman", functools.partial(_elman_step, activation), shared=(CELL_WEIGHTS,))


def builtin_cell(name: str, activation: Callable[[jax.Array], jax.Array]) -> Cell:
    """The cell called `name` ("elman", "gru" or "lstm"); activation is the Elman cell's phi."""
    if name == "elman":
        return elman_cell(activation)
    return {"gru": GRU, "lstm": LSTM}[name]
