"""Head-to-head: ntk_rnn's structured kernel against neural-tangents 0.6.5 and jax.jacrev, on the paper's RNN.

The model is bench_ntk.py's: relu, W ~ N(0, 2/m), A ~ N(0, 2/m), B ~ N(0, 1/d), only W trained, outputs
at positions 1..L-1, float64, n=32, L=16, d_x=8, d=1, the kernel of x with itself. Implementations:

  structured       ntk_rnn.empirical_ntk (main env, JAX 0.10.2)
  jacrev           ntk_rnn.empirical_ntk(method="jacobian"): contracts jax.jacrev Jacobians (main env), so
                   the gain is not only a JAX-version effect
  jacrev_vmap      nt's JACOBIAN_CONTRACTION algorithm in current JAX: jax.vmap over samples of jax.jacrev of
                   one sequence's outputs (which skips the zero cross-sample blocks that "jacrev" computes),
                   then J J^T (main env)
  nt_<IMPL>        jax.jit(nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=IMPL)) for
                   JACOBIAN_CONTRACTION, NTK_VECTOR_PRODUCTS, STRUCTURED_DERIVATIVES and AUTO (.venv-nt,
                   JAX 0.4.25), on the oracle's transcription of the RNN (reference/make_oracle.py)
  lin_ntk_rnn      one jitted full-batch GD step on the linearized model, through the jvp-based Taylor model
                   that ntk_rnn.linearize and train_paired use (ntk_rnn.training.linearized.model_outputs)
  lin_nt           the same step through nt.linearize (.venv-nt)

Every run is a fresh subprocess of the right environment: build the problem, one warm-up call (compile
and run), then timed calls; it reports the median time and its peak resident memory (ru_maxrss).
Each size runs `--rounds` rounds (default 5), one run of every implementation per round, in an order
that alternates between the environments, so host drift hits all alike; the table gives the median over
rounds. A run is killed past `--max-rss` GiB (default 20) or `--timeout` seconds and recorded as such;
after two sizes an implementation whose predicted time per call (its measured growth from the last
size) exceeds `--budget` seconds, or whose predicted peak exceeds `--max-rss`, is skipped at larger sizes
and recorded as "skipped: predicted ...". `--max-m` then runs the structured kernel alone at larger m,
one cold call each (compilation included), to find the largest that fits.

    python benchmarks/bench_nt.py                      # the full run (make bench-nt); writes docs/bench_nt.*
    python benchmarks/bench_nt.py --sizes 64 128 --rounds 2 --out /tmp/b   # a quick check
    python benchmarks/bench_nt.py --plot-only          # re-render docs/bench_nt.png from docs/bench_nt.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NT_PYTHON = ROOT / ".venv-nt" / "bin" / "python"
N, LENGTH, DX, D = 32, 16, 8, 1
SIZES = (64, 128, 256, 512, 1024, 2048, 4096, 8192)  # 64 and 128 calibrate the forecasts
MAX_M = (16384, 24576, 32768)
NT_IMPLS = ("JACOBIAN_CONTRACTION", "NTK_VECTOR_PRODUCTS", "STRUCTURED_DERIVATIVES", "AUTO")
KERNEL_KINDS = ("structured", "nt_JACOBIAN_CONTRACTION", "jacrev", *(f"nt_{i}" for i in NT_IMPLS[1:]))
JACREV_KINDS = ("jacrev", "jacrev_vmap")
# a second pairing, run in its own session: the structured kernel again ("structured_b"), alternating with
# nt's JACOBIAN_CONTRACTION algorithm in current JAX
VMAP_KINDS = ("structured_b", "jacrev_vmap")
STEP_KINDS = ("lin_ntk_rnn", "lin_nt")
LABELS = {
    "structured": "ntk_rnn structured (JAX 0.10.2)",
    "structured_b": "ntk_rnn structured (JAX 0.10.2)",
    "jacrev": "jax.jacrev contraction (JAX 0.10.2)",
    "jacrev_vmap": "per-sample jax.jacrev contraction (JAX 0.10.2)",
    **{f"nt_{i}": f"nt {i} (JAX 0.4.25)" for i in NT_IMPLS},
    "lin_ntk_rnn": "ntk_rnn linearized GD step (JAX 0.10.2)",
    "lin_nt": "nt.linearize GD step (JAX 0.4.25)",
}


# ----------------------------------------------------------------------------- worker (either environment)


def problem(m: int, seed: int = 0):
    """x (N, L, d_x) and params W (m, m), A (m, d_x), B (d, m) as float64 numpy, the same in both envs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, LENGTH, DX))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)  # unit tokens, as the paper's data
    params = {"W": rng.standard_normal((m, m)), "A": rng.standard_normal((m, DX)), "B": rng.standard_normal((D, m))}
    params["W"] *= math.sqrt(2.0 / m)
    params["A"] *= math.sqrt(2.0 / m)
    params["B"] *= math.sqrt(1.0 / D)
    return x, params


def _proc_gib(path: str, field: str) -> float | None:
    """A kB field of a /proc file (`VmRSS` of /proc/PID/status, `MemTotal` of /proc/meminfo, ...) in GiB;
    None when the field or the file (a process that has exited) is missing."""
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 2**20
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def _rss_gib() -> float:
    rss = _proc_gib("/proc/self/status", "VmRSS")
    return math.nan if rss is None else rss


def _kernel_call(kind: str, m: int, max_bytes: int = 0):
    """A zero-argument function computing the kernel (a numpy array) of the benchmark problem; max_bytes > 0
    sets the structured path's working-memory budget (else ntk_rnn's default)."""
    if kind == "jacrev_vmap":
        return _jacrev_vmap_call(m)
    if kind in ("structured", "structured_b", "jacrev"):
        import jax

        import ntk_rnn

        cfg = ntk_rnn.RNNConfig(width=m, input_dim=DX, output_dim=D)
        if m > max(SIZES):  # the max-m probe: draw the params in one jitted call (no numpy copy of W)
            x = problem(1)[0]
            params = jax.jit(ntk_rnn.init_params, static_argnums=0)(cfg, key=jax.random.key(0))
        else:
            x, params = problem(m)
        method = "jacobian" if kind == "jacrev" else "structured"
        budget = {"max_bytes": max_bytes} if max_bytes > 0 else {}
        return lambda: ntk_rnn.empirical_ntk(cfg, params, x, method=method, **budget)
    x, params = problem(m)
    nt, f = _nt_model(m, params)
    import jax.numpy as jnp

    return nt_kernel_call(nt, f, kind.removeprefix("nt_"), {"W": jnp.asarray(params["W"])}, jnp.asarray(x))


def nt_kernel_call(nt, f, implementation: str, theta: dict, xj):
    """A zero-argument function computing jax.jit(nt.empirical_ntk_fn(f, ...))(xj, None, theta) as a
    (rows, rows) numpy array, rows ordered (sample, position, unit); its `precompile` compiles only."""
    import jax
    import numpy as np

    impl = getattr(nt.NtkImplementation, implementation)
    fn = jax.jit(nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=impl))
    rows = math.prod(jax.eval_shape(f, theta, xj).shape)
    compiled = {}

    def precompile() -> None:  # ahead-of-time compilation (AUTO's choice included), without a run
        compiled["fn"] = fn.lower(xj, None, theta).compile()

    def call():
        k = compiled["fn"](xj, None, theta) if compiled else fn(xj, None, theta)
        return np.asarray(k).transpose(0, 2, 4, 1, 3, 5).reshape(rows, rows)

    call.precompile = precompile
    return call


def _jacrev_vmap_call(m: int):
    """J J^T from per-sample Jacobians, vmapped over samples, in current JAX (the model from ntk_rnn.hidden_states)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import ntk_rnn

    cfg = ntk_rnn.RNNConfig(width=m, input_dim=DX, output_dim=D)
    x, params = problem(m)
    params = {k: jnp.asarray(v) for k, v in params.items()}

    def outputs(W, xi):  # one sequence (L, d_x) -> (L-1, d)
        _, h = ntk_rnn.hidden_states(cfg, {**params, "W": W}, xi[None])
        return (h[0] @ params["B"].T)[1:]

    @jax.jit
    def kernel(W, xs):
        jac = jax.vmap(jax.jacrev(outputs), in_axes=(None, 0))(W, xs)  # (n, L-1, d, m, m)
        flat = jac.reshape(xs.shape[0] * (LENGTH - 1) * D, -1)
        return flat @ flat.T

    xj = jnp.asarray(x)
    return lambda: np.asarray(kernel(params["W"], xj))


def _nt_model(m: int, params):
    """neural_tangents and f(theta, x) -> (n, L-1, d), the oracle's transcription of the paper's RNN."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT / "reference"))
    import jax.numpy as jnp
    import make_oracle
    import neural_tangents as nt

    case = make_oracle.full_case(
        dict(name="bench", seed=0, n1=N, n2=N, L1=LENGTH, L2=LENGTH, dx=DX, d=D, m=m, activation="relu",
             parameterization="paper", sigma_b2=0.0, trainable=["W"], readout="all", positions=None)
    )  # fmt: skip
    frozen = {k: jnp.asarray(params[k]) for k in ("A", "B")}
    return nt, make_oracle.model(case, frozen, tuple(range(1, LENGTH)))


def _step_call(kind: str, m: int):
    """A zero-argument function doing one jitted GD step of the linearized model (returns the new W)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    x, params = problem(m)
    y = np.random.default_rng(7).standard_normal((N, LENGTH - 1, D))
    if kind == "lin_ntk_rnn":
        import ntk_rnn
        from ntk_rnn.training.linearized import model_outputs

        cfg = ntk_rnn.RNNConfig(width=m, input_dim=DX, output_dim=D)
        params0 = {k: jnp.asarray(v) for k, v in params.items()}

        def f_lin(theta, xb):
            return model_outputs(cfg, params0, theta, xb, True)[:, 1:]
    else:
        nt, f = _nt_model(m, params)
        f_lin = nt.linearize(f, {"W": jnp.asarray(params["W"])})
    lr = 1e-4

    @jax.jit
    def step(theta, xb, yb):
        grads = jax.grad(lambda th: 0.5 * jnp.sum((f_lin(th, xb) - yb) ** 2))(theta)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, theta, grads)

    state = {"theta": {"W": jnp.asarray(params["W"]) + 1e-3}, "x": jnp.asarray(x), "y": jnp.asarray(y)}

    def call():
        state["theta"] = step(state["theta"], state["x"], state["y"])
        return np.asarray(state["theta"]["W"][0, :4])

    return call


def worker(kind: str, m: int, repeats: int, warmup: str, max_bytes: int = 0) -> dict:
    """Warm-up, then `repeats` timed calls; the result summary of one run. warmup: "call" (one untimed
    call), "compile" (neural-tangents' kernels: ahead-of-time compilation only, for slow sizes; other
    kinds make a call) or "none" (the timed call includes compilation)."""
    call = _step_call(kind, m) if kind in STEP_KINDS else _kernel_call(kind, m, max_bytes)
    return time_call(call, repeats, warmup, fingerprint=kind not in STEP_KINDS)[0]


def time_call(call, repeats: int, warmup: str, fingerprint: bool = True) -> tuple[dict, object]:
    """worker's timing of a zero-argument `call` (warm-up as there): the result summary and the last output.
    fingerprint: add the Frobenius norm and trace of the output (a kernel)."""
    import numpy as np

    base = _rss_gib()
    start = time.perf_counter()
    out = None
    if warmup != "none" and hasattr(call, "precompile"):
        call.precompile()
    if warmup == "call" or (warmup == "compile" and not hasattr(call, "precompile")):
        out = call()
    warmup = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - start)
    result = {
        "seconds": statistics.median(times),
        "warmup_seconds": warmup,
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "base_gib": base,
        "warmup": "call" if warmup == "call" or not hasattr(call, "precompile") else warmup,
        "load_average": os.getloadavg()[0],
    }
    if fingerprint:  # a fingerprint of the kernel, to check that all compute the same thing
        result["frobenius"] = float(np.linalg.norm(out))
        result["trace"] = float(np.trace(out))
    return result, out


# ----------------------------------------------------------------------------- driver (main environment)


def run_one(
    kind: str, m: int, repeats: int, timeout: float, max_rss: float, warmup: str = "call", max_bytes: int = 0
) -> dict:
    """One run of `kind` at width m in a fresh subprocess of its environment, watched for time and memory."""
    python = str(NT_PYTHON) if kind.startswith("nt") or kind == "lin_nt" else sys.executable
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind, str(m), "--repeats", str(repeats)]
    cmd += ["--warmup", warmup, "--max-bytes", str(max_bytes)]
    return watch(cmd, timeout, max_rss)


def watch(cmd: list[str], timeout: float, max_rss: float, env: dict | None = None) -> dict:
    """Run a worker command, killing it past `timeout` seconds or `max_rss` GiB resident (or when the host
    runs out of memory); its last stdout line is its JSON result."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        start, peak, reason = time.monotonic(), 0.0, None
        while proc.poll() is None:
            time.sleep(0.2)
            rss = _proc_rss_gib(proc.pid)
            peak = max(peak, rss)
            if rss > max_rss:
                reason = f"OOM: killed at {rss:.1f} GiB resident (limit {max_rss:g} GiB)"
            elif time.monotonic() - start > timeout:
                reason = f"timeout: killed after {timeout:g} s"
            elif _mem_available_gib() < 1.0:
                reason = f"OOM: killed at {rss:.1f} GiB resident, the host had < 1 GiB available"
            if reason:
                os.killpg(proc.pid, 9)
                proc.wait()
                return {"status": reason, "peak_gib": peak, "wall": time.monotonic() - start}
        wall = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        tail = " | ".join(line for line in stderr.strip().splitlines()[-3:])
        return {"status": f"failed (exit {proc.returncode}): {tail[-400:]}", "peak_gib": peak, "wall": wall}
    return {"status": "ok", "wall": wall, **json.loads(stdout.strip().splitlines()[-1])}


def _proc_rss_gib(pid: int) -> float:
    return _proc_gib(f"/proc/{pid}/status", "VmRSS") or 0.0


def _mem_available_gib() -> float:
    available = _proc_gib("/proc/meminfo", "MemAvailable")
    return math.inf if available is None else available


def forecast(kind: str, m: int, results: list[dict]) -> tuple[float, float] | str | None:
    """Predicted (seconds per call, peak GiB) of `kind` at width m from its two largest measured sizes
    (time by their measured growth, extra memory over the process's base as m^2); from one size, time
    and extra memory as m^2. None with nothing measured, a reason string after a failure."""
    failed = [
        r for r in results if r["kind"] == kind and r["m"] < m and r["status"] not in ("ok",) and r["round"] > 0
    ]  # runs that failed or were killed; a skipped size (round 0) is forecast again from the measured ones
    if failed:
        return f"skipped: {short_status(failed[-1]['status']).split(':')[0]} at m={failed[-1]['m']}"
    by_m: dict[int, list[dict]] = {}
    for r in results:
        if r["kind"] == kind and r["status"] == "ok" and r["m"] < m:
            by_m.setdefault(r["m"], []).append(r)
    if not by_m:
        return None
    median = {size: {key: statistics.median(r[key] for r in rs) for key in ("seconds", "peak_gib", "base_gib")}
              for size, rs in by_m.items()}  # fmt: skip
    sizes = sorted(median)
    m2, e2 = sizes[-1], median[sizes[-1]]
    if len(sizes) == 1:
        growth = (m / m2) ** 2
        return e2["seconds"] * growth, e2["base_gib"] + (e2["peak_gib"] - e2["base_gib"]) * growth
    m1, e1 = sizes[-2], median[sizes[-2]]
    steps = math.log(m / m2) / math.log(m2 / m1)
    t_pred = e2["seconds"] * max(e2["seconds"] / e1["seconds"], 1.0) ** steps
    p_pred = e2["peak_gib"] + (e2["peak_gib"] - e1["peak_gib"]) * (m**2 - m2**2) / (m2**2 - m1**2)
    return t_pred, p_pred


def predicted_skip(kind: str, m: int, results: list[dict], budget: float, max_rss: float) -> str | None:
    """A skip reason when the forecast of `kind` at m exceeds the time or memory budget."""
    pred = forecast(kind, m, results)
    if pred is None or isinstance(pred, str):
        return pred
    t_pred, p_pred = pred
    if t_pred > budget:
        return f"skipped: predicted {t_pred:.0f} s per call > {budget:g} s"
    if p_pred > max_rss:
        return f"skipped: predicted {p_pred:.0f} GiB peak > {max_rss:g} GiB"
    return None


def run_grid(kinds: tuple[str, ...], sizes, args, results: list[dict], save, runner=None) -> None:
    """For each size: `args.rounds` rounds, one run of every (not skipped) implementation per round.
    neural-tangents' kernels predicted above `args.warmup_limit` s per call warm up by compiling only.
    runner: run_one (the default) or a function with its signature."""
    runner = runner or run_one
    for m in sizes:
        skip = {kind: None if args.no_forecast else predicted_skip(kind, m, results, args.budget, args.max_rss)
                for kind in kinds}  # fmt: skip
        active = [kind for kind in kinds if skip[kind] is None]
        for kind in kinds:
            if skip[kind]:
                results.append({"kind": kind, "m": m, "round": 0, "status": skip[kind]})
                print(f"m={m:>5} {kind:<28} {skip[kind]}", flush=True)
        warmup = {}
        for kind in active:
            pred = forecast(kind, m, results)
            warmup[kind] = "call" if pred is None or pred[0] < args.warmup_limit else "compile"
        for rnd in range(1, args.rounds + 1):
            order = active if rnd % 2 else active[::-1]
            for kind in order:
                if any(r["kind"] == kind and r["m"] == m and r["status"] != "ok" and r["round"] > 0 for r in results):
                    continue  # failed or killed in an earlier round: do not retry
                run = runner(kind, m, args.repeats, args.timeout, args.max_rss, warmup[kind])
                r = {"kind": kind, "m": m, "round": rnd, **run}
                results.append(r)
                shown = f"{r['seconds']:.3f} s" if r["status"] == "ok" else r["status"][:160]
                print(f"m={m:>5} {kind:<28} round {rnd}: {shown}  peak {r['peak_gib']:.2f} GiB", flush=True)
                save()


def summarize(results: list[dict], kinds) -> dict:
    """(kind, m) -> median seconds, median peak, runs, status."""
    table = {}
    for kind in kinds:
        for m in sorted({r["m"] for r in results if r["kind"] == kind}):
            runs = [r for r in results if r["kind"] == kind and r["m"] == m]
            runs = [r for r in runs if r["round"] > 0] or runs  # a later attempt replaces a skip
            ok = [r for r in runs if r["status"] == "ok"]
            bad = [r for r in runs if r["status"] != "ok"]
            entry = {"runs": len(ok)}
            if ok:
                entry.update(
                    seconds=statistics.median(r["seconds"] for r in ok),
                    peak_gib=statistics.median(r["peak_gib"] for r in ok),
                    warmup=statistics.median(r["warmup_seconds"] for r in ok),
                    spread=(min(r["seconds"] for r in ok), max(r["seconds"] for r in ok)),
                )
            entry["status"] = bad[0]["status"] if bad else "ok"
            table[kind, m] = entry
    return table


def short_status(status: str) -> str:
    """A table cell for a run without a time: out of memory, killed, skipped, or failed."""
    found = re.search(r"RESOURCE_EXHAUSTED: Out of memory allocating (\d+) bytes", status)
    if found:
        return f"OOM: XLA could not allocate {int(found.group(1)) / 2**30:.0f} GiB"
    if status.startswith(("OOM", "timeout")):
        return status.split(" (")[0]
    if status.startswith("skipped"):
        return status
    return status.split(":")[0].replace("|", "/")


def _ratio(value: float) -> str:
    return f"{value:.0f}x" if value >= 10 else f"{value:.2g}x"


def markdown(results: list[dict], kinds, reference: str = "structured") -> str:
    """A table: one row per width, per implementation the median seconds and peak GiB (or why there is
    none), and the speed-ups of `reference` over neural-tangents' fastest and over jax.jacrev."""
    table = summarize(results, kinds)
    sizes = sorted({m for _, m in table})
    groups = {  # ratio columns: the fastest of each group over the reference
        "fastest nt / ntk_rnn": [k for k in kinds if k.startswith("nt") or k == "lin_nt"],
        "jacrev / ntk_rnn": [k for k in kinds if k in JACREV_KINDS],
    }
    groups = {name: group for name, group in groups.items() if group}
    cells = []
    for m in sizes:
        row = [str(m)]
        for kind in kinds:
            e = table.get((kind, m))
            if e is None:
                row.append("")
            elif e["status"] == "ok":
                runs = "" if e["runs"] >= 5 else f" ({e['runs']} run{'s' if e['runs'] > 1 else ''})"
                row.append(f"{e['seconds']:.3g} s, {e['peak_gib']:.2f} GiB{runs}")
            else:  # a size skipped by forecast before a smaller one failed says the failure instead
                earlier = forecast(kind, m, results) if e["status"].startswith("skipped") else None
                row.append(short_status(earlier if isinstance(earlier, str) else e["status"]))
        ref = table.get((reference, m), {})
        for group in groups.values():
            times = [table[k, m]["seconds"] for k in group if table.get((k, m), {}).get("status") == "ok"]
            row.append(_ratio(min(times) / ref["seconds"]) if times and ref.get("status") == "ok" else "")
        cells.append(row)
    header = ["m", *(LABELS[k] for k in kinds), *groups]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def plot(results: list[dict], path: Path) -> None:
    """Three log-log panels against m: the kernel's seconds (the main session's implementations), the
    speed-up of ntk_rnn over each baseline against the structured runs it alternated with, and the
    linearized GD step's seconds. Failed and skipped sizes are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    order = (*KERNEL_KINDS, "jacrev_vmap", *STEP_KINDS)
    colors = dict(zip(order, sns.color_palette("colorblind", len(order)), strict=True))
    colors["lin_ntk_rnn"], colors["lin_nt"] = colors["structured"], colors["nt_JACOBIAN_CONTRACTION"]

    def draw(ax, pts: list[tuple[int, float]], kind: str, label: str) -> None:
        ax.plot(*zip(*pts, strict=True), "-o" if kind in ("structured", "lin_ntk_rnn") else "--s" if kind in
                JACREV_KINDS else ":^", color=colors[kind], label=label)  # fmt: skip

    def points(table: dict, kind: str) -> list[tuple[int, float]]:
        return sorted((m, e["seconds"]) for (k, m), e in table.items() if k == kind and e.get("status") == "ok")

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.6), constrained_layout=True)
    kernels, steps = summarize(results, KERNEL_KINDS), summarize(results, STEP_KINDS)
    vmap = summarize(results, VMAP_KINDS)
    for ax, table, kinds in ((axes[0], kernels, KERNEL_KINDS), (axes[2], steps, STEP_KINDS)):
        for kind in kinds:
            if pts := points(table, kind):
                draw(ax, pts, kind, LABELS[kind])
        ax.set_ylabel("seconds per call (median of runs)")
    nt_sizes = {m for (k, m), e in kernels.items() if k.startswith("nt_")}
    if none_ran := [m for m in sorted(nt_sizes) if all(e["status"] != "ok" for (k, mm), e in kernels.items()
                                                          if k.startswith("nt_") and mm == m)]:  # fmt: skip
        axes[0].annotate(f"no neural-tangents implementation\nruns at m >= {none_ran[0]} (out of memory\nor skipped)",
                         (0.97, 0.03), xycoords="axes fraction", ha="right", va="bottom", fontsize=8)  # fmt: skip
    for kind, reference, table in (
        *((k, "structured", kernels) for k in KERNEL_KINDS[1:]),
        ("jacrev_vmap", "structured_b", vmap),
    ):
        ref = dict(points(table, reference))
        if pts := [(m, t / ref[m]) for m, t in points(table, kind) if m in ref]:
            draw(axes[1], pts, kind, LABELS[kind] + (" (own session with ntk_rnn)" if table is vmap else ""))
    axes[1].axhline(1.0, color="0.5", lw=0.8)
    axes[1].set_ylabel("baseline seconds / ntk_rnn seconds")
    titles = (
        f"empirical NTK, n={N}, L={LENGTH}, d_x={DX}, d={D}, float64",
        "speed-up of ntk_rnn over each baseline (alternated runs)",
        "one full-batch GD step of the linearized model",
    )
    finish_figure(fig, axes, titles, path)


def finish_figure(fig, axes, titles, path: Path) -> None:
    """Log-log axes against the width m (ticks at the plotted widths), titles, one legend below, saved."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        sizes = sorted({round(x) for line in ax.get_lines() if not line.get_label().startswith("_")
                        for x in line.get_xdata()})  # fmt: skip
        ax.set_xticks(sizes, [str(m) for m in sizes])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("width m")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(record: dict, path: Path) -> None:
    """The results file, written atomically by ntk_rnn's writer (imported here: the workers that run this file
    in .venv-nt cannot import ntk_rnn, and only the main process writes results)."""
    from ntk_rnn.storage import atomic_write

    atomic_write(path, lambda handle: json.dump(record, handle, indent=1))


def check_fingerprints(results: list[dict]) -> list[str]:
    """Kernels of all implementations at one m must agree: relative differences of Frobenius norm and trace."""
    notes = []
    for m in sorted({r["m"] for r in results}):
        ok = [r for r in results if r["m"] == m and r["status"] == "ok" and "frobenius" in r]
        if len({r["kind"] for r in ok}) > 1:
            ref = next((r for r in ok if r["kind"] == "structured"), ok[0])
            worst = max(abs(r["frobenius"] / ref["frobenius"] - 1) + abs(r["trace"] / ref["trace"] - 1) for r in ok)
            notes.append(f"m={m}: kernels of {len({r['kind'] for r in ok})} implementations agree to {worst:.1e}")
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--max-m", type=int, nargs="*", default=list(MAX_M), help="structured-only widths after")
    parser.add_argument("--rounds", type=int, default=5, help="runs (subprocesses) per implementation and size")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per run, after the warm-up call")
    parser.add_argument("--budget", type=float, default=300.0, help="skip sizes predicted above this s per call")
    parser.add_argument("--timeout", type=float, default=1200.0, help="kill a run after this many seconds")
    parser.add_argument("--max-rss", type=float, default=20.0, help="kill a run above this resident GiB")
    parser.add_argument("--kinds", nargs="+", default=[*KERNEL_KINDS, *STEP_KINDS, *VMAP_KINDS], choices=[*LABELS])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where bench_nt.json/.png go")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--warmup-limit", type=float, default=20.0, help="nt runs predicted slower: compile only")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "M"), help=argparse.SUPPRESS)
    parser.add_argument("--warmup", default="call", choices=("call", "compile", "none"), help=argparse.SUPPRESS)
    parser.add_argument("--max-bytes", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-m-bytes", type=float, default=8.0, help="structured max_bytes (GiB) for --max-m")
    parser.add_argument("--append", action="store_true", help="add these runs to the existing bench_nt.json")
    parser.add_argument("--no-forecast", action="store_true", help="run every size (single attempts past a skip)")
    args = parser.parse_args()
    if args.worker:
        kind, m = args.worker
        print(json.dumps(worker(kind, int(m), args.repeats, args.warmup, args.max_bytes)))
        return
    json_path, png_path = args.out / "bench_nt.json", args.out / "bench_nt.png"
    if args.plot_only:
        record = json.loads(json_path.read_text())
        record["fingerprints"] = check_fingerprints(record["runs"])
        write_json(record, json_path)
        print("\n".join(record["fingerprints"]))
        plot(record["runs"], png_path)
        print(markdown(record["runs"], KERNEL_KINDS))
        print(markdown(record["runs"], STEP_KINDS, reference="lin_ntk_rnn"))
        print(markdown(record["runs"], VMAP_KINDS, reference="structured_b"))
        print(max_m_lines(record["runs"]))
        return
    if not NT_PYTHON.exists() and any(k.startswith("nt") or k == "lin_nt" for k in args.kinds):
        sys.exit(f"{NT_PYTHON} is missing: `make reference` builds the neural-tangents environment")
    session = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "mem_gib": _mem_total_gib()},
        "code": _code_state(),
        "settings": {k: str(v) for k, v in vars(args).items() if k not in ("worker", "plot_only", "warmup")},
    }
    if args.append:
        record = json.loads(json_path.read_text())
    else:
        problem_spec = {"n": N, "L": LENGTH, "d_x": DX, "d": D, "positions": "1..L-1", "trainable": "W"}
        record = {"problem": problem_spec, "sessions": [], "runs": []}
    record["sessions"].append(session)
    results = record["runs"]
    first_new = len(results)

    def save() -> None:
        write_json(record, json_path)

    kernel_kinds = tuple(k for k in KERNEL_KINDS if k in args.kinds)
    step_kinds = tuple(k for k in STEP_KINDS if k in args.kinds)
    vmap_kinds = tuple(k for k in VMAP_KINDS if k in args.kinds)
    run_grid(kernel_kinds, args.sizes, args, results, save)
    run_grid(step_kinds, args.sizes, args, results, save)
    run_grid(vmap_kinds, [m for m in args.sizes if m <= 2048], args, results, save)
    if "structured" in args.kinds:
        for m in args.max_m:  # one cold call each (compilation included): this is about fitting, not the table
            max_bytes = int(args.max_m_bytes * 2**30)
            run = run_one("structured", m, 1, args.timeout, args.max_rss, warmup="none", max_bytes=max_bytes)
            run["max_bytes"] = max_bytes
            r = {"kind": "structured_max_m", "m": m, "round": 1, **run}
            results.append(r)
            shown = f"{r['seconds']:.2f} s" if r["status"] == "ok" else r["status"]
            print(f"m={m:>5} structured (max-m) {shown}  peak {r['peak_gib']:.2f} GiB", flush=True)
            save()
            if r["status"] != "ok":
                break
    for r in results[first_new:]:
        r["session"] = len(record["sessions"]) - 1
    record["fingerprints"] = check_fingerprints(results)
    save()
    plot(results, png_path)
    print("\n".join(record["fingerprints"]))
    for kinds, reference in ((kernel_kinds, "structured"), (step_kinds, "lin_ntk_rnn"), (vmap_kinds, "structured_b")):
        if kinds:
            print(markdown(results, kinds, reference=reference))
    print(max_m_lines(results))


def max_m_lines(results: list[dict]) -> str:
    """One line per structured-only large-width run."""
    lines = []
    for r in results:
        if r["kind"] == "structured_max_m":
            done = f"{r['seconds']:.1f} s (one cold call)" if r["status"] == "ok" else r["status"]
            budget = f", max_bytes {r['max_bytes'] / 2**30:g} GiB" if r.get("max_bytes") else ""
            lines.append(f"m={r['m']}: {done}, peak {r['peak_gib']:.2f} GiB resident{budget}")
    return "\n".join(lines)


def _code_state() -> dict:
    """The commit and any uncommitted changes to ntk_rnn/ that the main-environment runs used."""

    def git(*cmd: str) -> str:
        proc = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_ntk_rnn": git("status", "--short", "ntk_rnn")}


def _mem_total_gib() -> float | None:
    return _proc_gib("/proc/meminfo", "MemTotal")


if __name__ == "__main__":
    main()
