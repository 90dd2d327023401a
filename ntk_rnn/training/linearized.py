"""The linearized network (docs/theory.md §4): the first-order Taylor model around an initialization and
the closed-form solution of full-batch GD on it through the kernel K_0."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from ntk_rnn.network.checks import Params, check_params, check_structure
from ntk_rnn.network.config import RNNConfig
from ntk_rnn.network.model import apply, merge, trainable


def taylor_outputs(cfg: RNNConfig, params0: Mapping[str, jax.Array], theta: Params, x: jax.Array,
                   lengths: jax.Array | None = None) -> jax.Array:  # fmt: skip
    """f(params0, x) + J(params0, x) (theta - theta0), shaped like apply, by one jvp (J is never formed);
    theta holds trainable parameters, theta0 the same entries of params0. Pure."""

    def f(th):
        return apply(cfg, merge(params0, th), x, lengths)

    theta0 = {k: params0[k] for k in theta}
    f0, df = jax.jvp(f, (theta0,), (jax.tree.map(jnp.subtract, theta, theta0),))
    return f0 + df


def model_outputs(cfg: RNNConfig, params0: Mapping[str, jax.Array], theta: Params, x: jax.Array,
                  linear: bool, lengths: jax.Array | None = None) -> jax.Array:  # fmt: skip
    """The outputs of the network with trainable parameters theta (others from params0), or with linear of
    its Taylor model around params0 (taylor_outputs). Pure; linear must be static under jit."""
    if linear:
        return taylor_outputs(cfg, params0, theta, x, lengths)
    return apply(cfg, merge(params0, theta), x, lengths)


def linearize(cfg: RNNConfig, params0: Mapping[str, jax.Array]) -> Callable[[Params, jax.Array], jax.Array]:
    """f_lin(params, x) = f(params0, x) + J(params0, x) (params - params0), by a jvp (J is never formed).

    params0 is validated here, once. f_lin is called like ntk_rnn.apply, (x (n, L, d_x), lengths) -> (n, L, d), and is
    pure (jax.jit, jax.vmap and jax.grad compose with it). Only the trainable parameters of cfg enter the
    Taylor term; the others are taken from params0.
    """
    params0 = check_params(cfg, params0)

    def f_lin(params: Mapping[str, jax.Array], x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        check_structure(cfg, params, x)
        return taylor_outputs(cfg, params0, trainable(cfg, params), x, lengths)

    return f_lin


@dataclasses.dataclass(frozen=True)
class KernelGD:
    """Closed-form full-batch GD of the linearized model on 1/2 ||f - y||^2, from K_0 = V diag(lam) V^T:

        f_t = y + V diag((1 - eta lam)^t) V^T (f_0 - y)                      (train outputs, (N,))
        f_t(x) = f_0(x) - K(x, X) V diag((1 - (1 - eta lam)^t) / lam) V^T (f_0 - y)   (test outputs)

    and gradient flow, with (1 - eta lam)^t replaced by exp(-lam eta t). Eigenvalues at or below
    `tol` form the null space of K_0: those modes do not move, and their test-point factor takes its
    limit eta t (it multiplies K(x, X) v = 0), so a singular K_0 gives no NaN.
    """

    eigenvalues: np.ndarray  # (N,) ascending, those <= tol set to 0
    eigenvectors: np.ndarray  # (N, N)
    f0: np.ndarray  # (N,)
    y: np.ndarray  # (N,)
    lr: float
    tol: float

    @classmethod
    def from_kernel(cls, K0: np.ndarray, f0: np.ndarray, y: np.ndarray, lr: float) -> KernelGD:
        """The closed form from the training kernel K0 (N, N), the initial outputs f0 and targets y (each N
        values, any shape) and the step size lr; K0 is diagonalized here."""
        lam, vec = scipy.linalg.eigh(np.asarray(K0, dtype=float))
        tol = lam.size * np.finfo(float).eps * max(abs(lam[-1]), abs(lam[0]))
        lam = np.where(lam <= tol, 0.0, lam)
        return cls(lam, vec, np.ravel(f0).astype(float), np.ravel(y).astype(float), float(lr), float(tol))

    @property
    def null_space(self) -> np.ndarray:
        """Orthonormal basis (N, k) of the null space of K_0 (k = 0 when K_0 is positive definite)."""
        return self.eigenvectors[:, self.eigenvalues == 0]

    def _decay(self, steps: np.ndarray, flow: bool) -> np.ndarray:
        """(T, N) factor of each mode after each number of steps."""
        t = np.asarray(steps, float)[:, None]
        if flow:
            return np.exp(-self.eigenvalues * self.lr * t)
        return (1.0 - self.lr * self.eigenvalues) ** t

    def train_outputs(self, steps, flow: bool = False) -> np.ndarray:
        """Training outputs (T, N) after each entry of steps (gradient flow: time eta * steps)."""
        coeff = self.eigenvectors.T @ (self.f0 - self.y)
        return self.y + (self._decay(steps, flow) * coeff) @ self.eigenvectors.T

    def test_outputs(self, K_test: np.ndarray, f0_test: np.ndarray, steps, flow: bool = False) -> np.ndarray:
        """Outputs (T, N_test) at test inputs, from K_test = K(x_test, X) (N_test, N) and f_0(x_test)."""
        lam = self.eigenvalues
        t = np.asarray(steps, float)[:, None]
        safe = np.where(lam > 0, lam, 1.0)
        done = -np.expm1(-lam * self.lr * t) if flow else 1.0 - (1.0 - self.lr * lam) ** t
        gain = np.where(lam > 0, done / safe, self.lr * t)
        coeff = self.eigenvectors.T @ (self.f0 - self.y)
        return np.ravel(f0_test) - (gain * coeff) @ (np.asarray(K_test) @ self.eigenvectors).T
