"""Matrix-free extreme eigenvalues (ntk_rnn.eigen.matfree) against dense eigvalsh of the structured kernel.

The model is the paper's RNN (relu, only W trained, positions 1..L-1, float64) on the paper's synthetic
data (`ntk_rnn.synthetic_sequences`, delta = 0.5), d_x = 8, d = 1. For each size it runs one fresh
subprocess and reports:

- dense: `empirical_ntk` then `scipy.linalg.eigvalsh` (seconds for each), the kernel's condition number;
- matrix-free: `ntk_extreme_eigenvalues` (seconds, products v -> K v spent, kernel columns read for the
  preconditioner, tol = 1e-10), the relative errors of its lambda_min and lambda_max against the dense
  ones, and the ratio of its time to the dense path's (kernel + eigvalsh) in the same run;
- the peak resident memory of the process (ru_maxrss, GiB): dense and matrix-free run in separate
  processes, so each has its own.

Sizes whose dense kernel and LAPACK's copy (16 N^2 bytes) exceed --dense-gib run matrix-free only.

    python benchmarks/bench_matfree.py                  # the default grid
    python benchmarks/bench_matfree.py --sizes 64,16,256 1024,16,256   # other (n, L, m)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

GRID = [(32, 16, 256), (64, 16, 256), (128, 16, 512), (256, 16, 512), (512, 16, 512)]  # (n, L, m)
DX, D, SEED = 8, 1, 0


def run_one(n: int, length: int, m: int, mode: str) -> dict:
    """One size in this process: mode "dense" (kernel + eigvalsh) or "matfree"."""
    import jax
    import scipy.linalg

    import ntk_rnn
    from ntk_rnn.eigen.matfree import ntk_extreme_eigenvalues

    jax.config.update("jax_enable_x64", True)
    cfg = ntk_rnn.RNNConfig(width=m, input_dim=DX, output_dim=D)
    params = ntk_rnn.init_params(cfg, key=jax.random.key(SEED))
    x = ntk_rnn.synthetic_sequences(key=jax.random.key(SEED + 1), n=n, length=length, input_dim=DX, delta=0.5).x
    out: dict = {}
    start = time.perf_counter()
    if mode == "dense":
        K = ntk_rnn.empirical_ntk(cfg, params, x)
        out["kernel_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        eig = scipy.linalg.eigvalsh(K, overwrite_a=True, check_finite=False)
        out.update(eigh_seconds=time.perf_counter() - start, lambda_min=float(eig[0]), lambda_max=float(eig[-1]))
    else:
        result = ntk_extreme_eigenvalues(cfg, params, x, key=jax.random.key(SEED + 2))
        out.update(seconds=time.perf_counter() - start, lambda_min=result.lambda_min,
                   lambda_max=result.lambda_max, matvecs=result.matvecs, columns=result.columns)  # fmt: skip
    out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return out


def _subprocess(n: int, length: int, m: int, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--one", str(n), str(length), str(m), mode]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=[f"{n},{L},{m}" for n, L, m in GRID], help="n,L,m ...")
    parser.add_argument("--dense-gib", type=float, default=16.0, help="largest dense kernel + copy, GiB")
    parser.add_argument("--one", nargs=4, metavar=("N", "L", "M", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        n, length, m, mode = args.one
        print(json.dumps(run_one(int(n), int(length), int(m), mode)))
        return

    print("| n | L | m | N = n(L-1) | cond(K) | dense: kernel s + eigvalsh s | dense peak GiB | matrix-free s | "
          "products | columns | matrix-free peak GiB | rel. err lambda_min | rel. err lambda_max | "
          "matrix-free / dense |")  # fmt: skip
    print("|" + "---|" * 14)
    for n, length, m in (map(int, size.split(",")) for size in args.sizes):
        size = n * (length - 1) * D
        dense_gib = 16 * size**2 / 2**30
        too_big = {"error": f"not run: needs {dense_gib:.0f} GiB"}
        dense = _subprocess(n, length, m, "dense") if dense_gib <= args.dense_gib else too_big
        mf = _subprocess(n, length, m, "matfree")
        cells = [str(n), str(length), str(m), str(size)]
        if "error" in dense:
            cells += ["", dense["error"], ""]
        else:
            seconds = f"{dense['kernel_seconds']:.2f} + {dense['eigh_seconds']:.2f}"
            cells += [f"{dense['lambda_max'] / dense['lambda_min']:.2g}", seconds, f"{dense['peak_gib']:.2f}"]
        if "error" in mf:
            cells += [mf["error"], "", "", "", "", "", ""]
        else:
            cells += [f"{mf['seconds']:.1f}", str(mf["matvecs"]), str(mf["columns"]), f"{mf['peak_gib']:.2f}"]
            if "error" in dense:
                cells += [f"(lambda_min {mf['lambda_min']:.4g})", f"(lambda_max {mf['lambda_max']:.4g})", ""]
            else:
                cells += [f"{abs(mf[k] / dense[k] - 1):.1e}" for k in ("lambda_min", "lambda_max")]
                cells.append(f"{mf['seconds'] / (dense['kernel_seconds'] + dense['eigh_seconds']):.2f}")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
