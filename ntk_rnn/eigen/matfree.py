"""Extreme eigenvalues of the empirical NTK without forming it: K v = J (J^T v) by a vjp then a jvp
(docs/theory.md §7).

The kernel is the one `ntk_rnn.empirical_ntk(cfg, params, x, positions=positions)` returns, K = J J^T with J
the Jacobian of the selected outputs (rows ordered by sample, position, unit; one row per sequence and unit
for readout "last"/"mean") with respect to the trainable parameters. Neither K (N x N, N = n P d) nor J is
ever held: memory is O(N r + n L m + |theta|) for a Nystrom factor of r columns.

The eigensolver is `ntk_rnn.eigen.lobpcg.extreme_eigenpairs` (LOBPCG at both ends, a block-Jacobi-scaled randomly
pivoted Cholesky preconditioner for lambda_min; its docstring says why). The NTK supplies it with:

- products V -> K V (the expensive part: a forward pass, a vjp and a jvp over all n sequences per pair of
  columns);
- the diagonal blocks K[i, i] of each sample i (its P d rows), from the structured kernel of sample chunks
  of about DIAGONAL_ROWS rows; a zero on the diagonal (an output that no trainable parameter moves) is an
  exact zero eigenvalue;
- columns K[:, rows of samples S] = empirical_ntk(x[S], x).T, grouped by sample, at 1/20..1/40 of a
  product's cost per column, so the preconditioner's r columns (up to N / 2) cost far fewer products.

The smallest eigenvalues cluster at 1e-4..1e-7 of lambda_max, where unpreconditioned Krylov methods need
tens of thousands of products. Each eigenvalue is accepted only when its own residual satisfies
||K v - lambda v|| <= 10 tol lambda_max; the eigenvalue error is second order in the residual (accuracy
against dense eigvalsh: docs/benchmarks.md). Where the residual floor, about 1e-11 lambda_max, reaches
lambda_min itself (condition numbers near 1e11), no float64 method converges, and
EigenvalueConvergenceError is raised when maxiter runs out. The pivots and starting vectors come from an
explicit key, so results are deterministic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from ntk_rnn.batching.batch import check_max_bytes
from ntk_rnn.eigen.lobpcg import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAXITER,
    DEFAULT_TOL,
    EigenvalueConvergenceError,
    check_solver_args,
    extreme_eigenpairs,
)
from ntk_rnn.eigen.sharded import gathered, replicated_ntk, split_ntk_matmat
from ntk_rnn.network.checks import NTKInputs, Params, check_ntk_inputs
from ntk_rnn.network.config import RNNConfig
from ntk_rnn.network.model import output_fn, real_rows, trainable

__all__ = ["EigenvalueConvergenceError", "ExtremeEigenvalues", "dense_eigh_bytes", "ntk_extreme_eigenvalues",
           "ntk_operator"]  # fmt: skip

BLOCK_SIZE = 2  # product columns per vjp/jvp call (1 if memory is short)
DIAGONAL_ROWS = 256  # rows per structured-kernel chunk when reading the diagonal blocks of K


@dataclasses.dataclass(frozen=True)
class ExtremeEigenvalues:
    """lambda_min and lambda_max of K (N x N), the number of products v -> K v spent (matvecs) and of kernel
    columns read for the preconditioner (columns)."""

    lambda_min: float
    lambda_max: float
    size: int
    matvecs: int
    columns: int = 0


def dense_eigh_bytes(size: int) -> int:
    """Bytes a dense float64 eigendecomposition of a size x size kernel needs: the matrix and LAPACK's copy."""
    return 2 * 8 * size * size


# ----------------------------------------------------------------------------- the operator


@partial(jax.jit, static_argnums=3)
def _ntk_matmat(cfg: RNNConfig, params: Params, x: jax.Array, positions, lengths, V: jax.Array) -> jax.Array:
    """K V = J (J^T V) for V (N, b) over all rows of flat_outputs, padded ones included (those rows of J
    are zero), column by column with one vjp then one jvp (vmapped)."""
    theta = trainable(cfg, params)
    f = output_fn(cfg, params, x, positions, lengths)
    _, vjp = jax.vjp(f, theta)

    def column(v):
        (cotangent,) = vjp(v)
        return jax.jvp(f, (theta,), (cotangent,))[1]

    return jax.vmap(column, in_axes=1, out_axes=1)(V)


class _Operator(scipy.sparse.linalg.LinearOperator):
    """K as a scipy LinearOperator. Single vectors go one at a time; blocks in zero-padded groups of BLOCK_SIZE
    columns (1 if memory is short), so only two widths are ever compiled. With several devices (of any
    processes) the samples are split over them (ntk_rnn.eigen.sharded.split_ntk_matmat), padded with zero
    sequences to a multiple of the device count."""

    def __init__(self, cfg: RNNConfig, inputs: NTKInputs, max_bytes: int):
        params, x, positions, lengths = inputs
        self.keep = real_rows(cfg, positions, lengths, x.shape[0])  # the rows of K among flat_outputs'
        size, rows = int(self.keep.sum()), self.keep.size
        super().__init__(dtype=np.float64, shape=(size, size))
        n, length = x.shape[:2]
        n_params = sum(int(np.prod(params[k].shape)) for k in cfg.trainable_names)
        states = 8 * 4 * n * length * cfg.width * cfg.cell_spec.state_factor * cfg.num_layers * len(cfg.directions)
        per_column = 8 * (2 * n_params + rows) + states
        self.batch = BLOCK_SIZE if states + BLOCK_SIZE * per_column <= max_bytes // 2 else 1
        self.matvecs = 0
        pad = -n % jax.device_count()
        self.rows = rows * (n + pad) // n  # flat_outputs rows of the padded samples
        if jax.device_count() == 1:
            self._product = partial(_ntk_matmat, cfg, params, x, positions, lengths)
        else:
            x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
            lengths = None if lengths is None else jnp.concatenate([lengths, jnp.full((pad,), length, lengths.dtype)])
            self._product = partial(split_ntk_matmat, cfg, params, x, positions, lengths)

    def _matmat(self, V):
        V = np.asarray(V, dtype=np.float64).reshape(self.shape[0], -1)
        out = np.empty_like(V)
        b = 1 if V.shape[1] == 1 else self.batch
        rows = np.flatnonzero(self.keep)
        for start in range(0, V.shape[1], b):
            block = V[:, start : start + b]
            width = block.shape[1]
            padded = np.zeros((self.rows, b))
            padded[rows, :width] = block
            out[:, start : start + width] = gathered(self._product(jnp.asarray(padded)))[rows, :width]
        self.matvecs += V.shape[1]
        return out

    def _matvec(self, v):
        return self._matmat(np.reshape(v, (-1, 1)))[:, 0]

    def _adjoint(self):
        return self


def ntk_operator(
    cfg: RNNConfig,
    params: Mapping[str, jax.Array],
    x,
    positions: Sequence[int] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    lengths=None,
) -> scipy.sparse.linalg.LinearOperator:
    """K = J J^T of `empirical_ntk(cfg, params, x, positions=positions, lengths1=lengths)` as a symmetric
    (N, N) scipy LinearOperator, N = n * P * d real rows (or n * d for readout "last"/"mean"): v (N,) -> K v
    by one vjp and one jvp. Blocks of vectors are applied in column batches sized to max_bytes. `.matvecs`
    counts the products."""
    inputs = check_ntk_inputs(cfg, params, x, positions, lengths)
    check_max_bytes(max_bytes)
    return _Operator(cfg, inputs, max_bytes)


# ----------------------------------------------------------------------------- eigenvalues


def ntk_extreme_eigenvalues(
    cfg: RNNConfig,
    params: Mapping[str, jax.Array],
    x,
    positions: Sequence[int] | None = None,
    *,
    key: jax.Array | None = None,
    tol: float = DEFAULT_TOL,
    maxiter: int = DEFAULT_MAXITER,
    max_bytes: int = DEFAULT_MAX_BYTES,
    lengths=None,
) -> ExtremeEigenvalues:
    """lambda_min and lambda_max of K = `empirical_ntk(cfg, params, x, positions=positions, lengths1=lengths)`,
    matrix-free.

    Args:
      cfg: the model.
      params: its parameters.
      x (ArrayLike): (n, L, d_x) sequences.
      positions: output positions, as in empirical_ntk.
      key: jax.random key for the pivots and starting vectors; None means jax.random.key(0).
      tol: relative residual tolerance, ||K v - lambda v|| <= tol * lambda_max (see the module docstring).
      maxiter: cap on LOBPCG iterations at each end (each at most 2 products).
      max_bytes: memory budget for the products' column batches, the kernel chunks and the Nystrom factor.
      lengths (ArrayLike | None): (n,) lengths of right-padded sequences, as in empirical_ntk.

    Returns:
      ExtremeEigenvalues(lambda_min, lambda_max, size N, matvecs, columns).
    """
    key = check_solver_args(key, tol, maxiter)  # before any work
    check_max_bytes(max_bytes)
    inputs = check_ntk_inputs(cfg, params, x, positions, lengths)
    return checked_extreme_eigenvalues(cfg, inputs, key=key, tol=tol, maxiter=maxiter, max_bytes=max_bytes)


def checked_extreme_eigenvalues(cfg: RNNConfig, inputs: NTKInputs, *, key: jax.Array, tol: float, maxiter: int,
                                max_bytes: int) -> ExtremeEigenvalues:  # fmt: skip
    """ntk_extreme_eigenvalues on inputs that are already checked (ntk_rnn.network.checks.check_ntk_inputs, and the
    solver's arguments): what ntk_rnn's own callers use, so that nothing is validated twice."""
    op = _Operator(cfg, inputs, max_bytes)
    params, x, pos, lengths = inputs
    groups, blocks = _diagonal_blocks(cfg, params, x, pos, lengths, max_bytes)

    def columns(idx: np.ndarray) -> np.ndarray:
        """K[:, idx] (N, b) for idx the rows of whole samples, ascending."""
        samples = np.unique(groups[idx])
        sub = None if lengths is None else lengths[samples]
        C = replicated_ntk(cfg, params, x[samples], x, positions=pos, lengths1=sub, lengths2=lengths,
                           max_bytes=max_bytes).T  # fmt: skip
        if C.shape[1] != idx.size:
            raise AssertionError("columns were asked for part of a sample")
        return C

    diag = np.concatenate([np.diag(b) for b in blocks])
    pairs = extreme_eigenpairs(op, diag, columns, groups=groups, diag_blocks=blocks, key=key, tol=tol,
                               maxiter=maxiter, max_bytes=max_bytes)  # fmt: skip
    return ExtremeEigenvalues(pairs.lambda_min, pairs.lambda_max, pairs.size, op.matvecs, pairs.columns)


def _diagonal_blocks(cfg: RNNConfig, params: Params, x: jax.Array, positions, lengths, max_bytes: int):
    """The sample of each row of K, (N,), and each sample's diagonal block K[i, i] (n arrays (P_i d, P_i d)),
    from the structured kernel of sample chunks of about DIAGONAL_ROWS rows. The last chunk is padded with
    copies of the first sample so every chunk has one shape (one compile)."""
    n = x.shape[0]
    rows = cfg.output_dim * (1 if positions is None else len(positions))
    c = min(n, max(1, DIAGONAL_ROWS // rows))
    chunks = -(-n // c)
    index = np.concatenate([np.arange(n), np.zeros(chunks * c - n, int)])
    groups, blocks = [], []
    for i in range(chunks):
        part = index[i * c : (i + 1) * c]
        chunk_lengths = None if lengths is None else lengths[part]
        K = replicated_ntk(cfg, params, x[part], None, positions=positions, lengths1=chunk_lengths, lengths2=None,
                           max_bytes=max_bytes)  # fmt: skip
        sample = np.repeat(np.arange(c), rows)[real_rows(cfg, positions, chunk_lengths, c)]  # of each row of K
        for j in range(min(c, n - i * c)):
            mine = sample == j
            blocks.append(K[np.ix_(mine, mine)])
            groups.append(np.full(int(mine.sum()), i * c + j))
    return np.concatenate(groups), blocks
