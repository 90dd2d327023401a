"""Extreme eigenpairs of a symmetric positive semidefinite N x N matrix K that is never formed: it is known
through products V -> K V (expensive), its diagonal blocks, and columns K[:, idx] (cheap by comparison).

- Preconditioner: a block-Jacobi-scaled randomly pivoted Cholesky (Chen, Epperly, Tropp & Webber 2023)
  Nystrom factor plus the diagonal blocks of its residual. With B = blockdiag(K) over groups of indices
  (the rows of one sample, say) and S = B^-1/2 K B^-1/2, rounds of groups are drawn with probability
  proportional to the residual diagonal mass of S, their columns read, and the factor S ~ F F^T (F of
  shape (N, r)) extended by a block Cholesky step. The preconditioner is
  T = B^-1/2 (F F^T + E)^-1 B^-1/2, E the diagonal blocks of S - F F^T, applied by Woodbury.
- Largest eigenpairs: LOBPCG (no preconditioner) from the top Ritz vectors of the Nystrom model.
- Smallest eigenpairs: LOBPCG with T, a block of k + 1 vectors (one guard), started from T times random
  vectors, aiming at residuals TIGHTEN times below the tolerance: their eigenvalue error is about
  residual^2 / gap, and the gap at the clustered bottom is small (2.6e-8 relative at cond(K) = 1.4e7
  without it).

Each wanted pair must reach ||K v - lambda v|| <= ACCEPT * tol * lambda_max (LOBPCG's own residuals),
otherwise EigenvalueConvergenceError is raised. Rows with a zero diagonal entry are zero rows of a PSD
matrix: they contribute exact zero eigenvalues and are split off before the iteration.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from ntk_rnn.network.checks import check_key

DEFAULT_MAX_BYTES = 2 * 2**30
DEFAULT_TOL = 1e-10  # relative residual tolerance, ||K v - lambda v|| <= tol lambda_max
DEFAULT_MAXITER = 2000  # LOBPCG iterations at each end
MAX_RANK = 4096  # columns of the Nystrom factor: at most N / 2, MAX_RANK, and what max_bytes allows
ROUNDS = 4  # rounds of column reads in the randomly pivoted Cholesky
ACCEPT = 10  # a wanted pair is accepted at residual <= ACCEPT * tol * lambda_max
TIGHTEN = 4  # LOBPCG for the smallest pairs aims at tol * lambda_max / TIGHTEN (their error is ~ residual^2)
DENSE_BELOW = 40  # below this size (or 5 blocks) K is formed from products and diagonalized densely
Columns = Callable[[np.ndarray], np.ndarray]


class EigenvalueConvergenceError(RuntimeError):
    """The iterative eigensolver did not reach the tolerance within maxiter."""


@dataclasses.dataclass(frozen=True)
class ExtremeEigenpairs:
    """The k smallest and k largest eigenpairs of K (N x N), ascending: smallest (k,), smallest_vectors
    (N, k), largest (k,), largest_vectors (N, k); matvecs: product columns spent, columns: columns read."""

    smallest: np.ndarray
    smallest_vectors: np.ndarray
    largest: np.ndarray
    largest_vectors: np.ndarray
    size: int
    matvecs: int
    columns: int

    @property
    def lambda_min(self) -> float:
        """The smallest eigenvalue, smallest[0]."""
        return float(self.smallest[0])

    @property
    def lambda_max(self) -> float:
        """The largest eigenvalue, largest[-1]."""
        return float(self.largest[-1])


def check_solver_args(key: jax.Array | None, tol, maxiter) -> jax.Array:
    """The solver's key (None: jax.random.key(0)), tol in (0, 1) and maxiter >= 1, checked; returns the key."""
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be a float in (0, 1), got {tol!r}")
    if not isinstance(maxiter, int) or isinstance(maxiter, bool) or maxiter < 1:
        raise ValueError(f"maxiter must be a positive int, got {maxiter!r}")
    return jax.random.key(0) if key is None else check_key(key)


class _Counted(scipy.sparse.linalg.LinearOperator):
    """op restricted to the indices `keep` (N_keep, N_keep), counting product columns in .matvecs."""

    def __init__(self, op: scipy.sparse.linalg.LinearOperator, keep: np.ndarray):
        super().__init__(dtype=np.float64, shape=(keep.size, keep.size))
        self.op, self.keep, self.full, self.matvecs = op, keep, keep.size == op.shape[0], 0

    def _matmat(self, V):
        V = np.asarray(V, dtype=np.float64).reshape(self.shape[0], -1)
        self.matvecs += V.shape[1]
        if self.full:
            return np.asarray(self.op.matmat(V), dtype=np.float64).reshape(V.shape)
        padded = np.zeros((self.op.shape[0], V.shape[1]))
        padded[self.keep] = V
        return np.asarray(self.op.matmat(padded), dtype=np.float64).reshape(-1, V.shape[1])[self.keep]

    def _matvec(self, v):
        return self._matmat(np.reshape(v, (-1, 1)))[:, 0]

    def _adjoint(self):
        return self


def extreme_eigenpairs(
    op: scipy.sparse.linalg.LinearOperator,
    diag: np.ndarray,
    columns: Columns,
    *,
    groups: np.ndarray | None = None,
    diag_blocks: list[np.ndarray] | None = None,
    k: int = 1,
    key: jax.Array | None = None,
    tol: float = DEFAULT_TOL,
    maxiter: int = DEFAULT_MAXITER,
    rank: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ExtremeEigenpairs:
    """The k smallest and k largest eigenpairs of a symmetric PSD K, from products, diagonal and columns.

    Args:
      op: K as an (N, N) LinearOperator; op.matmat(V) for V (N, b) returns K V (N, b).
      diag: diag(K), (N,).
      columns: idx (b,) int, ascending -> K[:, idx] (N, b) float64. With groups, idx is always a union of
        whole groups.
      groups: (N,) int group id of each index (ids 0..G-1); columns are read and K is block-Jacobi scaled
        group by group. None means one group per index.
      diag_blocks: K[g, g] for each group g (G arrays (|g|, |g|), indices of g ascending); None means
        diag(diag[g]) (plain Jacobi scaling).
      k: number of pairs at each end (k <= N / 6 for the iteration).
      key: jax.random key for the pivots and starting vectors; None means jax.random.key(0).
      tol: relative residual tolerance, ||K v - lambda v|| <= tol * lambda_max.
      maxiter: cap on LOBPCG iterations at each end.
      rank: Nystrom rank (columns read); None means min(N / 2, MAX_RANK, what max_bytes allows).
      max_bytes: memory budget for the Nystrom factor and its working copies (4 N r floats).
    """
    size = op.shape[0]
    diag = np.asarray(diag, dtype=np.float64).reshape(-1)
    if op.shape != (size, size) or diag.shape != (size,):
        raise ValueError(f"op must be square and diag (N,) with N = {size}, got {op.shape} and {diag.shape}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= size:
        raise ValueError(f"k must be an int in [1, N = {size}], got {k!r}")
    key = check_solver_args(key, tol, maxiter)
    groups = np.arange(size) if groups is None else np.asarray(groups).reshape(-1)
    if groups.shape != (size,):
        raise ValueError(f"groups must have shape ({size},), got {groups.shape}")
    n_groups = int(groups.max()) + 1
    if diag_blocks is None:
        diag_blocks = [np.diag(diag[groups == g]) for g in range(n_groups)]

    keep = np.flatnonzero(diag > 0)  # zero diagonal entries of a PSD matrix: zero rows, zero eigenvalues
    K = _Counted(op, keep)
    if keep.size < max(DENSE_BELOW, 5 * (k + 1)):
        w, Q = scipy.linalg.eigh(K @ np.eye(keep.size)) if keep.size else (np.zeros(0), np.zeros((0, 0)))
        return _assemble(size, keep, w, Q, w, Q, k, K.matvecs, 0)

    block = _BlockJacobi(groups[keep], [b[np.ix_(diag[groups == g] > 0, diag[groups == g] > 0)]
                                        for g, b in enumerate(diag_blocks)])  # fmt: skip

    def kept_columns(idx):
        return np.asarray(columns(keep[idx]), dtype=np.float64)[keep]

    limit = max(1, max_bytes // (4 * 8 * keep.size))
    r = min(keep.size // 2, MAX_RANK, limit) if rank is None else max(1, min(int(rank), keep.size // 2, limit))
    k_pivots, k_start = jax.random.split(key)
    F, resid_blocks = _rp_cholesky(kept_columns, block, r, k_pivots)
    precond = _Preconditioner(block, F, resid_blocks)

    # largest: from the top Ritz vectors of the model K ~ B^1/2 F F^T B^1/2
    G = block.sqrt_apply(F)
    w, Z = np.linalg.eigh(G.T @ G)
    X = G @ Z[:, -(k + 1) :]
    lam_hi, vec_hi, res_hi = _lobpcg(K, X, None, tol * w[-1], maxiter, largest=True)
    del G
    lam_max = float(lam_hi[-1])
    _check(res_hi[-k:], tol * lam_max, maxiter, "lambda_max", lam_hi[-k:])
    X = precond @ np.asarray(jax.random.normal(k_start, (keep.size, k + 1), dtype=jnp.float64))
    lam_lo, vec_lo, res_lo = _lobpcg(K, X, precond, tol * lam_max / TIGHTEN, maxiter, largest=False)
    _check(res_lo[:k], tol * lam_max, maxiter, "lambda_min", lam_lo[:k])
    return _assemble(size, keep, lam_lo, vec_lo, lam_hi, vec_hi, k, K.matvecs, F.shape[1])


def _lobpcg(K, X, M, tol: float, maxiter: int, largest: bool):
    """scipy's LOBPCG, eigenpairs sorted ascending with their last residual norms."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # non-convergence is checked by the caller
        lam, V, history = scipy.sparse.linalg.lobpcg(K, X, M=M, tol=tol, maxiter=maxiter, largest=largest,
                                                     retResidualNormsHistory=True)  # fmt: skip
    order = np.argsort(lam)
    return lam[order], V[:, order], np.asarray(history[-1]).reshape(-1)[order]


def _check(residuals: np.ndarray, scale: float, maxiter: int, name: str, estimates: np.ndarray) -> None:
    worst = float(np.max(residuals))
    if not worst <= ACCEPT * scale:
        raise EigenvalueConvergenceError(
            f"{name} did not converge in maxiter={maxiter} LOBPCG iterations: residual {worst:.3g} > "
            f"{ACCEPT} tol lambda_max = {ACCEPT * scale:.3g} (estimates {np.round(estimates, 6)}); "
            "raise maxiter or tol"
        )


def _assemble(size, keep, lam_lo, vec_lo, lam_hi, vec_hi, k, matvecs, n_columns) -> ExtremeEigenpairs:
    """Merge the zero eigenvalues of the zero rows with the pairs found on the others."""
    zero_rows = np.setdiff1d(np.arange(size), keep)
    lo = np.concatenate([np.zeros(zero_rows.size), np.maximum(lam_lo, 0.0)])
    V_lo = np.zeros((size, lo.size))
    V_lo[zero_rows, np.arange(zero_rows.size)] = 1.0
    V_lo[keep, zero_rows.size :] = vec_lo
    hi_vals = np.concatenate([np.zeros(min(zero_rows.size, k)), lam_hi])
    V_hi = np.zeros((size, hi_vals.size))
    V_hi[zero_rows[: min(zero_rows.size, k)], np.arange(min(zero_rows.size, k))] = 1.0
    V_hi[keep, min(zero_rows.size, k) :] = vec_hi
    lo_order, hi_order = np.argsort(lo, kind="stable")[:k], np.argsort(hi_vals, kind="stable")[-k:]
    return ExtremeEigenpairs(lo[lo_order], V_lo[:, lo_order], hi_vals[hi_order], V_hi[:, hi_order], size,
                             matvecs, n_columns)  # fmt: skip


class _BlockJacobi:
    """B = blockdiag(K) over groups, as padded (G, p, p) blocks: applies B^-1/2 and B^1/2 to (N, b)."""

    def __init__(self, groups: np.ndarray, blocks: list[np.ndarray]):
        ids = np.unique(groups)
        members = [np.flatnonzero(groups == g) for g in ids]
        p = max(m.size for m in members)
        self.size, self.p, self.n = groups.size, p, len(members)
        self.slots = np.full((len(members), p), groups.size)  # index N is a padding slot
        root, inv_root = np.zeros((len(members), p, p)), np.zeros((len(members), p, p))
        for i, (g, m) in enumerate(zip(ids, members, strict=True)):
            self.slots[i, : m.size] = m
            w, Q = np.linalg.eigh(blocks[g])
            w = np.maximum(w, 1e-14 * max(w.max(), 0.0) + 1e-300)
            root[i, : m.size, : m.size] = (Q * np.sqrt(w)) @ Q.T
            inv_root[i, : m.size, : m.size] = (Q / np.sqrt(w)) @ Q.T
        self.root, self.inv_root = root, inv_root
        self.group_of = np.empty(groups.size, int)
        self.group_of[self.slots[self.slots < groups.size]] = np.repeat(np.arange(self.n), [m.size for m in members])

    def gather(self, V: np.ndarray) -> np.ndarray:
        """(N, b) -> (G, p, b), zero in padding slots."""
        return np.concatenate([V, np.zeros((1, V.shape[1]))])[self.slots]

    def scatter(self, A: np.ndarray) -> np.ndarray:
        """(G, p, b) -> (N, b), padding slots dropped."""
        out = np.zeros((self.size + 1, A.shape[-1]))
        out[self.slots] = A
        return out[: self.size]

    def blockwise(self, blocks: np.ndarray, V: np.ndarray) -> np.ndarray:
        return self.scatter(blocks @ self.gather(V))

    def inv_sqrt_apply(self, V: np.ndarray) -> np.ndarray:
        return self.blockwise(self.inv_root, V)

    def sqrt_apply(self, V: np.ndarray) -> np.ndarray:
        return self.blockwise(self.root, V)


def _rp_cholesky(columns: Columns, block: _BlockJacobi, rank: int, key: jax.Array):
    """Block randomly pivoted Cholesky of S = B^-1/2 K B^-1/2 by whole groups: F (N, r') with S ~ F F^T,
    r' about rank, and the diagonal blocks of S - F F^T, (G, p, p)."""
    size, sizes = block.size, np.bincount(block.group_of, minlength=block.n)
    F = np.zeros((size, 0))
    resid = np.ones(size)  # diag(S - F F^T); S has a unit diagonal up to the clipping in B
    chosen = np.zeros(block.n, bool)
    per_round = max(1, int(np.ceil(rank / ROUNDS / sizes.mean())))
    rounds = 0
    while F.shape[1] < rank and not chosen.all():
        mass = np.bincount(block.group_of, np.maximum(resid, 0.0), minlength=block.n)
        mass[chosen] = 0.0
        if not mass.max() > 0:
            break
        gumbel = np.asarray(jax.random.gumbel(jax.random.fold_in(key, rounds), (block.n,), dtype=jnp.float64))
        rounds += 1
        score = np.where(mass > 0, np.log(np.maximum(mass, 1e-300)) + gumbel, -np.inf)
        budget = np.cumsum(sizes[np.argsort(-score)]) <= max(rank - F.shape[1], sizes.max())
        pick = np.argsort(-score)[: max(1, min(per_round, int(budget.sum()), int((score > -np.inf).sum())))]
        chosen[pick] = True
        idx = np.sort(block.slots[pick][block.slots[pick] < size])
        C = _scale_columns(block, columns(idx), idx)  # S[:, idx]
        G = C - F @ F[idx].T
        w, Q = np.linalg.eigh((G[idx] + G[idx].T) / 2)
        good = w > 1e-10 * max(w.max(), 1.0)
        step = G @ (Q[:, good] / np.sqrt(w[good]))
        F = np.hstack([F, step])
        resid -= np.einsum("ij,ij->i", step, step)
    Fg = block.gather(F)
    return F, _scaled_diag_blocks(block) - Fg @ np.swapaxes(Fg, 1, 2)


def _scale_columns(block: _BlockJacobi, C: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """S[:, idx] = B^-1/2 K[:, idx] (B^-1/2)[idx, idx] for idx a union of whole groups."""
    left = block.inv_sqrt_apply(C)  # (N, b)
    full = np.zeros((block.size, idx.size))
    full[idx, np.arange(idx.size)] = 1.0
    right = block.inv_sqrt_apply(full)[idx]  # (B^-1/2)[idx, idx], symmetric
    return left @ right


def _scaled_diag_blocks(block: _BlockJacobi) -> np.ndarray:
    """Diagonal blocks of S = B^-1/2 K B^-1/2: identities on the real slots (B's own blocks)."""
    real = (block.slots < block.size).astype(float)
    return real[:, :, None] * np.eye(block.p)[None] * real[:, None, :]


class _Preconditioner(scipy.sparse.linalg.LinearOperator):
    """T = B^-1/2 (F F^T + E)^-1 B^-1/2 by Woodbury, E the residual diagonal blocks (shifted to be SPD)."""

    def __init__(self, block: _BlockJacobi, F: np.ndarray, resid_blocks: np.ndarray):
        super().__init__(dtype=np.float64, shape=(block.size, block.size))
        p = block.p
        real = block.slots < block.size
        shift = 1e-3 * np.trace(resid_blocks, axis1=1, axis2=2).sum() / max(real.sum(), 1) + 1e-12
        w, Q = np.linalg.eigh(resid_blocks + (~real)[:, :, None] * np.eye(p)[None])  # padding slots: 1
        w = np.maximum(w, 0.0) + shift  # rounding can leave the residual of pivot groups slightly indefinite
        self.block, self.E_inv = block, (Q / w[:, None, :]) @ np.swapaxes(Q, 1, 2)
        self.FR = block.blockwise(self.E_inv, F)  # E^-1 F
        self.chol = scipy.linalg.cho_factor(np.eye(F.shape[1]) + F.T @ self.FR, lower=True)

    def _matmat(self, V):
        V = self.block.inv_sqrt_apply(np.asarray(V, dtype=np.float64).reshape(self.shape[0], -1))
        z = self.block.blockwise(self.E_inv, V) - self.FR @ scipy.linalg.cho_solve(self.chol, self.FR.T @ V)
        return self.block.inv_sqrt_apply(z)

    def _matvec(self, v):
        return self._matmat(np.reshape(v, (-1, 1)))[:, 0]
