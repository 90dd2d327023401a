"""Linearized training (theory.md §4): the first-order Taylor model, its closed-form kernel solution,
and a paired trainer that runs it beside the true network on the same batches."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.linalg
from tqdm.auto import tqdm

from ntk_rnn.config import RNNConfig
from ntk_rnn.data import SequenceData
from ntk_rnn.kernel import empirical_ntk
from ntk_rnn.model import Params, check_inputs, check_params, loss_positions, select_outputs, select_targets
from ntk_rnn.training import TrainConfig, _merge, _run_steps, check_divergence, model_outputs, prepare

_model_outputs = jax.jit(model_outputs, static_argnums=(0, 4))


def linearize(cfg: RNNConfig, params0: Mapping[str, jax.Array]) -> Callable[[Params, jax.Array], jax.Array]:
    """f_lin(params, x) = f(params0, x) + J(params0, x) (params - params0), by a jvp (J is never formed).

    Called like ntk_rnn.apply: x (n, L, d_x) -> (n, L, d). Only the trainable parameters of cfg enter
    the Taylor term; the others are taken from params0.
    """
    params0 = check_params(cfg, params0)

    def f_lin(params: Mapping[str, jax.Array], x) -> jax.Array:
        params = check_params(cfg, params)
        theta = {k: params[k] for k in cfg.trainable}
        return _model_outputs(cfg, params0, theta, check_inputs(cfg, x), True)

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


@dataclasses.dataclass(frozen=True)
class PairedResult:
    """history: one row per recorded step (see train_paired); outputs: traced outputs in long form
    (step, split, point, model, value); the final parameters of both models; a summary."""

    history: pd.DataFrame
    outputs: pd.DataFrame
    params_true: Params
    params_lin: Params
    summary: dict


@partial(jax.jit, static_argnums=(0, 4, 5))
def _flat_outputs(cfg, params0, theta, x, positions, linear):
    return select_outputs(model_outputs(cfg, params0, theta, x, linear), positions).reshape(-1)


def train_paired(
    cfg: RNNConfig,
    params: Params,
    train_data: SequenceData,
    test_data: SequenceData,
    tcfg: TrainConfig,
    key: jax.Array,
    trace_points: int = 0,
    progress: bool = True,
) -> PairedResult:
    """Train the true and the linearized model from the same initialization with the same optimizer,
    step size, steps and minibatches, recording every record_every steps:

    train_loss_true/_lin, test_loss_true/_lin; gap_train, gap_test = ||f_true - f_lin|| on the train
    and test outputs at the loss positions, and gap_*_rel = gap / ||f_true - f_0||; param_gap =
    ||theta_true - theta_lin||; w_distance_true = ||W_t - W_0||_F; kernel_drift of the true model at
    kernel checkpoints; and for full-batch GD closed_form_gap_train/_test, the relative distance
    of the trained linearized outputs from KernelGD's. Past tcfg.max_bytes (see TrainConfig) K_0 is not
    formed: kernel_drift is NaN and there is no closed form. The test set may have another length L, not
    another token dimension. trace_points > 0 also records the first outputs of each split for
    each model (and the closed form) in `outputs`.
    """
    setup = prepare(cfg, params, train_data, tcfg)
    params, x, y, positions, lr = setup.params, setup.x, setup.y, setup.positions, setup.lr
    x_test = check_inputs(cfg, test_data.x, "test_data.x")
    y_test = jnp.asarray(test_data.y, dtype=jnp.float64)
    if y_test.shape != (*x_test.shape[:2], cfg.output_dim):
        raise ValueError(f"test_data.y must have shape {(*x_test.shape[:2], cfg.output_dim)}, got {y_test.shape}")
    test_positions = loss_positions(cfg, tcfg.positions, x_test.shape[1], "TrainConfig.positions (test set)")
    targets = {"train": np.asarray(select_targets(y, positions)).ravel(),
               "test": np.asarray(select_targets(y_test, test_positions)).ravel()}  # fmt: skip
    inputs = {"train": (x, positions), "test": (x_test, test_positions)}

    theta0 = {k: params[k] for k in cfg.trainable}
    thetas = {"true": theta0, "lin": theta0}
    optimizer = tcfg.make_optimizer(lr)
    opt_states = {name: optimizer.init(theta0) for name in thetas}
    f0 = {split: np.asarray(_flat_outputs(cfg, params, theta0, xs, pos, False)) for split, (xs, pos) in inputs.items()}
    closed, K_test = None, None
    if tcfg.batch_size is None and tcfg.optimizer == "sgd" and setup.dense:
        closed = KernelGD.from_kernel(setup.K0, f0["train"], targets["train"], lr)
        K_test = empirical_ntk(cfg, params, x_test, x, positions=tcfg.positions, max_bytes=tcfg.max_bytes)
    loss0 = 0.5 * float(np.sum((f0["train"] - targets["train"]) ** 2))
    rows: list[dict] = []
    traces: list[dict] = []

    def record(step: int, with_kernel: bool) -> dict:
        row: dict = {"step": step}
        outs = {}
        for split, (xs, pos) in inputs.items():
            for name, linear in (("true", False), ("lin", True)):
                outs[split, name] = np.asarray(_flat_outputs(cfg, params, thetas[name], xs, pos, linear))
                row[f"{split}_loss_{name}"] = 0.5 * float(np.sum((outs[split, name] - targets[split]) ** 2))
            gap = float(np.linalg.norm(outs[split, "true"] - outs[split, "lin"]))
            moved = float(np.linalg.norm(outs[split, "true"] - f0[split]))
            row[f"gap_{split}"] = gap
            row[f"gap_{split}_rel"] = gap / moved if moved > 0 else math.nan
        if closed is not None:
            cf = {"train": closed.train_outputs([step])[0], "test": closed.test_outputs(K_test, f0["test"], [step])[0]}
            for split in inputs:
                outs[split, "closed_form"] = cf[split]
                row[f"closed_form_gap_{split}"] = float(
                    np.linalg.norm(outs[split, "lin"] - cf[split]) / np.linalg.norm(cf[split])
                )
        row["param_gap"] = math.sqrt(
            sum(float(jnp.sum((thetas["true"][k] - thetas["lin"][k]) ** 2)) for k in cfg.trainable)
        )
        p_true = _merge(params, thetas["true"])
        row["w_distance_true"] = float(jnp.linalg.norm(p_true["W"] - params["W"]))
        if with_kernel and setup.dense:
            K = setup.K0 if step == 0 else setup.kernel(p_true)
            row["kernel_drift"] = float(np.linalg.norm(K - setup.K0) / np.linalg.norm(setup.K0))
        elif with_kernel:
            row["kernel_drift"] = math.nan
        for (split, model), values in outs.items():
            traces.extend(
                {"step": step, "split": split, "point": i, "model": model, "value": float(values[i])}
                for i in range(min(trace_points, values.size))
            )
        return row

    rows.append(record(0, True))
    done = 0
    with tqdm(total=tcfg.steps, desc=f"paired m={cfg.width}", disable=not progress, leave=False) as bar:
        while done < tcfg.steps:
            k = min(tcfg.record_every, tcfg.steps - done)
            for name, linear in (("true", False), ("lin", True)):
                thetas[name], opt_states[name], step_losses = _run_steps(
                    cfg, tcfg, linear, positions, k, params, thetas[name], opt_states[name], key, done, x, y, lr
                )
                check_divergence(step_losses, done, lr, loss0, tcfg, rows)
            done += k
            with_kernel = done == tcfg.steps or (tcfg.kernel_every > 0 and done % tcfg.kernel_every == 0)
            rows.append(record(done, with_kernel))
            bar.update(k)

    history = pd.DataFrame(rows)
    summary = {
        "lr": lr,
        "lambda_min_0": setup.lambda_min0,
        "lambda_max_0": setup.lambda_max0,
        "kernel_tracking": "dense" if setup.dense else "matrix-free",
        "null_space_dim": None if closed is None else int(closed.null_space.shape[1]),
        "positions": None if positions is None else list(positions),
        "test_positions": None if test_positions is None else list(test_positions),
        **{f"final_{c}": float(history[c].iloc[-1]) for c in ("gap_train", "gap_test", "param_gap", "kernel_drift")},
    }
    return PairedResult(
        history=history,
        outputs=pd.DataFrame(traces, columns=["step", "split", "point", "model", "value"]),
        params_true=_merge(params, thetas["true"]),
        params_lin=_merge(params, thetas["lin"]),
        summary=summary,
    )
