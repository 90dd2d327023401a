"""GD and SGD on the paper's loss (ntk_rnn.network.loss), with the kernel, weight movement and ReLU patterns tracked
(docs/theory.md §4).

`train_step` and `run_steps` are the pure core (jax.jit, jax.vmap and jax.grad compose with them);
`train` validates its inputs once, runs them and records a tidy history.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import scipy.linalg
import scipy.sparse.linalg
from tqdm.auto import tqdm

from ntk_rnn.batching.batch import batch
from ntk_rnn.eigen.lobpcg import DEFAULT_MAX_BYTES, DEFAULT_MAXITER, DEFAULT_TOL
from ntk_rnn.eigen.matfree import ExtremeEigenvalues, checked_extreme_eigenvalues, dense_eigh_bytes
from ntk_rnn.kernels.empirical import empirical_ntk_fn
from ntk_rnn.network.checks import (
    NTKInputs,
    Params,
    check_inputs,
    check_lengths,
    check_params,
    check_targets,
    loss_positions,
)
from ntk_rnn.network.config import RNNConfig
from ntk_rnn.network.data import SequenceData
from ntk_rnn.network.loss import gradient_sq_norm, loss, masked_residuals
from ntk_rnn.network.model import Positions, hidden_states, merge, real_rows, trainable
from ntk_rnn.training.fitting import fit_log_rate, predicted_log_rate
from ntk_rnn.training.linearized import model_outputs

OPTIMIZERS = ("sgd", "momentum", "adam")
"""The values of TrainConfig.optimizer."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
      steps: number of parameter updates.
      lr: absolute step size eta; None means eta = lr_scale / lambda_max(K_0).
      lr_scale: c in eta = c / lambda_max(K_0). GD on the linearized model is stable for c < 2.
      batch_size: None for full-batch GD; b for SGD on b samples per step drawn without replacement
        (b = 1 is the paper's SGD). The minibatch gradient is scaled by n/b, so it is unbiased.
      record_every: record loss, weight movement and ReLU patterns every this many steps.
      kernel_every: also compute K_t every this many steps (a multiple of record_every); 0 means only
        at the first and last step.
      positions: loss positions (0-based); None means 1..L-1, the paper's l = 2..L.
      divergence_factor: a loss above this times the initial loss counts as divergence.
      optimizer: "sgd" (plain gradient steps: GD, or SGD with batch_size), "momentum" (heavy ball
        with coefficient `momentum`) or "adam", all from optax, at step size eta.
      momentum: the heavy-ball coefficient of optimizer "momentum", in [0, 1).
      max_bytes: memory budget of one kernel checkpoint. The tracked kernel is dense (N x N, N = n P d)
        while K_0, K_t and the eigendecomposition's copy of K_t fit in it (3 * 8 * N^2 bytes); beyond
        that lambda_min and lambda_max are computed matrix-free (ntk_rnn.eigen.matfree, K never formed) and
        kernel_drift, which needs both dense kernels, is NaN. Also the structured kernel's budget.
    """

    steps: int = 200
    lr: float | None = None
    lr_scale: float = 0.5
    batch_size: int | None = None
    record_every: int = 10
    kernel_every: int = 50
    positions: tuple[int, ...] | None = None
    divergence_factor: float = 1e6
    optimizer: str = "sgd"
    momentum: float = 0.9
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        def positive_int(name):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")

        positive_int("steps")
        positive_int("record_every")
        if self.batch_size is not None:
            positive_int("batch_size")
        if not isinstance(self.kernel_every, int) or self.kernel_every < 0 or self.kernel_every % self.record_every:
            raise ValueError(
                f"TrainConfig.kernel_every must be 0 or a positive multiple of record_every={self.record_every}, "
                f"got {self.kernel_every!r}"
            )
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be a positive finite float or None, got {self.lr!r}")
        if not (math.isfinite(self.lr_scale) and self.lr_scale > 0):
            raise ValueError(f"TrainConfig.lr_scale must be a positive finite float, got {self.lr_scale!r}")
        if not self.divergence_factor > 1:
            raise ValueError(f"TrainConfig.divergence_factor must exceed 1, got {self.divergence_factor!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"TrainConfig.momentum must lie in [0, 1), got {self.momentum!r}")
        positive_int("max_bytes")
        if self.positions is not None:
            object.__setattr__(self, "positions", tuple(int(p) for p in self.positions))

    def make_optimizer(self, lr: float) -> optax.GradientTransformation:
        """The optax transformation at step size lr."""
        if self.optimizer == "momentum":
            return optax.sgd(lr, momentum=self.momentum)
        if self.optimizer == "adam":
            return optax.adam(lr)
        return optax.sgd(lr)


class TrainingDivergedError(ValueError):
    """Training produced NaN/inf or an exploding loss. `history` holds the rows recorded before."""

    def __init__(self, step: int, lr: float, loss: float, history: pd.DataFrame):
        self.step, self.lr, self.loss, self.history = step, lr, loss, history
        super().__init__(
            f"training diverged at step {step} with step size eta={lr:.4g}: loss={loss:.4g}. "
            f"Use a smaller lr or lr_scale (GD needs eta < 2 / lambda_max(K_0)); "
            f"{len(history)} recorded rows are kept in .history"
        )


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """history: one row per recorded step (kernel columns are NaN between kernel checkpoints);
    params: the final parameters; summary: step size, initial spectrum and fitted versus predicted rate."""

    history: pd.DataFrame
    params: Params
    summary: dict


def train_step(
    cfg: RNNConfig,
    optimizer: optax.GradientTransformation,
    params0: Mapping[str, jax.Array],
    theta: Params,
    opt_state: optax.OptState,
    x: jax.Array,
    y: jax.Array,
    positions: Positions,
    linear: bool = False,
    scale: float = 1.0,
    lengths: jax.Array | None = None,
) -> tuple[Params, optax.OptState, jax.Array]:
    """One optimizer update of the trainable parameters theta on scale * f over the batch (x (b, L, d_x),
    y (b, L, d), lengths (b,) or None), the frozen ones taken from params0; with linear, of the Taylor model around
    params0 instead. Returns (theta, opt_state, the batch loss before the update). Pure: jit it with cfg,
    optimizer, positions and linear static."""

    def batch_loss(th):
        r = masked_residuals(model_outputs(cfg, params0, th, x, linear, lengths), y, positions, lengths)
        return scale * 0.5 * jnp.sum(r**2)

    value, grads = jax.value_and_grad(batch_loss)(theta)
    updates, opt_state = optimizer.update(grads, opt_state, theta)
    return optax.apply_updates(theta, updates), opt_state, value


@partial(jax.jit, static_argnames=("tcfg", "num_steps", "positions", "linear"))
def run_steps(
    cfg: RNNConfig,
    tcfg: TrainConfig,
    params0: Params,
    theta: Params,
    opt_state: optax.OptState,
    x: jax.Array,
    y: jax.Array,
    lr: float,
    *,
    key: jax.Array,
    step0: int,
    num_steps: int,
    positions: Positions,
    linear: bool = False,
    lengths: jax.Array | None = None,
) -> tuple[Params, optax.OptState, jax.Array]:
    """num_steps train_steps of tcfg's optimizer at step size lr, from step step0, in one lax.scan; returns
    (theta, opt_state, the per-step losses (num_steps,)). The minibatch of step t depends only on (key, t),
    so a true and a linearized run with the same key see the same batches; for SGD the per-step loss is
    the minibatch estimate (n/b) * 1/2 sum over the batch."""
    n, batch_size = x.shape[0], tcfg.batch_size
    optimizer = tcfg.make_optimizer(lr)

    def step(carry, t):
        theta, opt_state = carry
        if batch_size is None:
            xb, yb, lb, scale = x, y, lengths, 1.0
        else:
            idx = jax.random.choice(jax.random.fold_in(key, step0 + t), n, (batch_size,), replace=False)
            xb, yb, scale = x[idx], y[idx], n / batch_size
            lb = None if lengths is None else lengths[idx]
        theta, opt_state, value = train_step(cfg, optimizer, params0, theta, opt_state, xb, yb, positions, linear,
                                             scale, lb)  # fmt: skip
        return (theta, opt_state), value

    (theta, opt_state), losses = jax.lax.scan(step, (theta, opt_state), jnp.arange(num_steps))
    return theta, opt_state, losses


def spectral_norm(matrix: np.ndarray) -> float:
    """Largest singular value, by ARPACK Lanczos with a fixed start vector (deterministic)."""
    matrix = np.asarray(matrix)
    if not matrix.any():
        return 0.0
    if min(matrix.shape) < 3:
        return float(np.linalg.norm(matrix, 2))
    v0 = np.ones(min(matrix.shape))
    return float(scipy.sparse.linalg.svds(matrix, k=1, v0=v0, return_singular_vectors=False, tol=1e-10)[0])


def pattern_flip_fraction(g0: jax.Array, g: jax.Array) -> float:
    """Fraction of units at steps 2..L whose sign of the pre-activation differs (relu: D_l changed);
    g0, g: pre-activations (n, L, m)."""
    return float(jnp.mean((g0[:, 1:] > 0) != (g[:, 1:] > 0))) if g0.shape[1] > 1 else 0.0


@dataclasses.dataclass(frozen=True)
class Setup:
    """A validated training problem: inputs, targets, loss positions, K_0's extreme eigenvalues and the
    step size. K0 and its spectrum eig0 are held only when the dense kernel fits tcfg.max_bytes (`dense`);
    otherwise both are None and the eigenvalues come from the matrix-free solver."""

    cfg: RNNConfig
    params: Params
    x: jax.Array
    y: jax.Array
    positions: Positions
    K0: np.ndarray | None
    eig0: np.ndarray | None
    lambda_min0: float
    lambda_max0: float
    lr: float
    max_bytes: int = DEFAULT_MAX_BYTES
    lengths: jax.Array | None = None

    @property
    def dense(self) -> bool:
        """Whether kernels are tracked as dense matrices (True) or only by their extreme eigenvalues."""
        return self.K0 is not None

    def kernel(self, params: Params) -> np.ndarray:
        """K_t on the training inputs at the loss positions (dense; only for `dense` setups' sizes)."""
        return batch(empirical_ntk_fn(self.cfg, positions=self.positions), max_bytes=self.max_bytes)(
            params, self.x, lengths1=self.lengths
        )

    def spectrum(self, params: Params) -> tuple[float, float, np.ndarray | None]:
        """(lambda_min, lambda_max, K_t) of the kernel at params; K_t is None when tracked matrix-free."""
        if self.dense:
            K = self.kernel(params)
            eig = scipy.linalg.eigvalsh(K)
            return float(eig[0]), float(eig[-1]), K
        result = matrix_free_spectrum(self.cfg, NTKInputs(params, self.x, self.positions, self.lengths),
                                      self.max_bytes)  # fmt: skip
        return result.lambda_min, result.lambda_max, None

    def kernel_drift(self, K: np.ndarray | None) -> float:
        """||K - K_0||_F / ||K_0||_F, NaN when either kernel is not held."""
        if K is None or self.K0 is None:
            return math.nan
        return float(np.linalg.norm(K - self.K0) / np.linalg.norm(self.K0))


def kernel_size(cfg: RNNConfig, x: jax.Array, positions: Positions, lengths: jax.Array | None = None) -> int:
    """N, the side of the training kernel: n * P * d (the real rows only, with lengths), or n * d for
    readout "last"/"mean"."""
    return int(real_rows(cfg, positions, lengths, x.shape[0]).sum())


def matrix_free_spectrum(cfg: RNNConfig, inputs: NTKInputs, max_bytes: int) -> ExtremeEigenvalues:
    """lambda_min and lambda_max of the NTK of checked inputs, matrix-free (ntk_rnn.eigen.matfree, default solver)."""
    return checked_extreme_eigenvalues(cfg, inputs, key=jax.random.key(0), tol=DEFAULT_TOL, maxiter=DEFAULT_MAXITER,
                                       max_bytes=max_bytes)  # fmt: skip


def prepare(cfg: RNNConfig, params: Mapping[str, jax.Array], data: SequenceData, tcfg: TrainConfig) -> Setup:
    """Validate the problem, compute K_0's spectrum (dense, or matrix-free past tcfg.max_bytes), and fix
    the step size.

    Refuses a plain full-batch step at or above 2 / lambda_max(K_0), where GD on the linearized
    model diverges, naming the computed lambda_max.
    """
    params = check_params(cfg, params)
    x = check_inputs(cfg, data.x, "data.x")
    y = check_targets(cfg, x, data.y, "data.y")
    lengths = check_lengths(data.lengths, x, "data.lengths")
    if tcfg.batch_size is not None and tcfg.batch_size > x.shape[0]:
        raise ValueError(f"TrainConfig.batch_size={tcfg.batch_size} exceeds the number of samples n={x.shape[0]}")
    positions = loss_positions(cfg, tcfg.positions, x.shape[1], "TrainConfig.positions")
    size = kernel_size(cfg, x, positions, lengths)
    K0 = eig0 = None
    if dense_eigh_bytes(size) + 8 * size * size <= tcfg.max_bytes:  # K_0 is kept beside K_t and LAPACK's copy
        K0 = batch(empirical_ntk_fn(cfg, positions=positions), max_bytes=tcfg.max_bytes)(params, x, lengths1=lengths)
        eig0 = scipy.linalg.eigvalsh(K0)
        lam_min0, lam_max0 = float(eig0[0]), float(eig0[-1])
    else:
        result = matrix_free_spectrum(cfg, NTKInputs(params, x, positions, lengths), tcfg.max_bytes)
        lam_min0, lam_max0 = result.lambda_min, result.lambda_max
    if lam_max0 <= 0:
        raise ValueError("K_0 is zero (no output depends on the trainable parameters at these positions)")
    lr = tcfg.lr if tcfg.lr is not None else tcfg.lr_scale / lam_max0
    if tcfg.batch_size is None and tcfg.optimizer == "sgd" and lr >= 2.0 / lam_max0:
        raise ValueError(
            f"step size eta={lr:.4g} is at or above 2 / lambda_max(K_0) = {2.0 / lam_max0:.4g} "
            f"(lambda_max(K_0) = {lam_max0:.4g}); full-batch GD would diverge. "
            "Use lr < 2 / lambda_max(K_0) or lr_scale < 2"
        )
    return Setup(cfg, params, x, y, positions, K0, eig0, lam_min0, lam_max0, lr, tcfg.max_bytes, lengths)


def record_intervals(tcfg: TrainConfig) -> Iterator[tuple[int, int]]:
    """(first step, number of steps) of each stretch between two records: record_every steps, the last shorter."""
    for start in range(0, tcfg.steps, tcfg.record_every):
        yield start, min(tcfg.record_every, tcfg.steps - start)


def is_kernel_step(tcfg: TrainConfig, step: int) -> bool:
    """Whether the record at this step is a kernel checkpoint: the last step and every kernel_every steps."""
    return step == tcfg.steps or (tcfg.kernel_every > 0 and step % tcfg.kernel_every == 0)


def check_divergence(losses, step0: int, lr: float, loss0: float, tcfg: TrainConfig, rows: list[dict]) -> None:
    """Raise TrainingDivergedError at the first non-finite loss or one above divergence_factor * loss0."""
    losses = np.asarray(losses, dtype=float)
    bad = ~np.isfinite(losses) | (losses > tcfg.divergence_factor * loss0)
    if bad.any():
        first = int(np.argmax(bad))
        raise TrainingDivergedError(step0 + first, lr, float(losses[first]), pd.DataFrame(rows))


def train(
    cfg: RNNConfig,
    params: Mapping[str, jax.Array],
    data: SequenceData,
    tcfg: TrainConfig,
    *,
    key: jax.Array,
    progress: bool = True,
) -> TrainResult:
    """Train the trainable parameters of cfg on data with GD or SGD (batches drawn from key), tracking the NTK.

    Every record_every steps a row holds: step, loss, w_distance_fro = ||W_t - W_0||_F, omega =
    sqrt(m) ||c_W (W_t - W_0)||_2 (the paper's radius, of the effective matrix c_W W, as in ntk_rnn.apps.probes;
    W of the first layer) and pattern_flip_fraction (one Elman layer only; NaN for other models). Kernel
    checkpoints add lambda_min, lambda_max, condition,
    kernel_drift = ||K_t - K_0||_F / ||K_0||_F, grad_sq_norm = ||grad f||^2
    and gradient_ratio = ||grad f||^2 / (2 lambda_min(K_t) f), which docs/theory.md §4 shows is >= 1.
    Past tcfg.max_bytes the eigenvalues are matrix-free and kernel_drift is NaN (summary
    "kernel_tracking": "dense" or "matrix-free").
    Raises TrainingDivergedError (with the rows recorded so far) on NaN/inf or an exploding loss.
    """
    setup = prepare(cfg, params, data, tcfg)
    params, x, y, positions, lr, K0 = setup.params, setup.x, setup.y, setup.positions, setup.lr, setup.K0
    lengths = setup.lengths
    lam_min0, lam_max0 = setup.lambda_min0, setup.lambda_max0
    m = cfg.width

    theta = trainable(cfg, params)
    opt_state = tcfg.make_optimizer(lr).init(theta)
    g0 = hidden_states(cfg, params, x)[0] if cfg.is_elman and lengths is None else None
    W0 = np.asarray(params["W"])
    loss0 = float(loss(cfg, params, x, y, positions, lengths))
    rows: list[dict] = []

    def record(step: int, p: Params, with_kernel: bool) -> dict:
        current = float(loss(cfg, p, x, y, positions, lengths))
        dW = np.asarray(p["W"]) - W0
        row = {
            "step": step,
            "loss": current,
            "w_distance_fro": float(np.linalg.norm(dW)),
            "omega": math.sqrt(m) * cfg.multipliers["W"] * spectral_norm(dW),
            "pattern_flip_fraction": math.nan if g0 is None else pattern_flip_fraction(g0, hidden_states(cfg, p, x)[0]),
        }  # fmt: skip
        if with_kernel:
            lam_min, lam_max, K = (lam_min0, lam_max0, K0) if step == 0 else setup.spectrum(p)
            grad_sq = float(gradient_sq_norm(cfg, p, x, y, positions, lengths))
            row |= {
                "lambda_min": lam_min,
                "lambda_max": lam_max,
                "condition": lam_max / lam_min if lam_min > 0 else math.inf,
                "kernel_drift": setup.kernel_drift(K),
                "grad_sq_norm": grad_sq,
                "gradient_ratio": grad_sq / (2 * lam_min * current) if lam_min > 0 and current > 0 else math.nan,
            }
        return row

    rows.append(record(0, params, True))
    p = params
    with tqdm(total=tcfg.steps, desc=f"train m={m}", disable=not progress, leave=False) as bar:
        for start, k in record_intervals(tcfg):
            theta, opt_state, step_losses = run_steps(
                cfg, tcfg, params, theta, opt_state, x, y, lr, key=key, step0=start, num_steps=k, positions=positions,
                lengths=lengths,
            )  # fmt: skip
            check_divergence(step_losses, start, lr, loss0, tcfg, rows)
            p = merge(params, theta)
            row = record(start + k, p, is_kernel_step(tcfg, start + k))
            check_divergence([row["loss"]], start + k, lr, loss0, tcfg, rows)
            rows.append(row)
            bar.update(k)
            bar.set_postfix(loss=f"{row['loss']:.3g}")

    history = pd.DataFrame(rows)
    summary = {
        "lr": lr,
        "lambda_min_0": lam_min0,
        "lambda_max_0": lam_max0,
        "initial_loss": loss0,
        "final_loss": float(history["loss"].iloc[-1]),
        "predicted_log_rate": predicted_log_rate(lr, lam_min0),
        **fit_log_rate(history["step"].to_numpy(), history["loss"].to_numpy()),
        "positions": None if positions is None else list(positions),
        "kernel_tracking": "dense" if setup.dense else "matrix-free",
    }
    return TrainResult(history=history, params=p, summary=summary)
