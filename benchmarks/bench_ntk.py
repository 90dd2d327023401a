"""Time empirical_ntk for each method over a grid of sizes, against this machine's matmul floor.

For every size it prints the seconds (best of --repeats after a warm-up call, so compile time is
excluded and shown apart), the GFLOP/s achieved on the structured algorithm's FLOP count, and the
ratio of the time to the floor: that FLOP count divided by the machine's measured float64 matmul
rate (the faster of jax and numpy on square products). Each size runs in a fresh subprocess, so
the peak resident memory (ru_maxrss) is that size's own.

    python benchmarks/bench_ntk.py            # the default grid (a few minutes on 2 cores)
    python benchmarks/bench_ntk.py --big      # adds m = 8192 (structured only)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

GRID = [  # (n, L, d_x, d, m, methods)
    (32, 16, 8, 1, 256, ("structured", "jacobian", "ntvp")),
    (32, 16, 8, 1, 512, ("structured", "jacobian", "ntvp")),
    (32, 16, 8, 1, 1024, ("structured", "jacobian")),
    (32, 16, 8, 1, 2048, ("structured",)),
    (64, 16, 8, 1, 1024, ("structured",)),
    (32, 32, 8, 1, 1024, ("structured",)),
    (32, 16, 8, 4, 1024, ("structured",)),
]
BIG = [(32, 16, 8, 1, 8192, ("structured",))]


def matmul_rate(repeats: int = 3) -> dict:
    """Best float64 GFLOP/s of square matrix products, in jax and in numpy."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    rates = {"jax": 0.0, "numpy": 0.0}
    for size in (1024, 2048, 4096):
        a = np.random.default_rng(0).standard_normal((size, size))
        aj = jnp.asarray(a)
        dot = jax.jit(jnp.dot)
        dot(aj, aj).block_until_ready()
        for _ in range(repeats):
            start = time.perf_counter()
            dot(aj, aj).block_until_ready()
            rates["jax"] = max(rates["jax"], 2 * size**3 / (time.perf_counter() - start) / 1e9)
            start = time.perf_counter()
            a @ a
            rates["numpy"] = max(rates["numpy"], 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return rates


def run_one(n: int, length: int, dx: int, d: int, m: int, method: str, repeats: int) -> dict:
    import jax

    import ntk_rnn
    from ntk_rnn.kernels.empirical import structured_flops

    cfg = ntk_rnn.RNNConfig(width=m, input_dim=dx, output_dim=d)
    params = ntk_rnn.init_params(cfg, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (n, length, dx))
    start = time.perf_counter()
    ntk_rnn.empirical_ntk(cfg, params, x, method=method)
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ntk_rnn.empirical_ntk(cfg, params, x, method=method)
        best = min(best, time.perf_counter() - start)
    flops = structured_flops(n, n, length, tuple(range(1, length)), m, d, dx, symmetric=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"seconds": best, "compile_seconds": max(first - best, 0.0), "gflop": flops / 1e9, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", action="store_true", help="also run m = 8192 (structured only)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=6, metavar=("N", "L", "DX", "D", "M", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        *sizes, method = args.one
        print(json.dumps(run_one(*map(int, sizes), method, args.repeats)))
        return

    rates = matmul_rate()
    rate = max(rates.values())
    print(f"float64 matmul: jax {rates['jax']:.1f} GFLOP/s, numpy {rates['numpy']:.1f} GFLOP/s; floor uses {rate:.1f}")
    header = (
        f"{'n':>4} {'L':>3} {'d_x':>3} {'d':>2} {'m':>5} {'method':>10} {'GFLOP':>7} {'seconds':>8} "
        f"{'GFLOP/s':>8} {'floor s':>8} {'x floor':>7} {'compile':>7} {'peak GiB':>8}"
    )
    print(header)
    for n, length, dx, d, m, methods in GRID + (BIG if args.big else []):
        for method in methods:
            cmd = [
                sys.executable,
                __file__,
                "--repeats",
                str(args.repeats),
                "--one",
                *map(str, (n, length, dx, d, m)),
                method,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                print(f"{n:>4} {length:>3} {dx:>3} {d:>2} {m:>5} {method:>10}  failed: {proc.stderr.strip()[-200:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            floor = r["gflop"] / rate
            print(
                f"{n:>4} {length:>3} {dx:>3} {d:>2} {m:>5} {method:>10} {r['gflop']:>7.1f} {r['seconds']:>8.3f} "
                f"{r['gflop'] / r['seconds']:>8.1f} {floor:>8.3f} {r['seconds'] / floor:>7.2f} "
                f"{r['compile_seconds']:>7.2f} {r['peak_gib']:>8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
