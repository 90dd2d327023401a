"""Extreme eigenvalues of the empirical NTK without forming it: K v = J (J^T v) by a vjp then a jvp
(docs/theory.md §7).

The kernel is the one `ntk_rnn.empirical_ntk(cfg, params, x, positions=positions)` returns, K = J J^T with J
the Jacobian of the selected outputs (rows ordered by sample, position, unit; one row per sequence and unit
for readout "last"/"mean") with respect to the trainable parameters. Neither K (N x N, N = n P d) nor J is
ever held: memory is O(N s + n L m + |theta|) for a sketch of s <= 512 columns.

- lambda_max: ARPACK Lanczos (`scipy.sparse.linalg.eigsh`, which="LA"); the top of the NTK spectrum is well
  separated, so it converges in a few dozen products.
- lambda_min: LOBPCG (`scipy.sparse.linalg.lobpcg`, largest=False, a block of 2 vectors) with a
  preconditioner, since the smallest eigenvalues are clustered at 1e-4..1e-6 of lambda_max, where
  unpreconditioned Krylov methods need tens of thousands of products. The preconditioner is a Nystrom
  approximation (Frangella, Tropp & Udell 2023) of the Jacobi-scaled kernel S = D^-1/2 K D^-1/2, D = diag(K):
  with S ~ U diag(s) U^T of rank r = min(512, N/4), M = D^-1/2 [U diag(s_r / s) U^T + (I - U U^T)] D^-1/2.
  Scaling by diag(K) removes the spread between early and late positions, and the sketch removes the top
  eigen-directions (r products). diag(K) is read off the structured kernel of chunks of about 256 rows; a
  zero on it (an output that no trainable parameter moves) means lambda_min = 0.

LOBPCG stops when both vectors of its block have ||K v - lambda v|| <= tol * lambda_max, or after maxiter
iterations (one call, no restarts). Its residuals can stall near 1e-11 lambda_max, so the smallest pair alone
is then accepted at 10 tol lambda_max; ARPACK stops on its own criterion at the same tol. The eigenvalue
error is second order in the residual (accuracy against dense eigvalsh: docs/benchmarks.md). Where the
residual floor, about 1e-11 lambda_max, reaches lambda_min itself (condition numbers near 1e11), no float64
method converges, and EigenvalueConvergenceError is raised when maxiter runs out. Starting vectors and the
sketch come from an explicit key, so results are deterministic.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from ntk_rnn.checks import Params, check_inputs, check_key, check_lengths, check_params, loss_positions
from ntk_rnn.config import RNNConfig
from ntk_rnn.kernel import DEFAULT_MAX_BYTES, empirical_ntk
from ntk_rnn.model import output_fn, real_rows, trainable

SKETCH_RANK = 512  # columns of the Nystrom sketch (at most N / 4, and a quarter of max_bytes for its 4 copies)
BLOCK_SIZE = 2  # LOBPCG block: the smallest eigenvalue is the least of 2 (a guard against a near-miss)
DIAGONAL_ROWS = 256  # rows per structured-kernel chunk when reading diag(K)
ACCEPT = 10  # the smallest pair is accepted at residual <= ACCEPT * tol * lambda_max (see below)
DENSE_BELOW = 10  # below this size the operator is applied to the identity and the tiny matrix diagonalized


class EigenvalueConvergenceError(RuntimeError):
    """The iterative eigensolver did not reach the tolerance within maxiter."""


@dataclasses.dataclass(frozen=True)
class ExtremeEigenvalues:
    """lambda_min and lambda_max of K (N x N), and the number of products v -> K v spent (matvecs)."""

    lambda_min: float
    lambda_max: float
    size: int
    matvecs: int


def dense_eigh_bytes(size: int) -> int:
    """Bytes a dense float64 eigendecomposition of a size x size kernel needs: the matrix and LAPACK's copy."""
    return 2 * 8 * size * size


# ----------------------------------------------------------------------------- the operator


@partial(jax.jit, static_argnums=(0, 3))
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
    """K as a scipy LinearOperator. Single vectors (ARPACK) go one at a time; blocks (LOBPCG, the sketch) in
    zero-padded groups of BLOCK_SIZE columns (1 if memory is short), so only two widths are ever compiled."""

    def __init__(self, cfg: RNNConfig, params: Params, x: jax.Array, positions, lengths, max_bytes: int):
        self.keep = real_rows(cfg, positions, lengths, x.shape[0])  # the rows of K among flat_outputs'
        size, rows = int(self.keep.sum()), self.keep.size
        super().__init__(dtype=np.float64, shape=(size, size))
        n, length = x.shape[:2]
        n_params = sum(int(np.prod(params[k].shape)) for k in cfg.trainable_names)
        states = 8 * 4 * n * length * cfg.width * cfg.cell_spec.state_factor * cfg.num_layers * len(cfg.directions)
        per_column = 8 * (2 * n_params + rows) + states
        self.batch = BLOCK_SIZE if states + BLOCK_SIZE * per_column <= max_bytes // 2 else 1
        self._args = (cfg, params, x, positions, lengths)
        self.matvecs = 0

    def _matmat(self, V):
        V = np.asarray(V, dtype=np.float64).reshape(self.shape[0], -1)
        out = np.empty_like(V)
        b = 1 if V.shape[1] == 1 else self.batch
        for start in range(0, V.shape[1], b):
            block = V[:, start : start + b]
            width = block.shape[1]
            padded = np.zeros((self.keep.size, b))
            padded[self.keep, :width] = block
            out[:, start : start + width] = np.asarray(_ntk_matmat(*self._args, jnp.asarray(padded)))[self.keep, :width]
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
    params = check_params(cfg, params)
    x = check_inputs(cfg, x, "x")
    lengths = check_lengths(lengths, x, "lengths")
    pos = loss_positions(cfg, positions, x.shape[1], "positions")
    _check_max_bytes(max_bytes)
    return _Operator(cfg, params, x, pos, lengths, max_bytes)


# ----------------------------------------------------------------------------- eigenvalues


def ntk_extreme_eigenvalues(
    cfg: RNNConfig,
    params: Mapping[str, jax.Array],
    x,
    positions: Sequence[int] | None = None,
    *,
    key: jax.Array | None = None,
    tol: float = 1e-10,
    maxiter: int = 2000,
    max_bytes: int = DEFAULT_MAX_BYTES,
    lengths=None,
) -> ExtremeEigenvalues:
    """lambda_min and lambda_max of K = `empirical_ntk(cfg, params, x, positions=positions, lengths1=lengths)`,
    matrix-free.

    Args:
      cfg, params: the model; x: (n, L, d_x) sequences; positions, lengths: as in empirical_ntk.
      key: jax.random key for the starting vectors and the sketch; None means jax.random.key(0).
      tol: relative residual tolerance, ||K v - lambda v|| <= tol * lambda_max (see the module docstring).
      maxiter: cap on LOBPCG iterations (each at most 4 products) and on ARPACK restarts for lambda_max.
      max_bytes: memory budget for the column batches of the products and the diagonal's kernel chunks.

    Returns:
      ExtremeEigenvalues(lambda_min, lambda_max, size N, matvecs).
    """
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be a float in (0, 1), got {tol!r}")
    if not isinstance(maxiter, int) or isinstance(maxiter, bool) or maxiter < 1:
        raise ValueError(f"maxiter must be a positive int, got {maxiter!r}")
    key = jax.random.key(0) if key is None else check_key(key)
    op = ntk_operator(cfg, params, x, positions, max_bytes, lengths=lengths)
    size = op.shape[0]
    k_start, k_sketch, k_block = jax.random.split(key, 3)
    if size < DENSE_BELOW:
        eig = scipy.linalg.eigvalsh(op @ np.eye(size))
        return ExtremeEigenvalues(float(eig[0]), float(eig[-1]), size, op.matvecs)

    v0 = np.asarray(jax.random.normal(k_start, (size,), dtype=jnp.float64))
    try:
        lam_max = float(scipy.sparse.linalg.eigsh(op, k=1, which="LA", v0=v0, tol=tol, maxiter=maxiter,
                                                  return_eigenvectors=False)[0])  # fmt: skip
    except scipy.sparse.linalg.ArpackNoConvergence as err:
        raise EigenvalueConvergenceError(
            f"lambda_max did not converge to tol={tol} in maxiter={maxiter} ARPACK restarts; raise maxiter or tol"
        ) from err
    if lam_max <= 0:
        return ExtremeEigenvalues(0.0, 0.0, size, op.matvecs)

    params, x, pos, lengths = op._args[1:]
    diag = _kernel_diagonal(cfg, params, x, pos, lengths, max_bytes)
    if np.any(diag <= 0):  # a zero row of K: an exact zero eigenvalue
        return ExtremeEigenvalues(0.0, lam_max, size, op.matvecs)

    rank = max(1, min(SKETCH_RANK, size // 4, max_bytes // (4 * 4 * 8 * size)))
    precond = _nystrom_preconditioner(op, diag, rank, k_sketch)
    block = min(BLOCK_SIZE, max(1, size // 5))
    X = np.asarray(jax.random.normal(k_block, (size, block), dtype=jnp.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # non-convergence is checked below
        lam, _, residuals = scipy.sparse.linalg.lobpcg(
            op, X, M=precond, tol=tol * lam_max, maxiter=maxiter, largest=False, retResidualNormsHistory=True
        )
    best = int(np.argmin(lam))
    residual = float(np.asarray(residuals[-1])[best])
    if not residual <= ACCEPT * tol * lam_max:
        raise EigenvalueConvergenceError(
            f"lambda_min did not converge in maxiter={maxiter} LOBPCG iterations: residual {residual:.3g} > "
            f"{ACCEPT} tol lambda_max = {ACCEPT * tol * lam_max:.3g} (estimate {float(lam[best]):.6g}); "
            "raise maxiter or tol"
        )
    return ExtremeEigenvalues(float(max(lam[best], 0.0)), lam_max, size, op.matvecs)


def _kernel_diagonal(cfg: RNNConfig, params: Params, x: jax.Array, positions, lengths, max_bytes: int) -> np.ndarray:
    """diag(K) (N,), from the structured kernel of sample chunks of about DIAGONAL_ROWS rows. The last chunk is
    padded with copies of the first sample so every chunk has one shape (one compile)."""
    n = x.shape[0]
    rows = cfg.output_dim * (1 if positions is None else len(positions))
    c = min(n, max(1, DIAGONAL_ROWS // rows))
    chunks = -(-n // c)
    index = np.concatenate([np.arange(n), np.zeros(chunks * c - n, int)])
    diag = []
    for i in range(chunks):
        part = index[i * c : (i + 1) * c]
        chunk_lengths = None if lengths is None else lengths[part]
        d = np.diag(empirical_ntk(cfg, params, x[part], positions=positions, max_bytes=max_bytes,
                                  lengths1=chunk_lengths))  # fmt: skip
        sample = np.repeat(np.arange(c), rows)[real_rows(cfg, positions, chunk_lengths, c)]  # of each row of d
        diag.append(d[i * c + sample < n])
    return np.concatenate(diag)


def _nystrom_preconditioner(op, diag: np.ndarray, rank: int, key: jax.Array) -> scipy.sparse.linalg.LinearOperator:
    """M ~ K^-1: D^-1/2 [U diag(s_r / s) U^T + (I - U U^T)] D^-1/2 from a rank-r Nystrom sketch
    S ~ U diag(s) U^T of S = D^-1/2 K D^-1/2 (the stabilized algorithm of Frangella, Tropp & Udell)."""
    size = op.shape[0]
    scale = 1.0 / np.sqrt(diag)
    omega = np.linalg.qr(np.asarray(jax.random.normal(key, (size, rank), dtype=jnp.float64)))[0]
    Y = scale[:, None] * (op @ (scale[:, None] * omega))
    shift = np.finfo(float).eps * np.linalg.norm(Y, 2)
    Y = Y + shift * omega
    C = np.linalg.cholesky(omega.T @ Y)
    U, sigma, _ = np.linalg.svd(scipy.linalg.solve_triangular(C, Y.T, lower=True).T, full_matrices=False)
    s = np.maximum(sigma**2 - shift, 0.0)
    floor = max(s[-1], np.finfo(float).eps * s[0])
    ratio = floor / np.maximum(s, floor)

    def apply(V):
        V = scale[:, None] * np.asarray(V, dtype=np.float64).reshape(size, -1)
        coeff = U.T @ V
        return scale[:, None] * (V + U @ ((ratio - 1.0)[:, None] * coeff))

    return scipy.sparse.linalg.LinearOperator(
        (size, size), matvec=lambda v: apply(v)[:, 0], matmat=apply, dtype=np.float64
    )


def _check_max_bytes(max_bytes) -> None:
    if not isinstance(max_bytes, (int, np.integer)) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
