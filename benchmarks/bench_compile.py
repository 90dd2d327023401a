"""What a kernel compiles, and for how long, as a user changes one thing at a time (CPU or GPU).

Each line: the change, the XLA compilations it triggered (jax.monitoring's backend_compile events, with the
kernel programs' among them) and the seconds of the call. The first call of each model compiles everything;
the later calls show what the variances and widths cost. n=32, L=16, d_x=8, float64.

    python benchmarks/bench_compile.py
"""

from __future__ import annotations

import time

import jax
import numpy as np

import ntk_rnn

KERNEL_PROGRAMS = ("_backward_vectors", "_pair_kernel", "cell_factors", "cell_block", "_limit_block")


def main() -> None:
    compiled: list[str] = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(str(kwargs.get("fun_name", "?")))

    jax.monitoring.register_event_duration_secs_listener(listen)
    x = np.random.default_rng(0).normal(size=(32, 16, 8)) / np.sqrt(8)
    steps = [
        ("elman m=1024, first call", dict(width=1024)),
        ("elman m=1024, sigma_w2 = 1.5", dict(width=1024, sigma_w2=1.5)),
        ("elman m=1024, sigma_w2 = 2.5, sigma_v2 = 0.5", dict(width=1024, sigma_w2=2.5, sigma_v2=0.5)),
        ("elman m=1000 (bucket 1024)", dict(width=1000)),
        ("elman m=600 (same bucket)", dict(width=600)),
        ("elman m=513 (same bucket)", dict(width=513)),
        ("elman m=300 (a new bucket, 512)", dict(width=300)),
        ("gru m=256, first call", dict(width=256, cell="gru")),
        ("gru m=256, sigma_w2 = 1.0", dict(width=256, cell="gru", sigma_w2=1.0)),
        ("gru m=200 (bucket 256)", dict(width=200, cell="gru")),
        ("lstm m=256, first call", dict(width=256, cell="lstm")),
        ("lstm m=256, sigma_w2 = 1.0", dict(width=256, cell="lstm", sigma_w2=1.0)),
        ("limit, first call", dict(width=1, limit=True)),
        ("limit, sigma_w2 = 1.5", dict(width=1, limit=True, sigma_w2=1.5)),
    ]
    print(f"{'change':<46} {'compiles':>8} {'kernel':>6} {'seconds':>8}")
    for label, options in steps:
        limit = options.pop("limit", False)
        cfg = ntk_rnn.RNNConfig(input_dim=8, **options)
        params = None if limit else ntk_rnn.init_params(cfg, key=jax.random.key(0))
        compiled.clear()
        start = time.perf_counter()
        if limit:
            ntk_rnn.limit_ntk(cfg, x)
        else:
            ntk_rnn.empirical_ntk(cfg, params, x)
        seconds = time.perf_counter() - start
        kernel = sum(any(p in name for p in KERNEL_PROGRAMS) for name in compiled)
        print(f"{label:<46} {len(compiled):>8} {kernel:>6} {seconds:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
