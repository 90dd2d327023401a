"""GRU and LSTM in plain JAX, for neural-tangents in .venv-nt (JAX 0.4.25); it does not import ntk_rnn.

PyTorch's equations with one bias, the gates stacked in the rows of W (k m, m), A (k m, d_x), b (k m,):

    GRU (r, z, n):     r = sigmoid(A_r x + b_r + W_r h),  z = sigmoid(A_z x + b_z + W_z h),
                       n = tanh(A_n x + b_n + r * (W_n h)),  h' = (1 - z) * n + z * h
    LSTM (i, f, g, o): c' = sigmoid(f) * c + sigmoid(i) * tanh(g),  h' = sigmoid(o) * tanh(c')

h_0 = c_0 = 0 and y_l = B h_l at every step, multipliers 1 (the "paper" parameterization).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gru(p: dict, h, x):
    """One GRU step on a batch: h (n, m), x (n, d_x) -> (h', h')."""
    m = h.shape[-1]
    gx = x @ p["A"].T + p["b"]
    gh = h @ p["W"].T
    r = jax.nn.sigmoid(gx[:, :m] + gh[:, :m])
    z = jax.nn.sigmoid(gx[:, m : 2 * m] + gh[:, m : 2 * m])
    n = jnp.tanh(gx[:, 2 * m :] + r * gh[:, 2 * m :])
    h = (1.0 - z) * n + z * h
    return h, h


def lstm(p: dict, state, x):
    """One LSTM step on a batch: state (h, c), each (n, m), x (n, d_x) -> ((h', c'), h')."""
    h, c = state
    m = h.shape[-1]
    z = h @ p["W"].T + x @ p["A"].T + p["b"]
    i, f, g, o = (z[:, k * m : (k + 1) * m] for k in range(4))
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h


def model(cell: str, frozen: dict):
    """f(theta, x): x (n, L, d_x) -> y (n, L, d), with the parameters {**frozen, **theta}."""
    step = {"gru": gru, "lstm": lstm}[cell]

    def f(theta, x):
        p = {**frozen, **theta}
        h0 = jnp.zeros((x.shape[0], p["W"].shape[1]), x.dtype)
        state = h0 if cell == "gru" else (h0, h0)
        _, hs = jax.lax.scan(lambda s, x_t: step(p, s, x_t), state, jnp.swapaxes(x, 0, 1))
        return jnp.swapaxes(hs, 0, 1) @ p["B"].T

    return f
