"""Kernels whose rows are split over every device of every process (jax.distributed; docs/theory.md §12).

A kernel K (N1, N2) whose rows are grouped by the samples of x1 (`empirical_ntk`, `limit_ntk`,
`nngp_kernel`) is cut into row panels of consecutive samples, panel k for device k of `jax.devices()`
(all processes' devices, in JAX's global order). Device k computes its panel, in chunks of samples of at most
`chunk_bytes` of output each; for K(x, x) it computes only the blocks (k, k + r mod D), r <= D // 2, and the
rest of its panel are transposes of blocks other devices computed (`plan`). Every process calls with the same
arguments (SPMD, as everything under jax.distributed). The output is chosen by `output`:

- "numpy": the whole kernel as one host array; one process only (its devices compute in parallel threads).
- "sharded": a global jax.Array (N1, N2) with NamedSharding(Mesh(jax.devices(), ("rows",)), P("rows", None)):
  each device holds only its panel, so n1 must split evenly over the devices (and so must the rows, with
  lengths).
- "npy": a float64 .npy file at `path`, on a file system every process can write. Process 0 creates
  `.NAME.partial` beside it, every process writes its rows chunk by chunk (positioned writes), and once all
  have written, process 0 renames it into place; it comes back memory-mapped read-only (np.memmap). No process
  holds more than one chunk of the kernel.

All checks (output, path, sizes against host, device and disk memory) run before any work starts.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from ntk_rnn.network.checks import InputPair
from ntk_rnn.network.config import RNNConfig
from ntk_rnn.network.model import real_rows

OUTPUTS = ("numpy", "sharded", "npy")
"""The outputs of a batched kernel (the `output` argument; module docstring)."""
ROWS = "rows"  # the mesh axis the rows are split over
PARTIAL_SUFFIX = ".partial"
CHUNK_BYTES = 2**29  # output bytes per chunk where the caller has no memory budget of its own

Panel = Callable[[slice, slice | None, jax.Device], np.ndarray]  # samples of x1, of x2 (None: all), device -> K block


def check_output(output: str, path) -> Path | None:
    """The output argument (one of OUTPUTS) and, for "npy", its path: a .npy name in an existing, writable
    directory. Returns the path, or None."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if output != "npy":
        if path is not None:
            raise ValueError(f"path is only for output='npy', got path={path!r} with output={output!r}")
        return None
    if path is None:
        raise ValueError("output='npy' needs path: the .npy file to write, on a file system every process can write")
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"path must end in .npy, got {str(path)!r}")
    if not path.parent.is_dir():
        raise ValueError(f"path's directory {str(path.parent)!r} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"path's directory {str(path.parent)!r} is not writable")
    return path


def is_split(output: str) -> bool:
    """Whether a kernel with this output goes through kernel_rows (else the plain one-device loop)."""
    return output != "numpy" or jax.device_count() > 1


def rows_mesh() -> Mesh:
    """The 1-D mesh over all devices of all processes that kernels are row-sharded on."""
    return Mesh(np.asarray(jax.devices()), (ROWS,))


def host_bytes_available() -> int:
    """Bytes of host memory available now (MemAvailable), or the physical memory where that is unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_bytes(device: jax.Device) -> int:
    """Bytes of memory a device can hold: its allocator's limit (GPU), else the host's share per local device."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return host_bytes_available() // jax.local_device_count()


def check_kernel(rows: np.ndarray, columns: int, output: str, path: Path | None) -> None:
    """Refuse, before any work, a kernel of rows.sum() x columns float64 that the output cannot hold.

    rows: (n1,) rows of each sample of x1. Raises ValueError naming the limit that is exceeded.
    """
    total, processes, devices = int(rows.sum()), jax.process_count(), jax.device_count()
    nbytes = 8 * total * columns
    gib = f"{total} x {columns} float64 = {nbytes / 2**30:.3g} GiB"
    if output == "numpy":
        if processes > 1:
            raise ValueError(
                f"output='numpy' holds the whole kernel in one process, but there are {processes} "
                "processes; choose output='sharded' (a row-sharded jax.Array) or 'npy' (a file)"
            )
        if nbytes > host_bytes_available():
            raise ValueError(
                f"the kernel ({gib}) is larger than this host's available memory "
                f"({host_bytes_available() / 2**30:.3g} GiB); choose output='npy' or 'sharded'"
            )
    elif output == "sharded":
        if rows.size % devices:
            raise ValueError(
                f"output='sharded' splits the n1={rows.size} samples of x1 evenly over "
                f"jax.device_count()={devices} devices, which does not divide it; pad x1 to a "
                f"multiple of {devices} or choose output='npy'"
            )
        panels = rows.reshape(devices, -1).sum(axis=1)
        if np.any(panels != panels[0]):
            raise ValueError(
                f"output='sharded' needs equal rows per device, but the lengths give panels of "
                f"{sorted(set(panels.tolist()))} rows; choose output='npy'"
            )
        need = 8 * int(panels[0]) * columns
        for device in jax.local_devices():
            if need > device_bytes(device):
                raise ValueError(
                    f"a row panel of the kernel ({gib} over {devices} devices: "
                    f"{need / 2**30:.3g} GiB) is larger than {device}'s memory "
                    f"({device_bytes(device) / 2**30:.3g} GiB); use more devices or output='npy'"
                )
    else:
        free = shutil.disk_usage(path.parent).free
        if nbytes > free:
            raise ValueError(f"the kernel ({gib}) does not fit the {free / 2**30:.3g} GiB free at {str(path.parent)!r}")


def panel_bounds(n: int, devices: int) -> np.ndarray:
    """(devices + 1,) sample boundaries: device k gets samples [bounds[k], bounds[k+1]), as even as possible."""
    return np.asarray([k * n // devices for k in range(devices + 1)])


def chunks(rows: np.ndarray, start: int, stop: int, columns: int, chunk_bytes: int) -> list[slice]:
    """Consecutive sample slices covering [start, stop), each of at most chunk_bytes of output (at least one
    sample)."""
    out, begin, size = [], start, 0
    for i in range(start, stop):
        grow = 8 * int(rows[i]) * columns
        if i > begin and size + grow > chunk_bytes:
            out.append(slice(begin, i))
            begin, size = i, 0
        size += grow
    if stop > begin:
        out.append(slice(begin, stop))
    return out


@dataclasses.dataclass(frozen=True)
class Block:
    """One piece of work: the kernel of samples `rows` of x1 against samples `cols` of x2 (None: all of x2),
    placed at kernel row `row` and column `col`. mirror: also place its transpose at (col, row)."""

    rows: slice
    cols: slice | None
    row: int
    col: int
    mirror: bool = False


def plan(rows: np.ndarray, columns: int, symmetric: bool, devices: int, chunk_bytes: int) -> list[list[Block]]:
    """The blocks of each device, in row chunks of at most chunk_bytes of output.

    Device k owns the rows of samples [bounds[k], bounds[k+1]) (panel_bounds). Without symmetry it computes
    its whole row panel. With it (K(x, x)), the panels' column groups are the same sample ranges, and device k
    computes the blocks (k, k + r mod D) for r = 0..D//2 only; the blocks (k, k - r) for 1 <= r <= D - 1 - D//2
    are the transposes of blocks (k - r, k) that device k - r computed (mirror). About (D/2 + 1)/D of the flops
    of whole panels; the block on the diagonal takes the symmetric path when it is one chunk.
    """
    bounds = panel_bounds(rows.size, devices)
    offsets = np.concatenate([[0], np.cumsum(rows)])
    work = []
    for k in range(devices):
        if not symmetric or devices == 1:
            parts = chunks(rows, bounds[k], bounds[k + 1], columns, chunk_bytes)
            work.append([Block(part, None, int(offsets[part.start]), 0) for part in parts])
            continue
        blocks = []
        for r in range(devices // 2 + 1):
            j = (k + r) % devices
            cols = slice(int(bounds[j]), int(bounds[j + 1]))
            width = int(offsets[cols.stop] - offsets[cols.start])
            mirror = 1 <= r <= devices - 1 - devices // 2
            for part in chunks(rows, bounds[k], bounds[k + 1], width, chunk_bytes):
                blocks.append(Block(part, cols, int(offsets[part.start]), int(offsets[cols.start]), mirror))
        work.append(blocks)
    return work


@partial(jax.jit, donate_argnums=0)
def _put_block(panel: jax.Array, block: jax.Array, row, col) -> jax.Array:
    return jax.lax.dynamic_update_slice(panel, block, (row, col))


@partial(jax.jit, static_argnums=(1, 2), donate_argnums=0)
def _mirror(K: jax.Array, r: int, p: int) -> jax.Array:
    """Fill the blocks (k, k - r) of the row-sharded symmetric K ((D p, D p), panels of p rows) with the
    transposes of the blocks (k - r, k) held by device k - r: one ppermute of p x p floats per device."""
    mesh = rows_mesh()
    devices = mesh.size

    def local(panel):
        k = jax.lax.axis_index(ROWS)
        sent = jax.lax.dynamic_slice_in_dim(panel, ((k + r) % devices) * p, p, axis=1).T
        got = jax.lax.ppermute(sent, ROWS, [(j, (j + r) % devices) for j in range(devices)])
        return jax.lax.dynamic_update_slice_in_dim(panel, got, ((k - r) % devices) * p, axis=1)

    return jax.shard_map(local, mesh=mesh, in_specs=P(ROWS, None), out_specs=P(ROWS, None))(K)


def distribute(
    cfg: RNNConfig,
    pair: InputPair,
    whole: Callable[[], np.ndarray],
    panel: Panel,
    output: str,
    path,
    chunk_bytes: int,
) -> np.ndarray | jax.Array:
    """The kernel of the validated pair as `output` says: whole() (the plain loop) for "numpy" on one device,
    else kernel_rows of panel. Output, path and sizes are checked first."""
    path = check_output(output, path)
    n1, n2 = pair.x1.shape[0], pair.x2.shape[0]
    rows = real_rows(cfg, pair.pos1, pair.lengths1, n1).reshape(n1, -1).sum(axis=1)
    columns = int(real_rows(cfg, pair.pos2, pair.lengths2, n2).sum())
    check_kernel(rows, columns, output, path)
    if not is_split(output):
        return whole()
    return kernel_rows(panel, rows, columns, pair.symmetric, output, path, chunk_bytes)


def kernel_rows(
    panel: Panel, rows: np.ndarray, columns: int, symmetric: bool, output: str, path: Path | None, chunk_bytes: int
) -> np.ndarray | jax.Array:
    """The kernel from the blocks of `plan`, computed on every device of every process, as `output` says
    (module docstring; distribute checks the arguments). rows: (n1,) rows of each sample of x1; columns: N2;
    symmetric: K(x1, x1); chunk_bytes: output bytes computed at a time (at least one sample's rows)."""
    devices = jax.devices()
    total = int(rows.sum())
    work = plan(rows, columns, symmetric, len(devices), chunk_bytes)
    mine = [(k, d) for k, d in enumerate(devices) if d.process_index == jax.process_index()]
    quiet = {} if jax.process_index() == 0 else {"disable": True}
    bar = tqdm(total=sum(len(work[k]) for k, _ in mine), desc="kernel blocks", delay=3.0, leave=False, **quiet)

    def computed(k: int, device: jax.Device):
        """(Block, its kernel) for each block of device k, computed on the device."""
        for block in work[k]:
            with jax.default_device(device):
                values = panel(block.rows, block.cols, device)
            bar.update()
            yield block, values

    def run(fill: Callable[[int, jax.Device], object]) -> list:
        if len(mine) == 1:
            return [fill(*mine[0])]
        with ThreadPoolExecutor(len(mine)) as pool:  # JAX releases the GIL while a device computes
            return list(pool.map(lambda kd: fill(*kd), mine))

    try:
        if output == "numpy":
            out = np.empty((total, columns))

            def fill_host(k, device):
                for b, values in computed(k, device):
                    out[b.row : b.row + values.shape[0], b.col : b.col + values.shape[1]] = values
                    if b.mirror:
                        out[b.col : b.col + values.shape[1], b.row : b.row + values.shape[0]] = values.T

            run(fill_host)
            return out
        if output == "npy":
            return _write_npy(path, (total, columns), lambda file: run(partial(_fill_file, file, computed)))
        bounds = panel_bounds(rows.size, len(devices))
        offsets = np.concatenate([[0], np.cumsum(rows)])

        def fill_device(k, device):
            base = int(offsets[bounds[k]])
            buffer = jnp.zeros((int(offsets[bounds[k + 1]]) - base, columns), device=device)
            for b, values in computed(k, device):
                buffer = _put_block(buffer, jax.device_put(values, device), b.row - base, b.col)
            return buffer

        sharding = NamedSharding(rows_mesh(), P(ROWS, None))
        K = jax.make_array_from_single_device_arrays((total, columns), sharding, run(fill_device))
        if symmetric and len(devices) > 1:
            for r in range(1, len(devices) - len(devices) // 2):
                K = _mirror(K, r, total // len(devices))
        return K
    finally:
        bar.close()


def _fill_file(file: _NpyFile, computed, k: int, device) -> None:
    """Write device k's blocks (and their mirrors) into the open .npy file: one positioned write per block when
    it spans whole rows, else one per row."""
    for b, values in computed(k, device):
        values = np.ascontiguousarray(values, dtype="<f8")
        _write_rectangle(file, values, b.row, b.col)
        if b.mirror:
            _write_rectangle(file, np.ascontiguousarray(values.T), b.col, b.row)


def _write_rectangle(file: _NpyFile, values: np.ndarray, row: int, col: int) -> None:
    start = file.header + 8 * (file.columns * row + col)
    if values.shape[1] == file.columns:
        os.pwrite(file.fd, values.tobytes(), start)
        return
    for i, line in enumerate(values):
        os.pwrite(file.fd, line.tobytes(), start + 8 * file.columns * i)


class _NpyFile:
    """A .npy file of float64 rows open for positioned writes: its descriptor, header length and row width."""

    def __init__(self, path: Path, columns: int):
        with open(path, "rb") as f:
            np.lib.format.read_magic(f)
            np.lib.format.read_array_header_1_0(f)
            self.header = f.tell()
        self.fd = os.open(path, os.O_WRONLY)
        self.columns = columns


def _write_npy(path: Path, shape: tuple[int, int], fill: Callable[[_NpyFile], object]) -> np.ndarray:
    """Create path's .partial file (header, full size) on process 0, let every process write its rows with
    positioned writes (no memory map, so written rows do not stay resident in the process), rename it into
    place once all have; return it memory-mapped read-only."""
    partial_path = path.with_name(f".{path.name}{PARTIAL_SUFFIX}")
    if jax.process_index() == 0:
        with open(partial_path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": shape})
            f.truncate(f.tell() + 8 * shape[0] * shape[1])
    multihost_utils.sync_global_devices(f"ntk_rnn: {path} created")
    file = _NpyFile(partial_path, shape[1])
    try:
        fill(file)
        os.fsync(file.fd)
    finally:
        os.close(file.fd)
    multihost_utils.sync_global_devices(f"ntk_rnn: {path} written")
    if jax.process_index() == 0:
        os.replace(partial_path, path)
    multihost_utils.sync_global_devices(f"ntk_rnn: {path} in place")
    return np.load(path, mmap_mode="r")
