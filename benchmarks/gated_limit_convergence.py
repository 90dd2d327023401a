"""Wide GRUs and LSTMs against their infinite-width limits (ntk_rnn.limit_ntk, ntk_rnn.nngp_kernel; docs/theory.md §15).

For each cell and parameterization, on fixed sequences (n=4, L=5, d_x=3, every parameter trained, a bias): the
mean over seeds of empirical_ntk/m ("paper", "standard") or empirical_ntk ("ntk") at each width, against the
limit's Monte Carlo estimate; and the same for the NNGP, whose empirical side is the output covariance at
initialization, exact over the readout B given the other weights (Var(B) times the kernel of B alone), averaged
over the seeds. Printed per width: the relative Frobenius error of the seed mean, the seeds' own Monte Carlo
floor (the spread of the per-seed kernels / sqrt(seeds), relative), and the limit's standard error (relative);
then the fitted slope of the error against m. Writes a CSV with --out.

    python benchmarks/gated_limit_convergence.py [--widths 256 1024 4096] [--seeds 16] [--first-seed 1000]
                                                 [--samples 1048576] [--cells gru lstm] [--out table.csv]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import pandas as pd

import ntk_rnn

TRAINED = ("W", "A", "b", "B")


def config(cell: str, par: str, width: int, trainable=TRAINED) -> ntk_rnn.RNNConfig:
    return ntk_rnn.RNNConfig(width=width, input_dim=3, cell=cell, parameterization=par, sigma_w2=1.5,
                             sigma_u2=1.0, sigma_b2=0.3, trainable=trainable, readout="all")  # fmt: skip


def readout_variance(cfg: ntk_rnn.RNNConfig) -> float:
    """Var(B) times B's multiplier squared over the multiplier squared the B-only kernel already holds."""
    return {"paper": cfg.sigma_v2 / cfg.output_dim, "standard": cfg.sigma_v2 / cfg.width, "ntk": 1.0}[
        cfg.parameterization
    ]


def empirical(cell: str, par: str, width: int, seeds: range, x, positions) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed normalized NTKs and output covariances, each (seeds, R, R)."""
    cfg, only_b = config(cell, par, width), config(cell, par, width, ("B",))
    scale = 1.0 if par == "ntk" else 1.0 / width
    ntks, covs = [], []
    for s in seeds:
        params = ntk_rnn.init_params(cfg, key=jax.random.key(s))
        ntks.append(np.asarray(ntk_rnn.empirical_ntk(cfg, params, x, positions=positions)) * scale)
        covs.append(np.asarray(ntk_rnn.empirical_ntk(only_b, params, x, positions=positions)) * readout_variance(cfg))
    return np.stack(ntks), np.stack(covs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=2**20)
    parser.add_argument("--cells", nargs="+", default=["gru", "lstm"])
    parser.add_argument("--parameterizations", nargs="+", default=["paper", "standard", "ntk"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    x = np.random.default_rng(0).normal(size=(4, 5, 3))
    positions = tuple(range(5))
    rows = []
    for cell in args.cells:
        for par in args.parameterizations:
            start = time.perf_counter()
            key = jax.random.key(7)
            limits = {
                "ntk": ntk_rnn.limit_ntk(config(cell, par, 8), x, positions=positions, key=key, samples=args.samples),
                "nngp": ntk_rnn.nngp_kernel(
                    config(cell, par, 8), x, positions=positions, key=key, samples=args.samples
                ),
            }
            cost = time.perf_counter() - start
            for width in args.widths:
                seeds = range(args.first_seed, args.first_seed + args.seeds)
                per_seed = dict(zip(("ntk", "nngp"), empirical(cell, par, width, seeds, x, positions), strict=True))
                for kind, est in limits.items():
                    scale = np.linalg.norm(est.mean)
                    kernels = per_seed[kind]
                    rows.append({
                        "cell": cell, "parameterization": par, "kernel": kind, "width": width, "seeds": args.seeds,
                        "error": np.linalg.norm(kernels.mean(0) - est.mean) / scale,
                        "seed_floor": np.linalg.norm(kernels.std(0, ddof=1)) / np.sqrt(args.seeds) / scale,
                        "limit_stderr": np.linalg.norm(est.stderr) / scale, "limit_seconds": cost,
                    })  # fmt: skip
                    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()),
                          flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    for (cell, par, kind), group in table.groupby(["cell", "parameterization", "kernel"]):
        slope = np.polyfit(np.log(group["width"]), np.log(group["error"]), 1)[0]
        print(f"{cell} {par} {kind}: error {' '.join(f'{e:.4f}' for e in group['error'])}, slope {slope:.2f}")
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
