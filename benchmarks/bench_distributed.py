"""Kernels and their extreme eigenvalues on several processes (jax.distributed): time and memory per process.

Each run starts `processes` local CPU processes (ntk_rnn.batching.launch.launch_local: 127.0.0.1, gloo collectives, one
CPU device each) running `ntk-rnn kernel` (python -m ntk_rnn.apps.cli) on the paper's RNN and synthetic data:

- output "sharded": the row-sharded kernel, then lambda_min and lambda_max of it by LOBPCG/ARPACK whose
  products gather K_k V from every process;
- output "npy": the kernel written to a file, each process its rows, chunk by chunk;
- "matrix-free": lambda_min and lambda_max from products J (J^T V), the samples split over the processes.

It reports process 0's seconds (the kernel, and all of it), every process's peak resident memory (ru_maxrss)
and the kernel's size. Weak scaling grows n like sqrt(processes), so that every process holds the same share
of rows x columns; strong scaling keeps n. One process runs under jax.distributed too; the plain one-process
path (no jax.distributed, output numpy) is `benchmarks/bench_ntk.py`'s.

On this 2-core machine the processes share the cores, so no speed-up is expected: the numbers show the
overhead of splitting and the memory per process.

    python benchmarks/bench_distributed.py                       # the default grid (about 10 min on 2 cores)
    python benchmarks/bench_distributed.py --processes 1 2 4 --n 256 --outputs sharded
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from ntk_rnn.batching.launch import launch_local

LENGTH, DX, SEED = 16, 8, 0


def run(processes: int, n: int, width: int, output: str, timeout: float) -> dict:
    """One launch: `processes` processes, n sequences, width m, output "sharded", "npy" or "matrix-free"."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "ntk_rnn.apps.cli", "kernel", "--n", str(n), "--length", str(LENGTH),
                   "--input-dim", str(DX), "--width", str(width), "--seed", str(SEED)]  # fmt: skip
        if output == "matrix-free":
            command.append("--matrix-free")
        else:
            command += ["--output", output] + (["--path", f"{tmp}/K.npy"] if output == "npy" else [])
        start = time.perf_counter()
        stdout = launch_local(command, processes, timeout, env={"TQDM_DISABLE": "1"})[0]
        wall = time.perf_counter() - start
    summary = json.loads(stdout[stdout.index("{\n") :])
    rows = summary["shape"][0]
    return {
        "processes": processes, "n": n, "m": width, "rows": rows, "output": output,
        "kernel_gib": round(8 * rows**2 / 2**30, 4), "share_gib": round(8 * rows**2 / processes / 2**30, 4),
        "kernel_seconds": summary.get("kernel_seconds"), "seconds": summary["seconds"],
        "launch_seconds": round(wall, 2), "peak_rss_gib": summary["peak_rss_gib"],
        "lambda_min": summary.get("lambda_min"), "lambda_max": summary.get("lambda_max"),
        "matvecs": summary.get("matvecs"),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--n", type=int, nargs="+", default=[128], help="n at one process (weak) / every count (strong)"
    )
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--outputs", nargs="+", default=["sharded", "npy", "matrix-free"])
    parser.add_argument("--scaling", choices=("weak", "strong", "both"), default="both")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    runs = []
    for base in args.n:
        for processes in args.processes:
            sizes = []
            if args.scaling in ("weak", "both"):
                sizes.append(("weak", processes * math.ceil(base * math.sqrt(processes) / processes)))
            if args.scaling in ("strong", "both") and processes > 1:
                sizes.append(("strong", processes * math.ceil(base / processes)))
            for scaling, n in sizes:
                for output in args.outputs:
                    row = {"scaling": scaling, **run(processes, n, args.width, output, args.timeout)}
                    runs.append(row)
                    print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
