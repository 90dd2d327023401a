"""One process of the multi-process tests (tests/ntk_rnn/test_distributed.py), started by
ntk_rnn.batching.launch.launch_local. It runs the given cases in order, writes what they computed under --out and
prints one JSON line {case: report}; the test compares it with one process. Several cases share one launch, so
that the processes import JAX and join jax.distributed once (memory first: its peaks are measured in a process
that has computed nothing else yet, as in a launch of its own).

    python distributed_worker.py {kernels,memory}... --out DIR --coordinator HOST:PORT --num-processes N --process-id K
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ntk_rnn.batching.launch import initialize


def cases():
    """(name, function, cfg, params, x, kwargs) of the kernels the tests compare (the same in the test). The
    draws are numpy's: every process of a run would otherwise compile a JAX sampler for each shape."""
    import numpy as np

    import ntk_rnn

    elman = ntk_rnn.RNNConfig(width=16, input_dim=3, output_dim=2, trainable=("W", "A", "B"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 6, 3))
    lengths = 1 + rng.integers(0, 6, 16)
    p_elman = {k: rng.standard_normal(shape) * elman.init_std[k] for k, shape in elman.param_shapes.items()}
    return [
        ("elman", ntk_rnn.empirical_ntk, elman, p_elman, x, {"max_bytes": 160_000}),  # chunks of 3 samples
        ("limit", ntk_rnn.limit_ntk, elman.replace(readout="mean"), None, x, {"lengths1": lengths}),
    ]


def kernels(out: Path) -> dict:
    import jax
    import numpy as np

    from ntk_rnn.eigen.matfree import ntk_extreme_eigenvalues
    from ntk_rnn.eigen.sharded import kernel_eigenpairs

    rank = jax.process_index()
    report: dict = {"processes": jax.process_count(), "devices": jax.device_count()}
    for name, fn, cfg, params, x, kwargs in cases():
        args = (cfg, x) if params is None else (cfg, params, x)
        K = fn(*args, output="sharded", **kwargs)
        shards = {f"rows_{s.index[0].start}": np.asarray(s.data) for s in K.addressable_shards}
        np.savez(out / f"{name}.{rank}.npz", **shards)
        fn(*args, output="npy", path=out / f"{name}.npy", **kwargs)
        if name == "elman":
            pairs = kernel_eigenpairs(K, k=2, key=jax.random.key(3))
            report["sharded"] = {"smallest": pairs.smallest.tolist(), "largest": pairs.largest.tolist()}
            if jax.process_count() == 2:  # the sample-split products; 4 processes are checked on the kernel
                matfree = ntk_extreme_eigenvalues(cfg, params, x, key=jax.random.key(3))
                report["matfree"] = [matfree.lambda_min, matfree.lambda_max]
    try:  # 14 samples do not split over 4 devices
        cfg, params, x = cases()[0][2:5]
        from ntk_rnn import empirical_ntk

        empirical_ntk(cfg, params, x[:14], output="sharded")
        report["uneven"] = "no error"
    except ValueError as err:
        report["uneven"] = str(err)
    return report


def memory(out: Path) -> dict:
    """Peak resident memory of a kernel call beyond the resident memory before it, for each output, after one
    unmeasured call that compiles. The peak is reset through /proc/self/clear_refs."""
    import numpy as np

    import ntk_rnn

    cfg = ntk_rnn.RNNConfig(width=8, input_dim=3, output_dim=1)
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}
    n = 448  # a 103 MB kernel: 3584 rows
    x = rng.standard_normal((n, 9, 3))
    report = {"kernel_bytes": 8 * (n * 8) ** 2}
    for output in ("npy", "sharded", "npy"):
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        before = _status()["VmRSS"]
        K = ntk_rnn.empirical_ntk(
            cfg, params, x, output=output, path=out / "memory.npy" if output == "npy" else None, max_bytes=2**24
        )
        report[output] = _status()["VmHWM"] - before
        del K
    return report


def _status() -> dict[str, int]:
    """Vm* lines of /proc/self/status in bytes."""
    with open("/proc/self/status") as status:
        return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in status) if k.startswith("Vm")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", nargs="+", choices=("kernels", "memory"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--process-id", type=int, required=True)
    args = parser.parse_args()
    initialize(args.coordinator, args.num_processes, args.process_id)
    report = {case: kernels(args.out) if case == "kernels" else memory(args.out) for case in args.case}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
