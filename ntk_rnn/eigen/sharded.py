"""Products with kernels spread over devices, for the iterative eigensolvers (docs/theory.md §12).

- `KernelOperator`: a row-sharded kernel (`empirical_ntk(..., output="sharded")`) as a scipy LinearOperator.
  A product V (N, b) -> K V computes each device's rows K_k V and gathers them: one all-gather of N x b
  floats. diag(K) and columns K[:, idx] come back the same way.
- `kernel_eigenpairs`: the k smallest and largest eigenpairs of such a kernel (ntk_rnn.eigen.lobpcg's solver).
- `split_ntk_matmat`: K V = J (J^T V) with the samples split over the devices. Each device pulls its
  samples' rows of V back through its vjp (J_k^T V_k), one psum (an all-reduce of |theta| x b floats) adds
  them into J^T V, and each device's jvp gives its rows of K V, gathered.

Every process runs the same iteration on the same replicated vectors (SPMD), so all processes see the same
iterates and ask for the same products. The gathered results are identical on every process.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ntk_rnn.batching.batch import batch
from ntk_rnn.batching.distributed import ROWS, rows_mesh
from ntk_rnn.eigen.lobpcg import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAXITER,
    DEFAULT_TOL,
    ExtremeEigenpairs,
    check_solver_args,
    extreme_eigenpairs,
)
from ntk_rnn.kernels.empirical import empirical_ntk_fn
from ntk_rnn.network.checks import Params
from ntk_rnn.network.config import RNNConfig
from ntk_rnn.network.model import output_fn, real_rows, trainable


def gathered(array: jax.Array) -> np.ndarray:
    """A (possibly sharded, possibly multi-process) jax.Array as a host numpy array on every process."""
    if array.is_fully_addressable:
        return np.asarray(array)
    replicated = NamedSharding(array.sharding.mesh, P())
    return np.asarray(jax.jit(lambda a: a, out_shardings=replicated)(array).addressable_data(0))


@jax.jit
def _matmat(K: jax.Array, V: jax.Array) -> jax.Array:
    return K @ V


@jax.jit
def _diagonal(K: jax.Array) -> jax.Array:
    return jnp.diagonal(K)


class KernelOperator(scipy.sparse.linalg.LinearOperator):
    """A symmetric (N, N) kernel held as a jax.Array (row-sharded over any devices and processes, or on one
    device) as a scipy LinearOperator; `.matvecs` counts the columns multiplied."""

    def __init__(self, K: jax.Array):
        if not isinstance(K, jax.Array) or K.ndim != 2 or K.shape[0] != K.shape[1]:
            raise ValueError(f"K must be a square 2-D jax.Array (e.g. empirical_ntk(..., output='sharded')), got "
                             f"{type(K).__name__} of shape {np.shape(K)}")  # fmt: skip
        if K.dtype != jnp.float64:
            raise ValueError(f"K must be float64, got {K.dtype}")
        super().__init__(dtype=np.float64, shape=K.shape)
        self.K = K
        self.matvecs = 0

    def _matmat(self, V):
        V = np.asarray(V, dtype=np.float64).reshape(self.shape[0], -1)
        self.matvecs += V.shape[1]
        return gathered(_matmat(self.K, V))

    def _matvec(self, v):
        return self._matmat(np.reshape(v, (-1, 1)))[:, 0]

    def _adjoint(self):
        return self

    def diagonal(self) -> np.ndarray:
        """diag(K), (N,)."""
        return gathered(_diagonal(self.K))

    def columns(self, index: np.ndarray) -> np.ndarray:
        """K[:, index], (N, len(index)): the rows K[index] of the symmetric kernel, gathered."""
        return gathered(self.K[np.asarray(index)]).T


@partial(jax.jit, static_argnums=3)
def split_ntk_matmat(cfg: RNNConfig, params: Params, x: jax.Array, positions, lengths, V: jax.Array) -> jax.Array:
    """K V = J (J^T V) over all rows of flat_outputs (n R of them, R rows per sample, padded positions
    included) with the n samples split over all devices of all processes; n must be a multiple of
    jax.device_count() (pad with zero sequences and zero rows of V). V (n R, b) replicated; returns K V
    (n R, b), replicated. lengths: (n,) or None."""
    mesh = rows_mesh()

    def local(params, x, lengths, V):
        theta = trainable(cfg, params)
        f = output_fn(cfg, params, x, positions, lengths)
        _, vjp = jax.vjp(f, theta)
        cotangents = jax.lax.psum(jax.vmap(lambda v: vjp(v)[0], in_axes=1)(V), ROWS)
        rows = jax.vmap(lambda t: jax.jvp(f, (theta,), (t,))[1], out_axes=1)(cotangents)
        return jax.lax.all_gather(rows, ROWS, axis=0, tiled=True)

    split = P(ROWS)
    specs = (P(), split, None if lengths is None else split, split)
    # check_vma is off: the model's scan starts from a replicated zero state that its body makes device-varying
    return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(), check_vma=False)(params, x, lengths, V)


def kernel_eigenpairs(
    K: jax.Array,
    k: int = 1,
    *,
    key: jax.Array | None = None,
    tol: float = DEFAULT_TOL,
    maxiter: int = DEFAULT_MAXITER,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ExtremeEigenpairs:
    """The k smallest and k largest eigenpairs of a symmetric PSD kernel held as a jax.Array (row-sharded over
    any devices and processes, e.g. `empirical_ntk(..., output="sharded")`, or on one device), by
    ntk_rnn.eigen.lobpcg.extreme_eigenpairs: every product K V is one all-gather, the preconditioner's columns are read
    from K. key: for the pivots and starting vectors (None: jax.random.key(0)); tol, maxiter, max_bytes: as
    there. Every process returns the same pairs (vectors (N, k) on every process)."""
    key = check_solver_args(key, tol, maxiter)
    op = KernelOperator(K)
    return extreme_eigenpairs(op, op.diagonal(), op.columns, k=k, key=key, tol=tol, maxiter=maxiter,
                              max_bytes=max_bytes)  # fmt: skip


def replicated_ntk(cfg: RNNConfig, params: Params, x1: jax.Array, x2: jax.Array | None, *, positions, lengths1,
                   lengths2, max_bytes: int) -> np.ndarray:  # fmt: skip
    """empirical_ntk(cfg, params, x1, x2, ...) of checked inputs (resolved positions) as a numpy array on every
    process (x2 None: K(x1, x1)). On one
    process that is the plain call; on several, the rows are computed over all devices (x1 padded with zero
    sequences to a multiple of the device count, their rows dropped) and gathered, which needs as many rows
    on every device (not so for readout "all" with unequal lengths: output="sharded" says so)."""
    ntk = empirical_ntk_fn(cfg, positions=positions)
    if jax.process_count() == 1:
        return batch(ntk, max_bytes=max_bytes)(params, x1, x2, lengths1=lengths1, lengths2=lengths2)
    if x2 is None:
        x2, lengths2 = x1, lengths1
    n, length = x1.shape[:2]
    pad = -n % jax.device_count()
    kept = int(real_rows(cfg, positions, lengths1, n).sum())
    x1 = jnp.concatenate([x1, jnp.zeros((pad, *x1.shape[1:]), x1.dtype)])
    if lengths1 is not None:
        lengths1 = jnp.concatenate([jnp.asarray(lengths1), jnp.full((pad,), length, jnp.asarray(lengths1).dtype)])
    K = batch(ntk, max_bytes=max_bytes, output="sharded")(params, x1, x2, lengths1=lengths1, lengths2=lengths2)
    return gathered(K)[:kept]
