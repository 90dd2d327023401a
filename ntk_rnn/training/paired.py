"""True against linearized training (docs/theory.md §4): the network and its Taylor model trained side by
side from the same initialization, with the same optimizer, step size, steps and minibatches."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ntk_rnn.batching.batch import batch
from ntk_rnn.kernels.empirical import empirical_ntk_fn
from ntk_rnn.network.checks import Params, check_inputs, check_lengths, check_targets, loss_positions
from ntk_rnn.network.config import RNNConfig
from ntk_rnn.network.data import SequenceData
from ntk_rnn.network.model import merge, real_rows, select_outputs, select_targets, trainable
from ntk_rnn.training.linearized import KernelGD, model_outputs
from ntk_rnn.training.train import (
    TrainConfig,
    check_divergence,
    is_kernel_step,
    prepare,
    record_intervals,
    run_steps,
)


@dataclasses.dataclass(frozen=True)
class PairedResult:
    """history: one row per recorded step (see train_paired); outputs: traced outputs in long form
    (step, split, point, model, value); the final parameters of both models; a summary."""

    history: pd.DataFrame
    outputs: pd.DataFrame
    params_true: Params
    params_lin: Params
    summary: dict


@partial(jax.jit, static_argnums=(4, 5))
def _flat_outputs(cfg, params0, theta, x, positions, linear, lengths):
    return select_outputs(model_outputs(cfg, params0, theta, x, linear, lengths), positions).reshape(-1)


def train_paired(
    cfg: RNNConfig,
    params: Mapping[str, jax.Array],
    train_data: SequenceData,
    test_data: SequenceData,
    tcfg: TrainConfig,
    *,
    key: jax.Array,
    trace_points: int = 0,
    progress: bool = True,
) -> PairedResult:
    """Train the true and the linearized model from the same initialization with the same optimizer,
    step size, steps and minibatches, recording every record_every steps:

    `train_loss_true`, `train_loss_lin`, `test_loss_true`, `test_loss_lin`; `gap_train`, `gap_test` =
    `||f_true - f_lin||` on the train and test outputs at the loss positions, and `gap_train_rel`,
    `gap_test_rel` = `gap / ||f_true - f_0||`; `param_gap` = `||theta_true - theta_lin||`; `w_distance_true` =
    `||W_t - W_0||_F`; `kernel_drift` of the true model at kernel checkpoints; and for full-batch GD
    `closed_form_gap_train`, `closed_form_gap_test`, the relative distance of the trained linearized outputs
    from KernelGD's. Past tcfg.max_bytes (see TrainConfig) K_0 is not
    formed: kernel_drift is NaN and there is no closed form. The test set may have another length L, not
    another token dimension. trace_points > 0 also records the first outputs of each split for
    each model (and the closed form) in `outputs`.
    """
    setup = prepare(cfg, params, train_data, tcfg)
    params, x, y, positions, lr = setup.params, setup.x, setup.y, setup.positions, setup.lr
    x_test = check_inputs(cfg, test_data.x, "test_data.x")
    y_test = check_targets(cfg, x_test, test_data.y, "test_data.y")
    lengths, test_lengths = setup.lengths, check_lengths(test_data.lengths, x_test, "test_data.lengths")
    test_positions = loss_positions(cfg, tcfg.positions, x_test.shape[1], "TrainConfig.positions (test set)")
    inputs = {"train": (x, positions, lengths), "test": (x_test, test_positions, test_lengths)}
    keep = {split: real_rows(cfg, pos, ls, xs.shape[0]) for split, (xs, pos, ls) in inputs.items()}
    ys = {"train": y, "test": y_test}
    targets = {split: np.asarray(select_targets(ys[split], pos, ls)).ravel()[keep[split]]
               for split, (_, pos, ls) in inputs.items()}  # fmt: skip

    def outputs(split: str, theta, linear: bool) -> np.ndarray:
        """The outputs of one split at its real rows, (N,)."""
        xs, pos, ls = inputs[split]
        return np.asarray(_flat_outputs(cfg, params, theta, xs, pos, linear, ls))[keep[split]]

    theta0 = trainable(cfg, params)
    thetas = {"true": theta0, "lin": theta0}
    optimizer = tcfg.make_optimizer(lr)
    opt_states = {name: optimizer.init(theta0) for name in thetas}
    f0 = {split: outputs(split, theta0, False) for split in inputs}
    closed, K_test = None, None
    if tcfg.batch_size is None and tcfg.optimizer == "sgd" and setup.dense:
        closed = KernelGD.from_kernel(setup.K0, f0["train"], targets["train"], lr)
        K_test = batch(empirical_ntk_fn(cfg, positions=tcfg.positions), max_bytes=tcfg.max_bytes)(
            params, x_test, x, lengths1=test_lengths, lengths2=lengths
        )
    loss0 = 0.5 * float(np.sum((f0["train"] - targets["train"]) ** 2))
    rows: list[dict] = []
    traces: list[dict] = []

    def record(step: int, with_kernel: bool) -> dict:
        row: dict = {"step": step}
        outs = {}
        for split in inputs:
            for name, linear in (("true", False), ("lin", True)):
                outs[split, name] = outputs(split, thetas[name], linear)
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
            sum(float(jnp.sum((thetas["true"][k] - thetas["lin"][k]) ** 2)) for k in thetas["true"])
        )
        p_true = merge(params, thetas["true"])
        row["w_distance_true"] = float(jnp.linalg.norm(p_true["W"] - params["W"]))
        if with_kernel:
            K = setup.K0 if step == 0 or not setup.dense else setup.kernel(p_true)
            row["kernel_drift"] = setup.kernel_drift(K)
        for (split, model), values in outs.items():
            traces.extend(
                {"step": step, "split": split, "point": i, "model": model, "value": float(values[i])}
                for i in range(min(trace_points, values.size))
            )
        return row

    rows.append(record(0, True))
    with tqdm(total=tcfg.steps, desc=f"paired m={cfg.width}", disable=not progress, leave=False) as bar:
        for start, k in record_intervals(tcfg):
            for name, linear in (("true", False), ("lin", True)):
                thetas[name], opt_states[name], step_losses = run_steps(
                    cfg, tcfg, params, thetas[name], opt_states[name], x, y, lr, key=key, step0=start, num_steps=k,
                    positions=positions, linear=linear, lengths=lengths,
                )  # fmt: skip
                check_divergence(step_losses, start, lr, loss0, tcfg, rows)
            rows.append(record(start + k, is_kernel_step(tcfg, start + k)))
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
        params_true=merge(params, thetas["true"]),
        params_lin=merge(params, thetas["lin"]),
        summary=summary,
    )
