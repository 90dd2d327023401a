"""The infinite-width NTK and NNGP of bidirectional Elman stacks whose upper layers read both directions
(RNNConfig.stacking = "concat", PyTorch's), on sequences of any lengths (docs/theory.md §9).

Layer j >= 2 of each direction reads z_t = [h^{j-1,f}_t; h^{j-1,r}_t] through its own A (m, 2m). The directions
have independent weights, so their pre-activations are independent GPs, and both read the sum of the two
directions' kernels of the layer below. With s = sigma_u2 ("paper", whose A has variance sigma_u2/m) or
sigma_u2/2 ("standard", "ntk": fan-in 2m), in ntk_rnn.kernels.recursion's normalization, in real time
(0-based steps; prev(a) = a - 1 for the forward direction f, a + 1 for the reverse r, the zero state outside
[0, len)):

    q^{j,D}_ab = sigma_w2 S^{j,D}_{prev a,prev b} + s Z^{j-1}_ab + sigma_b2,   Z^j = S^{j,f} + S^{j,r},
    G^{j,D}_ab = k^{j,D}_ab (omega_W S^{j,D}_{prev a,prev b} + omega_A' Z^{j-1}_ab + omega_b
                             + sigma_w2 G^{j,D}_{prev a,prev b} + s (G^{j-1,f}_ab + G^{j-1,r}_ab)),
    Theta_{l,l'} = sum_D (c0 G^{top,D}_{l,l'} + beta S^{top,D}_{l,l'}),

with omega_A' = [A] ("paper", "standard") or s [A] ("ntk"). Backward, delta^{j-1,D'}_a collects A^{j,f}'s and
A^{j,r}'s D' blocks at the same step a (each gives s) and its own W at the next step; every path keeps
l - a = l' - b, so a pair (a, b) only ever meets (a', b') with a' - a = b' - b. The reverse direction of a lower
layer reads every step, so there is no causal shortcut: readouts "all" and "mean" run each layer over the whole
(L1, L2) grid, in one scan for both directions, the reverse direction on the flipped grid (both sequences' steps
backwards), its state held at 0 outside the real steps. Readout "last" needs two diagonals only, a - b =
len_i - len_j (the forward top at (len_i - 1, len_j - 1)) and a = b (the reverse top at (0, 0)); each is closed
under the recursion, so the cost is O(n1 n2 min(L1, L2)) per layer. Self-variances come from the same recursion
on each sequence's own steps. stacking "separate" runs here too (each direction reads only its own layer below),
which the tests compare with ntk_rnn.kernels.recursion. Memory: O(n1 n2 L1 L2) per layer ("all", "mean").
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ntk_rnn.kernels.recursion import Recursion
from ntk_rnn.network.model import full_lengths


def _back(a: jax.Array) -> jax.Array:
    """a[..., b] -> a[..., b-1] along the last axis, 0 at b = 0: the previous step of the second sequence."""
    return jnp.pad(a[..., :-1], [(0, 0)] * (a.ndim - 1) + [(1, 0)])


def _same(a: jax.Array) -> jax.Array:
    return a


def _flip(a, grid: bool):
    """Real time <-> the reverse direction's scan order: the steps backwards (on the grid, both sequences')."""
    if a is None:
        return None
    a = jnp.flip(a, 0)
    return jnp.flip(a, -1) if grid else a


def _both(forward, reverse, grid: bool):
    """(T, 2, *row): a forward-direction array and a reverse-direction one in its scan order."""
    if forward is None:
        return None
    forward, reverse = jnp.broadcast_arrays(forward, reverse)
    return jnp.stack([forward, _flip(reverse, grid)], axis=1)


def _layer(rec: Recursion, drive_q, drive_f, va, vb, valid, shift) -> tuple:
    """Both directions of one layer in one scan over the leading axis (T) of arrays (T, 2, *row), the reverse
    direction's in its own scan order. drive_q, drive_f: the parts of q and of G's bracket that do not come from
    the direction's previous step; va, vb: self-variances broadcastable to them (None: q itself, for the
    self-variances); valid: the real steps, where the state is kept (elsewhere 0); shift: the previous step
    within a row. Returns (q, S, k, G), each (T, 2, *row)."""

    def step(carry, inputs):
        s_prev, g_prev = carry
        dq, df, v1, v2, ok = inputs
        s_shift = shift(s_prev)
        q = rec.sw2 * s_shift + dq
        s, k = rec.pair(q if v1 is None else v1, q, q if v2 is None else v2)
        g = k * (rec.omega_w * s_shift + df + rec.sw2 * shift(g_prev))
        s, g = jnp.where(ok, s, 0.0), jnp.where(ok, g, 0.0)
        return (s, g), (q, s, k, g)

    zero = jnp.zeros(drive_q.shape[1:], drive_q.dtype)
    _, out = jax.lax.scan(step, (zero, zero), (drive_q, drive_f, va, vb, valid))
    return out


def _stack(rec: Recursion, concat: bool, xx, var1, var2, valid, grid: bool) -> list[tuple]:
    """Every layer and both directions on one layout (the grid, a diagonal, or one sequence's own steps), in
    real time: xx (T, *row) the tokens' dot products; var1, var2: per layer, (forward, reverse) self-variances
    broadcastable to (T, *row), or None; valid (T, *row) the real steps; grid: rows are steps of the second
    sequence (then the reverse direction's scan order also reverses them). Returns per layer (q, S, k, G), each a
    pair (forward, reverse) of (T, *row) arrays."""
    out = []
    for j in range(rec.layers):
        if j == 0:
            drive_q, drive_f = (rec.su2 * xx + rec.sb2,) * 2, (rec.omega_a * xx + rec.omega_b,) * 2
        else:
            _, (sf, sr), _, (gf, gr) = out[-1]
            z_s, z_g = ((sf + sr,) * 2, (gf + gr,) * 2) if concat else ((sf, sr), (gf, gr))
            drive_q = tuple(rec.su2_up * z + rec.sb2 for z in z_s)
            drive_f = tuple(rec.omega_a_up * z + rec.omega_b + rec.su2_up * g for z, g in zip(z_s, z_g, strict=True))
        v1, v2 = ((None, None) if v is None else v[j] for v in (var1, var2))
        inputs = (*drive_q, *drive_f, *v1, *v2, valid, valid)
        layer = _layer(rec, *(_both(inputs[i], inputs[i + 1], grid) for i in range(0, 10, 2)),
                       _back if grid else _same)  # fmt: skip
        out.append(tuple((a[:, 0], _flip(a[:, 1], grid)) for a in layer))
    return out


def _self_variances(rec: Recursion, concat: bool, x1, x2, len1, len2) -> tuple[list, list]:
    """q^{j,D}_aa(i, i) of every layer and direction of both inputs, per layer a (forward, reverse) pair of
    (n1, L1), resp. (n2, L2) arrays, from one pass over the samples of both (padded to a common length)."""
    steps = max(x1.shape[1], x2.shape[1])

    def pad(x):
        return jnp.pad(x, ((0, 0), (0, steps - x.shape[1]), (0, 0)))

    x, lengths, n1 = jnp.concatenate([pad(x1), pad(x2)]), jnp.concatenate([len1, len2]), x1.shape[0]
    valid = jnp.arange(steps)[:, None] < lengths[None]  # (L, n)
    xx = jnp.einsum("iak,iak->ai", x, x)
    layers = [layer[0] for layer in _stack(rec, concat, xx, None, None, valid, False)]  # q: (L, n) pairs
    v1 = [tuple(q[: x1.shape[1], :n1].T for q in layer) for layer in layers]
    v2 = [tuple(q[: x2.shape[1], n1:].T for q in layer) for layer in layers]
    return v1, v2


def _grid(rec: Recursion, concat: bool, x1, x2, len1, len2) -> list:
    """_stack on the whole (L1, L2) grid: rows a (T = L1), each (n1, n2, L2)."""
    v1, v2 = _self_variances(rec, concat, x1, x2, len1, len2)
    length1, length2 = x1.shape[1], x2.shape[1]
    var1 = [[v.T[:, :, None, None] for v in layer] for layer in v1]  # (L1, n1, 1, 1)
    var2 = [[jnp.broadcast_to(v[None, None], (length1, 1, *v.shape)) for v in layer] for layer in v2]
    xx = jnp.einsum("iak,jbk->aijb", x1, x2)
    valid1 = jnp.arange(length1)[:, None] < len1[None]  # (L1, n1)
    valid2 = jnp.arange(length2)[None] < len2[:, None]  # (n2, L2)
    valid = valid1[:, :, None, None] & valid2[None, None]
    return _stack(rec, concat, xx, var1, var2, valid, True)


def _diagonals(rec: Recursion, concat: bool, x1, x2, len1, len2, off1, off2, steps: int) -> list:
    """_stack along diagonals of every pair: on diagonal c, step tau meets a = off1[c, i] + tau of x1 and
    b = off2[c, j] + tau of x2; rows (C, n1, n2), T = steps. Positions outside [0, len) hold the state at 0."""
    v1, v2 = _self_variances(rec, concat, x1, x2, len1, len2)

    def along(x, lengths, variances, offsets):  # offsets (C, n)
        index = offsets[None] + jnp.arange(steps)[:, None, None]  # (T, C, n)
        valid = (index >= 0) & (index < lengths)
        index = jnp.clip(index, 0, x.shape[1] - 1)
        xs = x[jnp.arange(x.shape[0]), index]  # (T, C, n, d_x)
        var = [[v[jnp.arange(x.shape[0]), index] for v in layer] for layer in variances]  # (T, C, n)
        return xs, var, valid

    xs1, var1, valid1 = along(x1, len1, v1, off1)
    xs2, var2, valid2 = along(x2, len2, v2, off2)
    xx = jnp.einsum("tcik,tcjk->tcij", xs1, xs2)
    var1 = [[v[..., None] for v in layer] for layer in var1]
    var2 = [[v[..., None, :] for v in layer] for layer in var2]
    valid = valid1[..., None] & valid2[..., None, :]
    return _stack(rec, concat, xx, var1, var2, valid, False)


def _theta(rec: Recursion, top: tuple, direction: int) -> jax.Array:
    """One direction's kernel from the top layer's (q, S, k, G)."""
    return rec.c0 * top[3][direction] + rec.beta * top[1][direction]


@partial(jax.jit, static_argnames=("readout", "pos1", "pos2", "concat"))
def stacked_kernel(rec: Recursion, readout: str, x1, x2, pos1, pos2, len1, len2, concat: bool = True) -> jax.Array:
    """Both directions' scalar kernels summed, like ntk_rnn.kernels.recursion.scalar_kernel: (n1, P1, n2, P2)
    for readout "all" (rows of padded positions zero), else (n1, n2). x1 (n1, L1, d_x), x2 (n2, L2, d_x);
    len1, len2: (n,) ints or None. concat=False computes the "separate" stacking (a cross-check)."""
    full1, full2 = full_lengths(x1, len1), full_lengths(x2, len2)
    if readout == "last":
        # diagonal 0 ends at (len_i - 1, len_j - 1) at tau = steps - 1 (the forward top's output); diagonal 1
        # starts at (0, 0) (the reverse top's)
        steps = min(x1.shape[1], x2.shape[1])
        off1 = jnp.stack([full1 - steps, jnp.zeros_like(full1)])
        off2 = jnp.stack([full2 - steps, jnp.zeros_like(full2)])
        top = _diagonals(rec, concat, x1, x2, full1, full2, off1, off2, steps)[-1]
        return _theta(rec, top, 0)[-1, 0] + _theta(rec, top, 1)[0, 1]
    top = _grid(rec, concat, x1, x2, full1, full2)[-1]
    theta = _theta(rec, top, 0) + _theta(rec, top, 1)  # (L1, n1, n2, L2), 0 outside the real steps
    if readout == "mean":
        return theta.sum(axis=(0, 3)) / (full1[:, None] * full2[None]).astype(theta.dtype)
    rows = theta[np.asarray(pos1)][..., np.asarray(pos2)]  # (P1, n1, n2, P2)
    return jnp.transpose(rows, (1, 0, 2, 3))


@partial(jax.jit, static_argnames=("layer",))
def stacked_forward(rec: Recursion, x1, x2, layer: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(q, S, k) of one layer of the forward direction of a "concat" stack on full-length sequences, each
    (n1, L1, n2, L2)."""
    full1, full2 = full_lengths(x1, None), full_lengths(x2, None)
    q, s, k, _ = _grid(rec, True, x1, x2, full1, full2)[layer]
    return tuple(jnp.transpose(a[0], (1, 0, 2, 3)) for a in (q, s, k))
