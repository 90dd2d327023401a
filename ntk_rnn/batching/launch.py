"""Starting jax.distributed: from a cluster's settings, from explicit arguments, or as local CPU processes
(docs/theory.md §12, docs/guide/scale.md)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence

import jax


def launch_local(command: Sequence[str], processes: int, timeout: float, env: dict | None = None) -> list[str]:
    """Run a jax.distributed program as `processes` CPU processes on this machine, for trying it out and for
    tests: process k runs `command --coordinator 127.0.0.1:PORT --num-processes N --process-id k` (gloo
    collectives, one CPU device each). Returns their stdouts in process order. If one fails or `timeout`
    (seconds) passes, all are killed and RuntimeError carries the failing process's stderr."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **(env or {}), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    flags = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes)]
    with contextlib.ExitStack() as stack:
        streams = [tuple(stack.enter_context(tempfile.TemporaryFile("w+")) for _ in "oe") for _ in range(processes)]
        procs = [subprocess.Popen([*command, *flags, "--process-id", str(k)], env=env, stdout=out, stderr=err)
                 for k, (out, err) in enumerate(streams)]  # fmt: skip

        def read(k: int, which: int) -> str:
            streams[k][which].seek(0)
            return streams[k][which].read()

        try:
            deadline = time.monotonic() + timeout
            while (failed := [k for k, proc in enumerate(procs) if proc.poll()]) or any(
                proc.returncode is None for proc in procs
            ):
                if failed:
                    raise RuntimeError(f"process {failed[0]} of {processes} exited with "
                                       f"{procs[failed[0]].returncode}:\n{read(failed[0], 1)[-4000:]}")  # fmt: skip
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {processes} processes did not finish in {timeout} s; process 0 said:\n"
                                       f"{read(0, 1)[-4000:]}")  # fmt: skip
                time.sleep(0.05)
            return [read(k, 0) for k in range(processes)]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """jax.distributed.initialize with explicit arguments, or with none (JAX then reads SLURM's, Open MPI's or
    JAX_COORDINATOR_ADDRESS's settings). On CPU the collectives are gloo's."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)
