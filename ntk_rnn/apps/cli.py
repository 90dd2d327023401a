"""`ntk-rnn`: a thin command line over the library. `ntk-rnn SUBCOMMAND --help` lists the options."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import jax
import numpy as np
import scipy.linalg
from jax.experimental import multihost_utils

import ntk_rnn
from ntk_rnn.apps.classification import PREDICTORS, ClassifyConfig, classify_dataset
from ntk_rnn.apps.datasets import BINARY_DIGITS, digits_sequences, synthetic_sequences
from ntk_rnn.apps.timeseries import DATASETS
from ntk_rnn.batching.distributed import OUTPUTS
from ntk_rnn.batching.launch import initialize
from ntk_rnn.eigen.matfree import ntk_extreme_eigenvalues
from ntk_rnn.eigen.sharded import kernel_eigenpairs
from ntk_rnn.kernels.unit_process import DEFAULT_SAMPLES
from ntk_rnn.network.cells import CELLS
from ntk_rnn.network.config import STACKINGS
from ntk_rnn.network.data import SequenceData, load_npz, train_test_split
from ntk_rnn.storage import atomic_write, environment, write_json, write_table
from ntk_rnn.training.paired import train_paired
from ntk_rnn.training.train import TrainConfig, TrainingDivergedError, train


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=256, help="hidden width m (default 256)")
    parser.add_argument("--cell", default="elman", choices=CELLS, help="recurrent cell (default elman)")
    parser.add_argument("--num-layers", type=int, default=1, help="stacked layers (default 1)")
    parser.add_argument("--bidirectional", action="store_true", help="add a reversed stack, readouts summed")
    parser.add_argument("--stacking", default="separate", choices=STACKINGS,
                        help="bidirectional layers: separate, or concat (PyTorch's; default separate)")  # fmt: skip
    parser.add_argument("--hidden-bias", action="store_true", help="a second cell bias bh (PyTorch's bias_hh)")
    parser.add_argument("--activation", default="relu", help="Elman's relu, tanh, erf or linear (default relu)")
    parser.add_argument("--parameterization", default="paper", choices=("paper", "standard", "ntk"))
    parser.add_argument("--readout", default="all", choices=("all", "last", "mean"))
    parser.add_argument("--trainable", nargs="+", default=["W"], help="subset of W A b bh B (default W)")
    parser.add_argument("--sigma-b2", type=float, default=0.0, help="bias variance; 0 means no bias (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, weights and batches (default 0)")
    parser.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic' (the paper's delta-separated unit tokens, Gaussian labels), 'digits' "
        "(scikit-learn digits as 8 rows, classes 3 vs 8) or a path to an .npz with x (n,L,d_x), y (n,L,d) and "
        "optionally lengths (n,) of right-padded sequences",
    )
    parser.add_argument("--n", type=int, default=16, help="number of sequences (synthetic, digits; default 16)")
    parser.add_argument("--length", type=int, default=8, help="sequence length L (synthetic; default 8)")
    parser.add_argument("--input-dim", type=int, default=8, help="token dimension d_x (synthetic; default 8)")
    parser.add_argument("--output-dim", type=int, default=1, help="output dimension d (synthetic; default 1)")
    parser.add_argument("--delta", type=float, default=0.5, help="first-token separation (synthetic; default 0.5)")
    parser.add_argument(
        "--positions", type=int, nargs="+", default=None, help="0-based output positions (default: the paper's 1..L-1)"
    )


def _add_distributed_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("several processes (jax.distributed; docs/guide/scale.md)")
    group.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() with the cluster's settings (SLURM, Open MPI)",
    )
    group.add_argument("--coordinator", default=None, help="host:port of process 0 (explicit initialization)")
    group.add_argument("--num-processes", type=int, default=None, help="number of processes (with --coordinator)")
    group.add_argument("--process-id", type=int, default=None, help="this process's rank (with --coordinator)")


def _dataset(args, key: jax.Array) -> SequenceData:
    if args.data == "synthetic":
        return synthetic_sequences(args.n, args.length, args.input_dim, args.output_dim, args.delta, key=key)
    if args.data == "digits":
        return digits_sequences(args.n, key=key, classes=BINARY_DIGITS)
    return load_npz(args.data)


def _setup(args):
    """(data, cfg, params, batch key) from the seed: the data, weights and SGD batches get their own keys."""
    data_key, param_key, batch_key = jax.random.split(jax.random.key(args.seed), 3)
    data = _dataset(args, data_key)
    cfg = ntk_rnn.RNNConfig(
        width=args.width, input_dim=data.input_dim, output_dim=data.output_dim, activation=args.activation,
        parameterization=args.parameterization, readout=args.readout, trainable=tuple(args.trainable),
        sigma_b2=args.sigma_b2, cell=args.cell, num_layers=args.num_layers, bidirectional=args.bidirectional,
        stacking=args.stacking, hidden_bias=args.hidden_bias,
    )  # fmt: skip
    return data, cfg, ntk_rnn.init_params(cfg, key=param_key), batch_key


def _kernel(args) -> int:
    if args.distributed or args.coordinator is not None:
        initialize(args.coordinator, args.num_processes, args.process_id)
    data, cfg, params, _ = _setup(args)
    if args.matrix_free and (args.kernel != "empirical" or args.output != "numpy"):
        raise ValueError("--matrix-free forms no kernel: it takes neither --kernel limit nor --output")
    start = time.perf_counter()
    summary: dict = {"kernel": args.kernel, "method": args.method, "output": args.output}
    if args.matrix_free:
        result = ntk_extreme_eigenvalues(cfg, params, data.x, args.positions, lengths=data.lengths)
        summary |= {"shape": [result.size] * 2, "lambda_min": result.lambda_min, "lambda_max": result.lambda_max,
                    "matvecs": result.matvecs}  # fmt: skip
        K = eig = None
    else:
        options = {"positions": args.positions, "lengths1": data.lengths, "output": args.output, "path": args.path}
        if args.kernel == "empirical":
            K = ntk_rnn.empirical_ntk(cfg, params, data.x, method=args.method, **options)
        elif cfg.cell == "elman":
            K = ntk_rnn.limit_ntk(cfg, data.x, **options)
        else:  # a Monte Carlo estimate (docs/theory.md §15): its mean, and its error in the summary
            if args.output != "numpy":
                raise ValueError(f"--kernel limit of cell {cfg.cell_name!r} is a Monte Carlo estimate: --output numpy")
            est = ntk_rnn.limit_ntk(cfg, data.x, args.positions, lengths1=data.lengths, key=jax.random.key(args.seed),
                                    samples=args.samples)  # fmt: skip
            K = est.mean
            summary |= {"samples": est.samples, "relative_stderr": np.linalg.norm(est.stderr) / np.linalg.norm(K)}
        summary |= {"shape": list(K.shape), "kernel_seconds": round(time.perf_counter() - start, 4)}
        eig = scipy.linalg.eigvalsh(K) if args.output == "numpy" else None
        if args.output == "sharded":
            pairs = kernel_eigenpairs(K, key=jax.random.key(args.seed))
            summary |= {"lambda_min": pairs.lambda_min, "lambda_max": pairs.lambda_max, "matvecs": pairs.matvecs}
        elif eig is not None:
            summary |= {"lambda_min": eig[0], "lambda_max": eig[-1]}
    summary["seconds"] = round(time.perf_counter() - start, 4)
    if "lambda_min" in summary:
        lam_min, lam_max = summary["lambda_min"], summary["lambda_max"]
        summary |= {"lambda_min_over_m": lam_min / cfg.width, "condition": lam_max / lam_min if lam_min > 0 else
                    float("inf")}  # fmt: skip
    summary |= {"processes": jax.process_count(), "devices": jax.device_count(), "peak_rss_gib": _peak_rss_gib()}
    if jax.process_index() == 0:
        print(json.dumps(summary, indent=2, default=float))
    if args.out and eig is not None:
        out = Path(args.out)
        atomic_write(out, lambda handle: np.savez(handle, kernel=K, eigenvalues=eig), binary=True)
        print(f"wrote {out}")
    return 0


def _peak_rss_gib() -> list[float]:
    """Each process's peak resident memory (ru_maxrss), in GiB, in process order."""
    peak = np.asarray([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20])
    if jax.process_count() == 1:
        return [round(float(peak[0]), 3)]
    return [round(float(v), 3) for v in np.ravel(multihost_utils.process_allgather(peak))]


def _train(args) -> int:
    data, cfg, params, batch_key = _setup(args)
    tcfg = TrainConfig(
        steps=args.steps, lr=args.lr, lr_scale=args.lr_scale, batch_size=args.batch_size,
        record_every=args.record_every, kernel_every=args.kernel_every,
        positions=tuple(args.positions) if args.positions else None,
    )  # fmt: skip
    out = Path(args.out)
    record = {"model": cfg.to_dict(), "train": vars(tcfg), "data": repr(data), "seed": args.seed}
    return _run_and_save(lambda: train(cfg, params, data, tcfg, key=batch_key), out, record)


def _run_and_save(run, out: Path, record: dict, outputs: bool = False) -> int:
    """Run a training function and write history.csv (+ outputs.csv) and record.json atomically; after
    a divergence write the rows recorded so far and the error, and return 1."""
    try:
        result = run()
    except TrainingDivergedError as err:
        write_table(err.history, out / "history.csv")
        write_json(record | {"error": str(err), "environment": environment()}, out / "record.json")
        print(f"error: {err}", file=sys.stderr)
        return 1
    write_table(result.history, out / "history.csv")
    if outputs:
        write_table(result.outputs, out / "outputs.csv")
    write_json(record | {"summary": result.summary, "environment": environment()}, out / "record.json")
    print(json.dumps(result.summary, indent=2, default=float))
    print(f"wrote {out}/history.csv and record.json")
    return 0


def _linearized(args) -> int:
    data, cfg, params, batch_key = _setup(args)
    split_key = jax.random.fold_in(jax.random.key(args.seed), 1)
    if args.test_data:
        train_data, test_data = data, load_npz(args.test_data)
    else:
        train_data, test_data = train_test_split(data, args.n_test, key=split_key)
    tcfg = TrainConfig(
        steps=args.steps, lr=args.lr, lr_scale=args.lr_scale, batch_size=args.batch_size,
        record_every=args.record_every, kernel_every=0, optimizer=args.optimizer,
        positions=tuple(args.positions) if args.positions else None,
    )  # fmt: skip
    out = Path(args.out)
    record = {"model": cfg.to_dict(), "train": vars(tcfg), "train_data": repr(train_data), "test_data": repr(test_data),
              "seed": args.seed}  # fmt: skip
    return _run_and_save(
        lambda: train_paired(cfg, params, train_data, test_data, tcfg, key=batch_key, trace_points=args.trace_points),
        out, record, outputs=args.trace_points > 0,
    )  # fmt: skip


def _classify(args) -> int:
    config = ClassifyConfig(predictors=tuple(args.predictors), widths=tuple(args.widths), seeds=tuple(args.seeds),
                            readouts=tuple(args.readouts), sigma_w2s=tuple(args.sigma_w2s), steps=args.steps,
                            folds=args.folds, num_layers=args.num_layers, bidirectional=args.bidirectional)  # fmt: skip
    table = classify_dataset(args.dataset, config)
    columns = ["predictor", "width", "seed", "hyperparameter", "value", "cv_accuracy", "train_accuracy",
               "test_accuracy", "test_agreement", "kernel_seconds", "fit_seconds"]  # fmt: skip
    print(f"{args.dataset}: readout {table['readout'].iloc[0]}, sigma_w2 {table['sigma_w2'].iloc[0]} "
          f"(chosen by {config.folds}-fold cross-validation on the training split)")  # fmt: skip
    print(table[[c for c in columns if c in table.columns]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.out:
        write_table(table, args.out)
        print(f"wrote {args.out}")
    return 0


def add_commands(sub) -> None:
    """Add the library's commands (kernel, train, linearized, classify) to `sub`, what ArgumentParser.add_subparsers
    returns; each command sets `run(args) -> exit status`."""
    kernel = sub.add_parser("kernel", help="empirical NTK at initialization: spectrum and timing")
    _add_model_args(kernel)
    kernel.add_argument("--method", default="structured", choices=ntk_rnn.kernels.empirical.METHODS)
    kernel.add_argument(
        "--kernel",
        default="empirical",
        choices=("empirical", "limit"),
        help="the empirical NTK at initialization or the infinite-width one (default empirical)",
    )
    kernel.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        help=f"--kernel limit of a GRU or LSTM: units of its Monte Carlo (default {DEFAULT_SAMPLES}; the error falls "
        "like samples^-1/2)",
    )
    kernel.add_argument(
        "--output",
        default="numpy",
        choices=OUTPUTS,
        help="numpy: whole kernel, all eigenvalues (eigvalsh); sharded: split by rows over every "
        "device, extreme eigenvalues by LOBPCG; npy: written to --path, no eigenvalues",
    )
    kernel.add_argument(
        "--path", default=None, help="the .npy file of --output npy, on a file system all processes share"
    )
    kernel.add_argument(
        "--matrix-free",
        action="store_true",
        help="extreme eigenvalues from products J (J^T v), samples split over every device, no kernel",
    )
    kernel.add_argument("--out", default=None, help="optional .npz for the kernel and its eigenvalues (--output numpy)")
    _add_distributed_args(kernel)
    kernel.set_defaults(run=_kernel)

    train = sub.add_parser("train", help="GD/SGD with kernel tracking; writes history.csv and record.json")
    _add_model_args(train)
    train.add_argument("--steps", type=int, default=200)
    train.add_argument("--lr", type=float, default=None, help="absolute step size (default: lr-scale / lambda_max)")
    train.add_argument("--lr-scale", type=float, default=0.5, help="c in eta = c / lambda_max(K_0) (default 0.5)")
    train.add_argument("--batch-size", type=int, default=None, help="SGD minibatch size (default: full-batch GD)")
    train.add_argument("--record-every", type=int, default=10)
    train.add_argument("--kernel-every", type=int, default=50, help="kernel checkpoints (multiple of record-every)")
    train.add_argument("--out", default="results/train", help="output directory (default results/train)")
    train.set_defaults(run=_train)

    lin = sub.add_parser(
        "linearized", help="true vs linearized training on the same batches; writes history.csv and record.json"
    )
    _add_model_args(lin)
    lin.add_argument("--n-test", type=int, default=8, help="sequences held out of the --n drawn (default 8)")
    lin.add_argument("--test-data", default=None, help="an .npz test set instead (its L may differ)")
    lin.add_argument("--steps", type=int, default=200)
    lin.add_argument("--lr", type=float, default=None, help="absolute step size (default: lr-scale / lambda_max)")
    lin.add_argument("--lr-scale", type=float, default=1.0, help="c in eta = c / lambda_max(K_0) (default 1)")
    lin.add_argument("--batch-size", type=int, default=None, help="SGD minibatch size (default: full-batch GD)")
    lin.add_argument("--optimizer", default="sgd", choices=("sgd", "momentum", "adam"))
    lin.add_argument("--record-every", type=int, default=10)
    lin.add_argument("--trace-points", type=int, default=0, help="record the first k outputs of each split")
    lin.add_argument("--out", default="results/linearized", help="output directory (default results/linearized)")
    lin.set_defaults(run=_linearized)

    cls = sub.add_parser("classify", help="RNN kernels and RNNs on a UCR/UEA dataset's official split")
    cls.add_argument("--dataset", required=True, choices=DATASETS, help="a UCR/UEA dataset bundled with sktime")
    cls.add_argument("--predictors", nargs="+", default=list(PREDICTORS), choices=PREDICTORS)
    cls.add_argument("--widths", type=int, nargs="+", default=[64, 256], help="finite networks (default 64 256)")
    cls.add_argument("--seeds", type=int, nargs="+", default=[0], help="one network per seed (default 0)")
    cls.add_argument(
        "--readouts",
        nargs="+",
        default=["last", "mean"],
        choices=("last", "mean"),
        help="readouts cross-validation chooses from (default last mean)",
    )
    cls.add_argument(
        "--sigma-w2s",
        type=float,
        nargs="+",
        default=[0.5, 1.0, 1.5],
        help="sigma_w2 values cross-validation chooses from (default 0.5 1.0 1.5)",
    )
    cls.add_argument("--num-layers", type=int, default=1, help="stacked Elman layers (default 1)")
    cls.add_argument("--bidirectional", action="store_true", help="add a reversed stack, readouts summed")
    cls.add_argument("--steps", type=int, default=500, help="GD steps of the finite networks (default 500)")
    cls.add_argument("--folds", type=int, default=5, help="cross-validation folds on the training split (default 5)")
    cls.add_argument("--out", default=None, help="optional .csv for the whole table")
    cls.set_defaults(run=_classify)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the library's commands."""
    parser = argparse.ArgumentParser(prog="ntk-rnn", description=__doc__)
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse argv and run the chosen command; bad input exits with status 2 and a one-line error."""
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """`python -m ntk_rnn.apps.cli`: the library's commands. The `ntk-rnn` script adds the main job's `figures`."""
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
