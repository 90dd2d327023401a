"""Cost and accuracy of the GRU's and LSTM's infinite-width NTK (ntk_rnn.limit_ntk, a Monte Carlo over the per-unit
process; docs/theory.md §15) over the number of sequences n and the length L (CPU).

For each cell, n and L: one call of limit_ntk on n random sequences of L steps (d_x = 4, "standard", W, A and B
trained, readout "last", samples and replicates as given), after a warm-up call on the same shapes; printed: the
wall time, the peak memory the module estimates for one run, and the relative standard error of the result
(||stderr||_F / ||mean||_F), which falls like samples^-1/2 while the time grows like samples.

    python benchmarks/bench_gated_limit.py [--ns 8 16 32 64] [--lengths 8 16 32] [--samples 8192]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import ntk_rnn
from ntk_rnn.kernels.unit_process import DEFAULT_REPLICATES, DEFAULT_SAMPLES, working_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["gru", "lstm"])
    parser.add_argument("--ns", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--replicates", type=int, default=DEFAULT_REPLICATES)
    args = parser.parse_args()
    print(f"samples={args.samples} replicates={args.replicates}; jax {jax.__version__}, {jax.devices()[0].platform}")
    print("cell  n   L   seconds  est_GiB  rel_stderr")
    for cell in args.cells:
        cfg = ntk_rnn.RNNConfig(width=8, input_dim=4, cell=cell, parameterization="standard",
                                trainable=("W", "A", "B"), readout="last")  # fmt: skip
        for n in args.ns:
            for length in args.lengths:
                x = np.random.default_rng(0).normal(size=(n, length, 4))
                kw = dict(key=jax.random.key(0), samples=args.samples, replicates=args.replicates)
                ntk_rnn.limit_ntk(cfg, x[:, :2], **kw)  # compiles the cell's step for these shapes
                start = time.perf_counter()
                est = ntk_rnn.limit_ntk(cfg, x, **kw)
                seconds = time.perf_counter() - start
                gib = working_bytes(cfg, n, length, args.samples // args.replicates) / 2**30
                rel = np.linalg.norm(est.stderr) / np.linalg.norm(est.mean)
                print(f"{cell:5s} {n:3d} {length:3d} {seconds:8.2f} {gib:8.3f} {rel:10.4f}", flush=True)


if __name__ == "__main__":
    main()
