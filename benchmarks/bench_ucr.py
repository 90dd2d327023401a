"""The kernels of the classification study over whole UCR/UEA datasets (docs/theory.md §11).

Per dataset (train and test together, standardized): the limit NTK with readout "last" and the empirical
NTK of one network at width m with readout "last" (one output per class), over the whole dataset; the limit
NTK with readout "mean", whose cost is quadratic in L, on its first 64 sequences, with the whole dataset's
time extrapolated by (n/64)^2. Wall time of the second of two calls (the first compiles), or of the first
when it took over 30 s. Then the "last" kernels on OSULeaf cut to L/8, L/4, L/2 and L steps, with the fitted
exponent of time in L (1: linear).

    .venv/bin/python benchmarks/bench_ucr.py [--width 256] [--datasets GunPoint OSULeaf] [--out docs/bench_ucr.json]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import ntk_rnn
from ntk_rnn.apps.classification import ClassifyConfig
from ntk_rnn.apps.timeseries import DATASETS, LabeledSequences, load_splits, standardize
from ntk_rnn.storage import environment, write_json
from ntk_rnn.training.fitting import power_law_fit


def _seconds(fn) -> float:
    """Wall time of fn's second call, or of its first (compilation included) when that took over 30 s."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first > 30:
        return first
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _whole(name: str) -> LabeledSequences:
    train, test = standardize(*load_splits(name))
    length = max(train.length, test.length)
    x = np.zeros((train.n + test.n, length, train.input_dim))
    x[: train.n, : train.length], x[train.n :, : test.length] = train.x, test.x
    lengths = np.concatenate([train.lengths, test.lengths])
    return LabeledSequences(x, lengths, np.concatenate([train.labels, test.labels]), train.classes, name)


MEAN_SEQUENCES = 64
MAX_BYTES = ClassifyConfig().max_bytes  # the classification study's budget


def _kernels(data: LabeledSequences, width: int) -> dict:
    lengths = None if data.equal_length else data.lengths
    cfg = ntk_rnn.RNNConfig(width=width, input_dim=data.input_dim, output_dim=data.num_classes,
                            parameterization="ntk", sigma_w2=1.0, sigma_u2=1.0, sigma_b2=0.1, readout="last",
                            trainable=("W", "A", "b", "B"))  # fmt: skip
    params = ntk_rnn.init_params(cfg, key=jax.random.key(0))
    one = cfg.replace(output_dim=1)
    return {
        "limit_last_s": _seconds(lambda: ntk_rnn.limit_ntk(one, data.x, lengths1=lengths)),
        "empirical_last_s": _seconds(
            lambda: ntk_rnn.empirical_ntk(cfg, params, data.x, lengths1=lengths, max_bytes=MAX_BYTES)
        ),
    }


def _mean_seconds(data: LabeledSequences) -> tuple[float, float]:
    """(seconds of the "mean" limit NTK on the first MEAN_SEQUENCES sequences, extrapolated to all n)."""
    part = data.take(np.arange(min(MEAN_SEQUENCES, data.n)))
    lengths = None if part.equal_length else part.lengths
    cfg = ntk_rnn.RNNConfig(width=1, input_dim=data.input_dim, parameterization="ntk", sigma_w2=1.0, sigma_u2=1.0,
                            sigma_b2=0.1, readout="mean", trainable=("W", "A", "b", "B"))  # fmt: skip
    seconds = _seconds(lambda: ntk_rnn.limit_ntk(cfg, part.x, lengths1=lengths))
    return seconds, seconds * (data.n / part.n) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--out", default="docs/bench_ucr.json")
    args = parser.parse_args()
    rows = []
    for name in args.datasets:
        data = _whole(name)
        row = {"dataset": name, "n": data.n, "L": data.length, "d_x": data.input_dim, "classes": data.num_classes,
               "width": args.width, **_kernels(data, args.width)}  # fmt: skip
        row["limit_mean_64_s"], row["limit_mean_estimated_s"] = _mean_seconds(data)
        rows.append(row)
        print(row, flush=True)
    leaf = _whole("OSULeaf")
    scaling = []
    for fraction in (8, 4, 2, 1):
        steps = leaf.length // fraction
        cut = LabeledSequences(leaf.x[:, :steps], np.full(leaf.n, steps), leaf.labels, leaf.classes, leaf.name)
        times = _kernels(cut, args.width)
        scaling.append({"L": steps, **{k: times[k] for k in ("limit_last_s", "empirical_last_s")}})
        print(scaling[-1], flush=True)
    exponents = {k: power_law_fit([r["L"] for r in scaling], [r[k] for r in scaling])["slope"]
                 for k in ("limit_last_s", "empirical_last_s")}  # fmt: skip
    print("time ~ L^p on OSULeaf:", {k: round(v, 2) for k, v in exponents.items()})
    write_json({"datasets": rows, "osuleaf_length_scaling": scaling, "length_exponents": exponents,
                "environment": environment()}, args.out)  # fmt: skip


if __name__ == "__main__":
    main()
