"""Time the infinite-width kernel (ntk_rnn.limit_ntk) over the number of sequences n and their length L.

The model is the paper's RNN (relu, "paper" parameterization, W trained, readout "all", positions
1..L-1, float64) on the paper's synthetic data, d_x = 8. The kernel has (n (L-1))^2 entries and its
cost grows as n^2 L^2. For each size the script prints the first call's seconds (compilation
included), the median of --repeats further calls, and the kernel's size. Everything runs in this one
process, on whatever JAX sees (the CPU here).

    python benchmarks/bench_limit.py                       # the default grid (under a minute on 2 cores)
    python benchmarks/bench_limit.py --sizes 1024,16 512,64
"""

from __future__ import annotations

import argparse
import statistics
import time

GRID = [(64, 16), (128, 16), (256, 16), (256, 32), (512, 32)]  # (n, L)
DX = 8


def time_one(n: int, length: int, repeats: int) -> dict:
    """The first call and the median of `repeats` more, in seconds, for one (n, L)."""
    import jax

    import ntk_rnn

    x = ntk_rnn.synthetic_sequences(key=jax.random.key(0), n=n, length=length, input_dim=DX).x
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=DX)  # the width plays no role
    start = time.perf_counter()
    kernel = ntk_rnn.limit_ntk(cfg, x)
    first = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        ntk_rnn.limit_ntk(cfg, x)
        seconds.append(time.perf_counter() - start)
    return {"n": n, "L": length, "rows": kernel.shape[0],
            "GiB": kernel.nbytes / 2**30, "first_s": first, "median_s": statistics.median(seconds),
            "repeats": repeats}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", metavar="N,L", help="(n, L) pairs instead of the default grid")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    try:
        sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes] if args.sizes else GRID
    except ValueError:
        parser.error("--sizes takes pairs N,L of integers, e.g. 256,32")
    if any(len(s) != 2 or min(s) < 2 for s in sizes):
        parser.error("--sizes takes pairs N,L with N >= 2 and L >= 2, e.g. 256,32")

    import jax

    jax.config.update("jax_enable_x64", True)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s)")
    print(f"{'n':>5} {'L':>4} {'rows':>6} {'GiB':>6} {'first s':>8} {'median s':>9}")
    rows = []
    for n, length in sizes:
        row = time_one(n, length, args.repeats)
        rows.append(row)
        print(f"{n:5d} {length:4d} {row['rows']:6d} {row['GiB']:6.2f} {row['first_s']:8.2f} {row['median_s']:9.2f}",
              flush=True)  # fmt: skip
    if args.json:
        from ntk_rnn.storage import write_json

        write_json({"jax": jax.__version__, "platform": jax.devices()[0].platform, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
