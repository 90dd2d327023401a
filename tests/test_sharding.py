"""The structured kernel sharded over several JAX devices equals the single-device one.

XLA_FLAGS must be set before jax is imported, so the check runs in a subprocess with 4 CPU devices.
"""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    import numpy as np
    import ntk_rnn
    from ntk_rnn import kernel

    # record, for every sharded round, how many devices hold a piece of its output
    used = []
    for name in ("_sharded_pair_kernel", "_sharded_chunk_kernel"):
        def wrapped(*args, _fn=getattr(kernel, name), _name=name):
            out = _fn(*args)
            used.append([_name, len(out.sharding.device_set), len({s.device for s in out.addressable_shards})])
            return out
        setattr(kernel, name, wrapped)

    def single_device(*args, **kwargs):
        mesh = kernel._device_mesh
        kernel._device_mesh = lambda: None
        try:
            return ntk_rnn.empirical_ntk(*args, **kwargs)
        finally:
            kernel._device_mesh = mesh

    cases = [  # (options, n1, n2, positions, max_bytes): 7, 5 and 9 samples are not multiples of 4;
        # the small budget takes the low-memory path (each device computes its chunks' backward vectors)
        ({}, 7, None, None, None),
        ({"readout": "last", "trainable": ("W", "A", "B")}, 9, 6, None, None),
        ({"sigma_b2": 0.3, "activation": "tanh", "trainable": ("W", "b")}, 7, None, (3, 1), 100000),
    ]
    results = []
    for options, n1, n2, positions, max_bytes in cases:
        cfg = ntk_rnn.RNNConfig(width=32, input_dim=3, output_dim=2, **options)
        params = ntk_rnn.init_params(cfg, jax.random.key(0))
        x1 = jax.random.normal(jax.random.key(1), (n1, 5, 3))
        x2 = None if n2 is None else jax.random.normal(jax.random.key(2), (n2, 4, 3))
        kw = {"positions": positions} | ({} if max_bytes is None else {"max_bytes": max_bytes})
        before = len(used)
        sharded = ntk_rnn.empirical_ntk(cfg, params, x1, x2, **kw)
        rounds = used[before:]
        one = single_device(cfg, params, x1, x2, **kw)
        scale = np.abs(one).max()
        results.append({
            "case": repr(options),
            "shape": list(sharded.shape),
            "vs_single": float(np.abs(sharded - one).max() / scale),
            "rounds": rounds,
        })
    print(json.dumps({"device_count": jax.device_count(), "results": results}))
    """
)


def test_sharded_kernel_equals_single_device_on_four_cpu_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["device_count"] == 4
    assert len(report["results"]) == 3
    kinds = set()
    for r in report["results"]:
        assert r["vs_single"] < 1e-12, r
        assert r["rounds"], f"no sharded round ran for {r['case']}"
        for name, devices, shards in r["rounds"]:
            assert devices == 4 and shards == 4, r
            kinds.add(name)
    # both the replicated-factor path and the low-memory per-chunk path ran
    assert kinds == {"_sharded_pair_kernel", "_sharded_chunk_kernel"}
