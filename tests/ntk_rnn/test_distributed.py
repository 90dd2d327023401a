"""Kernels and eigenvalues over several devices and processes equal the single-process ones.

Multi-process runs start local CPU processes with jax.distributed on 127.0.0.1 (gloo collectives) through
ntk_rnn.batching.launch.launch_local, which kills them all when one fails or the timeout passes. Several devices in one
process need XLA_FLAGS before jax is imported, so that check runs in a subprocess too.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.linalg

import ntk_rnn
from ntk_rnn.batching import distributed
from ntk_rnn.batching.launch import launch_local

sys.path.insert(0, str(Path(__file__).parent))
from distributed_worker import cases

WORKER = str(Path(__file__).parent / "distributed_worker.py")
TIMEOUT = 300  # seconds for one multi-process run; a hung collective fails the test instead of CI


def _single(name):
    (case,) = [c for c in cases() if c[0] == name]
    _, fn, cfg, params, x, kwargs = case
    return fn(*((cfg, x) if params is None else (cfg, params, x)), **kwargs)


def _report(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _assemble(directory: Path, name: str, processes: int, shape) -> np.ndarray:
    """The row-sharded kernel from the shards every process saved."""
    out = np.full(shape, np.nan)
    for rank in range(processes):
        with np.load(directory / f"{name}.{rank}.npz") as shards:
            for key in shards.files:
                start = int(key.split("_")[1])
                out[start : start + shards[key].shape[0]] = shards[key]
    return out


def _launch(out: Path, processes: int, *cases: str) -> list[dict]:
    """The reports {case: report} of the processes of one launch of the worker running the cases in order."""
    return [_report(s) for s in launch_local([sys.executable, WORKER, *cases, "--out", str(out)], processes, TIMEOUT)]


def _check_kernels(out: Path, processes: int, reports: list[dict]) -> None:
    """Row-sharded and .npy kernels (the Elman §2 path, and the limit kernel with lengths) to 1e-12, and the extreme
    eigenvalues of the sharded kernel to 1e-8 on 2 and 4 processes, and of the sample-split matrix-free operator
    on 2."""
    assert all(r["processes"] == processes and r["devices"] == processes for r in reports)
    for name in ("elman", "limit"):
        K = _single(name)
        scale = np.abs(K).max()
        sharded = _assemble(out, name, processes, K.shape)
        assert np.abs(sharded - K).max() <= 1e-12 * scale, name
        written = np.load(out / f"{name}.npy")
        assert written.shape == K.shape and np.abs(written - K).max() <= 1e-12 * scale, name
    assert not list(out.glob(".*.partial"))  # renamed into place
    eig = scipy.linalg.eigvalsh(_single("elman"))
    for r in reports:  # every process returns the same numbers
        assert r["sharded"] == reports[0]["sharded"] and r.get("matfree") == reports[0].get("matfree")
    smallest, largest = reports[0]["sharded"]["smallest"], reports[0]["sharded"]["largest"]
    assert np.allclose(smallest, eig[:2], rtol=1e-8, atol=0)
    assert np.allclose(largest, eig[-2:][::-1], rtol=1e-8, atol=0) or np.allclose(largest, eig[-2:], rtol=1e-8, atol=0)
    if processes == 2:
        lam_min, lam_max = reports[0]["matfree"]
        assert abs(lam_min - eig[0]) <= 1e-8 * eig[0] and abs(lam_max - eig[-1]) <= 1e-8 * eig[-1]
    if processes == 4:
        assert "n1=14 samples" in reports[0]["uneven"]
    else:
        assert reports[0]["uneven"] == "no error"


def test_two_processes_equal_one_process_and_each_holds_only_its_share(tmp_path):
    """One launch of two processes (they import JAX and join jax.distributed once for both checks):

    - the kernels and eigenvalues as _check_kernels says;
    - the peak memory of a kernel call beyond what the process held before stays below the whole kernel (103 MB)
      for the row-sharded output (each holds its half) and far below it for the .npy file (each holds one chunk
      at a time). It is measured first, before the processes compute anything else."""
    reports = _launch(tmp_path, 2, "memory", "kernels")
    _check_kernels(tmp_path, 2, [r["kernels"] for r in reports])
    memory = [r["memory"] for r in reports]
    whole = memory[0]["kernel_bytes"]
    for r in memory:
        assert r["sharded"] < 0.8 * whole, r
        assert r["npy"] < 0.5 * whole, r
    print({k: v / 2**20 for k, v in memory[0].items()})


def test_four_processes_equal_one_process(tmp_path):
    """The kernels and eigenvalues on four processes as _check_kernels says, and 14 samples are refused."""
    _check_kernels(tmp_path, 4, [r["kernels"] for r in _launch(tmp_path, 4, "kernels")])


# ----------------------------------------------------------------------------- one process


def test_outputs_equal_the_plain_kernel(tmp_path):
    """One process: the sharded jax.Array and the .npy file hold the same kernel as the numpy result, for the
    empirical and the limit kernel."""
    for name in ("elman", "limit"):
        (case,) = [c for c in cases() if c[0] == name]
        _, fn, cfg, params, x, kwargs = case
        args = (cfg, x) if params is None else (cfg, params, x)
        K = fn(*args, **kwargs)
        sharded = fn(*args, output="sharded", **kwargs)
        assert isinstance(sharded, jax.Array) and sharded.sharding.spec == jax.sharding.PartitionSpec("rows", None)
        assert np.abs(np.asarray(sharded) - K).max() <= 1e-12 * np.abs(K).max()
        written = fn(*args, output="npy", path=tmp_path / f"{name}.npy", **kwargs)
        assert isinstance(written, np.memmap) and not written.flags.writeable
        assert np.abs(written - K).max() <= 1e-12 * np.abs(K).max()


@pytest.mark.parametrize("symmetric", [False, True])
def test_plan_places_every_entry_once(symmetric):
    """Over 1..7 devices, with and without symmetry (blocks plus their mirrors), every kernel entry is computed
    or mirrored exactly once, and no chunk exceeds the budget unless it is one sample."""
    rows = np.array([2, 3, 1, 4, 2, 2, 3, 1, 5, 2, 1, 3, 2])
    total = int(rows.sum())
    for devices in range(1, 8):
        count = np.zeros((total, total), int)
        flops = 0
        for blocks in distributed.plan(rows, total, symmetric, devices, chunk_bytes=8 * 6 * total):
            for b in blocks:
                height = int(rows[b.rows].sum())
                width = total if b.cols is None else int(rows[b.cols].sum())
                assert 8 * height * width <= 8 * 6 * total or b.rows.stop - b.rows.start == 1
                count[b.row : b.row + height, b.col : b.col + width] += 1
                if b.mirror:
                    count[b.col : b.col + width, b.row : b.row + height] += 1
                flops += height * width
        assert (count == 1).all(), (devices, symmetric)
        if symmetric and devices >= 4:
            assert flops < 0.8 * total**2  # the mirrors save work


def test_chunks_cover_the_samples_within_the_budget():
    rows = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    parts = distributed.chunks(rows, 1, 7, columns=10, chunk_bytes=8 * 10 * 6)
    assert [(p.start, p.stop) for p in parts] == [(1, 4), (4, 5), (5, 6), (6, 7)]  # rows 1+4+1, 5, 9 (alone), 2
    assert distributed.panel_bounds(10, 4).tolist() == [0, 2, 5, 7, 10]


def test_bad_outputs_are_refused_before_any_work(tmp_path, monkeypatch):
    cfg = ntk_rnn.RNNConfig(width=8, input_dim=3)
    params = ntk_rnn.init_params(cfg, key=jax.random.key(0))
    x = np.ones((4, 3, 3))
    calls = []
    monkeypatch.setattr(distributed, "kernel_rows", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError, match="output must be one of"):
        ntk_rnn.empirical_ntk(cfg, params, x, output="hdf5")
    with pytest.raises(ValueError, match="needs path"):
        ntk_rnn.empirical_ntk(cfg, params, x, output="npy")
    with pytest.raises(ValueError, match=r"path must end in \.npy"):
        ntk_rnn.empirical_ntk(cfg, params, x, output="npy", path=tmp_path / "k.bin")
    with pytest.raises(ValueError, match="does not exist"):
        ntk_rnn.limit_ntk(cfg, x, output="npy", path=tmp_path / "missing" / "k.npy")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # root can write anywhere
        with pytest.raises(ValueError, match="is not writable"):
            ntk_rnn.empirical_ntk(cfg, params, x, output="npy", path=locked / "k.npy")
    with pytest.raises(ValueError, match="path is only for output='npy'"):
        ntk_rnn.empirical_ntk(cfg, params, x, path=tmp_path / "k.npy")
    monkeypatch.setattr(distributed, "host_bytes_available", lambda: 100)  # the kernel is 8 x 8 x 8 bytes
    with pytest.raises(ValueError, match=r"larger than this host's available memory"):
        ntk_rnn.empirical_ntk(cfg, params, x)
    with pytest.raises(ValueError, match=r"larger than .*'s memory"):
        ntk_rnn.limit_ntk(cfg, x, output="sharded")
    monkeypatch.setattr(distributed.shutil, "disk_usage", lambda p: type("Usage", (), {"free": 100}))
    with pytest.raises(ValueError, match="does not fit the"):
        ntk_rnn.empirical_ntk(cfg, params, x, output="npy", path=tmp_path / "k.npy")
    assert not calls and not list(tmp_path.glob("*.npy"))


FOUR_DEVICES = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    import jax
    from distributed_worker import cases
    from ntk_rnn.eigen.sharded import KernelOperator, split_ntk_matmat

    assert jax.device_count() == 4
    out = {}
    for name, fn, cfg, params, x, kwargs in cases():
        args = (cfg, x) if params is None else (cfg, params, x)
        out[name] = fn(*args, **kwargs)
        sharded = fn(*args, output="sharded", **kwargs)
        out[name + "_sharded"], out[name + "_shards"] = np.asarray(sharded), len(sharded.addressable_shards)
    name, fn, cfg, params, x, kwargs = cases()[0]
    out["elman_x2"] = fn(cfg, params, x, x[:6], **kwargs)
    out["elman_x2_sharded"] = np.asarray(fn(cfg, params, x, x[:6], output="sharded", **kwargs))
    V = np.asarray(jax.random.normal(jax.random.key(4), (out["elman"].shape[0], 3)))
    out["KV_split"] = np.asarray(split_ntk_matmat(cfg, params, x, tuple(range(1, 6)), None, V))
    out["KV_operator"] = KernelOperator(fn(cfg, params, x, output="sharded", **kwargs)) @ V
    out["V"] = V
    np.savez(sys.argv[1], **out)
    """
)


def test_four_devices_in_one_process_equal_one_device(tmp_path):
    """Four CPU devices in one process: the numpy kernel (panels computed in parallel threads), the sharded one
    (one shard per device) and the products K V of the sharded kernel and of the sample-split J J^T, against one
    device to 1e-12."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    result = tmp_path / "four.npz"
    proc = subprocess.run([sys.executable, "-c", FOUR_DEVICES, str(result), str(Path(__file__).parent)], env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(result) as four:
        for name in ("elman", "limit"):
            K = _single(name)
            for kind in ("", "_sharded"):
                assert np.abs(four[name + kind] - K).max() <= 1e-12 * np.abs(K).max(), name + kind
            assert int(four[name + "_shards"]) == 4
        (_, _, cfg, params, x, kwargs) = cases()[0]
        K = ntk_rnn.empirical_ntk(cfg, params, x, x[:6], **kwargs)
        for kind in ("", "_sharded"):
            assert np.abs(four["elman_x2" + kind] - K).max() <= 1e-12 * np.abs(K).max(), kind
        K, V = _single("elman"), four["V"]
        for kind in ("KV_split", "KV_operator"):
            assert np.abs(four[kind] - K @ V).max() <= 1e-12 * np.abs(K @ V).max(), kind
