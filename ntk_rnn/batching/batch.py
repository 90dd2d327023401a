"""Kernel functions and the one layer that batches them (docs/theory.md §14).

A kernel function (KernelFn) is a pure JAX function of two batches of sequences, K(x1, x2), written in the
factored form every kernel here has: per-sample features of each side, then their pairing,

    K(x1, x2) = pair(features(x1), features(x2)),

shaped (n1, R1, n2, R2) with R rows per sample (position, unit). Calling it computes the whole kernel at once
and returns a jax.Array: it composes with jax.jit, jax.vmap and jax.grad. Its shape cannot depend on values,
so with lengths the rows of padded positions are there, and are zero.

`batch(kernel_fn)` is the same kernel for sizes that do not fit in one call, as neural-tangents' nt.batch is:
it cuts the samples into chunks, computes each chunk's features once (or again per block when they do not
fit in memory), computes only the upper blocks of a symmetric K(x, x) and mirrors the rest, spreads the rows
over every device of every process (ntk_rnn.batching.distributed), and returns the real rows only, as a numpy array, a
row-sharded jax.Array or a .npy file.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ntk_rnn.batching.distributed import check_output, distribute, host_bytes_available
from ntk_rnn.network.checks import InputPair, check_input_shape, check_positions
from ntk_rnn.network.config import RNNConfig
from ntk_rnn.network.model import full_lengths, real_rows

Positions = tuple[int, ...] | None
HOST_SHARE = 4  # max_bytes=None: a quarter of the available host memory (CPU)
DEVICE_SHARE = 2  # ... or half of a GPU's free memory


@dataclasses.dataclass(frozen=True)
class Call:
    """A kernel function's arguments sorted out: operands (the pytree the kernel is a function of besides the
    inputs: parameters, variances), x1 (n1, L1, d_x), x2 (None: x1, a symmetric kernel) and the lengths
    ((n,) ints, or None for full length)."""

    operands: Any
    x1: jax.Array
    x2: jax.Array | None
    lengths1: jax.Array | None
    lengths2: jax.Array | None

    @property
    def symmetric(self) -> bool:
        return self.x2 is None


class KernelFn(abc.ABC):
    """A pure kernel function of a model, K(x1, x2) = pair(features(x1), features(x2)) (module docstring).

    Subclasses fix the call signature (bind), the features of one batch and the pairing; this class gives the
    call and the row bookkeeping. `cfg` is the model; `positions` the output positions kept on both sides
    (None: 1..L-1 for readout "all"; must be None for "last" and "mean").
    """

    cfg: RNNConfig
    positions: Positions

    @abc.abstractmethod
    def bind(self, *args, **kwargs) -> Call:
        """The call's arguments as a Call, with their structure (shapes) checked."""

    @abc.abstractmethod
    def features(self, operands: Any, x: jax.Array, lengths: jax.Array | None, positions: Positions,
                 grid: tuple[int, int]) -> Any:  # fmt: skip
        """Features of one batch x (n, L, d_x) of a kernel over the (L1, L2) grid of padded lengths: a pytree
        whose leaves have n as leading axis."""

    @abc.abstractmethod
    def pair(self, operands: Any, f1: Any, f2: Any, pos1: Positions, pos2: Positions,
             grid: tuple[int, int]) -> jax.Array:  # fmt: skip
        """The kernel between two feature batches, (n1, R1, n2, R2)."""

    def feature_bytes(self, length: int, positions: Positions) -> int:
        """Bytes of one sample's features (what batch keeps per sample between blocks)."""
        return 8 * length * self.cfg.input_dim

    @abc.abstractmethod
    def chunk_size(self, n: int, length1: int, length2: int, pos1: Positions, pos2: Positions, max_bytes: int) -> int:
        """Samples per chunk (at most n) that keep one block's working set within half of max_bytes; raises
        ValueError naming max_bytes when one sample does not fit."""

    def positions_for(self, length: int) -> Positions:
        """The output positions of inputs of length L (None for a per-sequence readout)."""
        if self.cfg.readout != "all":
            return None
        return check_positions(self.positions, length)

    def rows(self, positions: Positions) -> int:
        """Kernel rows per sample: P d, or d for a per-sequence readout."""
        return (1 if positions is None else len(positions)) * self.cfg.output_dim

    def __call__(self, *args, **kwargs) -> jax.Array:
        call = self.bind(*args, **kwargs)
        x2 = call.x1 if call.symmetric else call.x2
        pos1, pos2 = self.positions_for(call.x1.shape[1]), self.positions_for(x2.shape[1])
        grid = (call.x1.shape[1], x2.shape[1])
        f1 = self.features(call.operands, call.x1, call.lengths1, pos1, grid)
        f2 = f1 if call.symmetric else self.features(call.operands, x2, call.lengths2, pos2, grid)
        K = self.pair(call.operands, f1, f2, pos1, pos2, grid)
        return K.reshape(K.shape[0] * K.shape[1], K.shape[2] * K.shape[3])


def bind_inputs(cfg: RNNConfig, x1, x2, lengths1, lengths2) -> tuple:
    """x1, x2 as float64 arrays of shape (n, L, d_x) and the lengths as int32 (n,) arrays (or None), with the
    shapes checked (values may be tracers). lengths2 needs x2. When only one side of K(x1, x2) has lengths, the
    other gets full ones, so that both sides take the same route."""
    x1 = jnp.asarray(x1, jnp.float64)
    check_input_shape(cfg, x1.shape, "x1")
    if x2 is None and lengths2 is not None:
        raise ValueError("lengths2 needs x2; with x2=None the kernel is K(x1, x1) and lengths1 applies to both")
    if x2 is not None:
        x2 = jnp.asarray(x2, jnp.float64)
        check_input_shape(cfg, x2.shape, "x2")

    def lengths(value, x, name):
        if value is None:
            return None
        value = jnp.asarray(value)
        if value.shape != x.shape[:1]:
            raise ValueError(f"{name} must have shape (n,) = ({x.shape[0]},), one length per sequence, "
                             f"got shape {value.shape}")  # fmt: skip
        return value.astype(jnp.int32)

    lengths1, lengths2 = lengths(lengths1, x1, "lengths1"), None if x2 is None else lengths(lengths2, x2, "lengths2")
    if x2 is not None and (lengths1 is None) != (lengths2 is None):
        lengths1, lengths2 = full_lengths(x1, lengths1), full_lengths(x2, lengths2)
    return x1, x2, lengths1, lengths2


def default_max_bytes() -> int:
    """The working-memory budget per device of batch(max_bytes=None): half of the default device's free memory
    on an accelerator; on a CPU a quarter of the host's available memory, shared by its local devices."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return (int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))) // DEVICE_SHARE
    return host_bytes_available() // HOST_SHARE // jax.local_device_count()


def check_max_bytes(max_bytes) -> int:
    """max_bytes as a positive int, None giving default_max_bytes()."""
    if max_bytes is None:
        return default_max_bytes()
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive int (bytes) or None, got {max_bytes!r}")
    return int(max_bytes)


def batch(kernel_fn: KernelFn, *, max_bytes: int | None = None, output: str = "numpy",
          path: str | os.PathLike | None = None) -> Callable[..., np.ndarray | jax.Array]:  # fmt: skip
    """kernel_fn for any size: a function with kernel_fn's signature that computes the kernel in blocks of
    samples within `max_bytes` of working memory per device, on every device of every process.

    Args:
      kernel_fn: a KernelFn (ntk_rnn.empirical_ntk_fn, limit_ntk_fn, nngp_fn).
      max_bytes: working-memory budget per device, in bytes; None derives it (default_max_bytes).
      output: "numpy" (the whole kernel on this host), "sharded" (a global jax.Array split by rows over every
        device of every process) or "npy" (written to the .npy file `path`, returned memory-mapped read-only).
        ntk_rnn.batching.distributed explains the last two.
      path: the .npy file of output "npy" (None otherwise).

    Returns:
      A function of kernel_fn's arguments returning the kernel over the real rows, (N1, N2) float64: rows of
        padded positions (lengths) are left out, unlike kernel_fn's zeros.
    """
    if not isinstance(kernel_fn, KernelFn):
        raise TypeError(f"kernel_fn must be an ntk_rnn kernel function (empirical_ntk_fn, limit_ntk_fn, nngp_fn), "
                        f"got {type(kernel_fn).__name__}")  # fmt: skip
    budget = check_max_bytes(max_bytes)
    check_output(output, path)

    def batched(*args, **kwargs) -> np.ndarray | jax.Array:
        call = kernel_fn.bind(*args, **kwargs)
        x2 = call.x1 if call.symmetric else call.x2
        pos1, pos2 = kernel_fn.positions_for(call.x1.shape[1]), kernel_fn.positions_for(x2.shape[1])
        pair = InputPair(call.x1, x2, pos1, pos2, call.symmetric, call.lengths1,
                         call.lengths1 if call.symmetric else call.lengths2)  # fmt: skip

        def panel(rows: slice, cols: slice | None, device: jax.Device) -> np.ndarray:
            return blocks(kernel_fn, jax.device_put(call.operands, device), pair.block(rows, cols), budget)

        return distribute(kernel_fn.cfg, pair, lambda: blocks(kernel_fn, call.operands, pair, budget), panel,
                          output, path, budget // 4)  # fmt: skip

    return batched


def blocks(kernel_fn: KernelFn, operands: Any, pair: InputPair, max_bytes: int) -> np.ndarray:
    """The kernel of one pair of batches on the current device, over its real rows, (N1, N2) numpy float64:
    chunk by chunk, each chunk's features computed once when all fit in half of max_bytes (else per block),
    and for K(x, x) the upper blocks only."""
    x1, x2, pos1, pos2, symmetric, len1, len2 = pair
    n1, n2 = x1.shape[0], x2.shape[0]
    grid = (x1.shape[1], x2.shape[1])
    c = kernel_fn.chunk_size(max(n1, n2), *grid, pos1, pos2, max_bytes)
    keep = kernel_fn.feature_bytes(x1.shape[1], pos1) * n1 + (
        0 if symmetric else kernel_fn.feature_bytes(x2.shape[1], pos2) * n2) <= max_bytes // 2  # fmt: skip

    def source(x, lengths, positions):
        """chunk index -> its features: computed for all samples in one call and kept when they fit (features
        are per sample), else computed whenever a block needs them."""
        x, lengths = _padded(x, lengths, c)
        count = x.shape[0] // c
        if keep:
            whole = kernel_fn.features(operands, x, lengths, positions, grid)
            kept = [jax.tree.map(lambda f, a=a: f[a * c : (a + 1) * c], whole) for a in range(count)]
            return kept.__getitem__, count

        def chunk(a: int):
            part = slice(a * c, (a + 1) * c)
            return kernel_fn.features(operands, x[part], None if lengths is None else lengths[part], positions, grid)

        return chunk, count

    side2, count2 = source(x2, len2, pos2)
    side1, count1 = (side2, count2) if symmetric else source(x1, len1, pos1)
    side1 = lru_cache(maxsize=1)(side1)  # the loop runs over b within a: each x1 chunk once
    r1, r2 = kernel_fn.rows(pos1), kernel_fn.rows(pos2)
    out = np.zeros((n1, r1, n2, r2))
    pairs = [(a, b) for a in range(count1) for b in range(a if symmetric else 0, count2)]
    for a, b in tqdm(pairs, desc="kernel blocks", delay=3.0, leave=False):
        s1, s2 = slice(a * c, min((a + 1) * c, n1)), slice(b * c, min((b + 1) * c, n2))
        block = np.asarray(kernel_fn.pair(operands, side1(a), side2(b), pos1, pos2, grid))
        block = block[: s1.stop - s1.start, :, : s2.stop - s2.start]
        out[s1, :, s2] = block
        if symmetric and a != b:
            out[s2, :, s1] = block.transpose(2, 3, 0, 1)
    out = out.reshape(n1 * r1, n2 * r2)
    keep1, keep2 = real_rows(kernel_fn.cfg, pos1, len1, n1), real_rows(kernel_fn.cfg, pos2, len2, n2)
    return out if keep1.all() and keep2.all() else out[np.ix_(keep1, keep2)]


def _padded(x: jax.Array, lengths: jax.Array | None, c: int) -> tuple[jax.Array, jax.Array | None]:
    """x (and its lengths) padded to a multiple of c sequences with copies of the first (computed, then dropped),
    so that every chunk has one shape and one compilation."""
    pad = (-x.shape[0]) % c
    if pad:
        x = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad, *x.shape[1:]))])
        if lengths is not None:
            lengths = jnp.concatenate([lengths, jnp.broadcast_to(lengths[:1], (pad,))])
    return x, lengths
