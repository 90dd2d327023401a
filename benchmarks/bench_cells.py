"""Every cell: ntk_rnn's structured kernel for GRU and LSTM against jax.jacrev and neural-tangents 0.6.5.

The problem: n=32, L=16, d_x=8, d=1, float64, outputs at every position 0..L-1, the kernel of x with
itself, the "paper" parameterization with a bias (sigma_b2 = 0.1) and every hidden weight trained
(W, A, b; case "<cell>"), then W alone (case "<cell>_W"). Implementations (bench_nt.py's protocol and
machinery: a fresh subprocess per run, alternated rounds, ru_maxrss, timeouts, forecasts and skips):

  structured       ntk_rnn.empirical_ntk(cfg, params, x, positions=0..L-1) (main env)
  jacrev_vmap      jax.vmap over samples of jax.jacrev of one sequence's outputs, then J J^T (main env); when
                   J is over --jac-gib it is built in groups of samples and contracted group against group
  nt_<IMPL>        jax.jit(nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=IMPL)) on
                   benchmarks/nt_cells.py, a plain-JAX transcription of the cells (.venv-nt, JAX 0.4.25)

The driver draws the inputs and parameters once per cell and width and passes them to both environments
in an .npz. First every implementation runs once at m=64 (`--calibration`), saving its kernel, which must
match the structured one to 1e-10 relative; these runs also calibrate the forecasts. After the grid the
structured kernel runs alone at `--max-m` (one cold call, parameters drawn in the worker), and the
one-layer Elman structured kernel of commit OLD_COMMIT (a temporary worktree) alternates with this tree's
(bench_nt.py's worker in each tree: the paper's RNN, positions 1..L-1).

    python benchmarks/bench_cells.py                        # the full run (make bench-cells); docs/bench_cells.*
    python benchmarks/bench_cells.py --sizes 128 --rounds 1 --max-m --elman-sizes --out /tmp/c   # a quick check
    python benchmarks/bench_cells.py --plot-only            # re-render the figure and tables from the JSON
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import bench_nt
from bench_nt import DX, LENGTH, ROOT, D, N

SIZES = (256, 512, 1024, 2048)
CALIBRATION = 32
MAX_M = (4096, 8192)
CELLS = ("gru", "lstm")
SIGMA_B2 = 0.1
TRAINABLE = {"": ("W", "A", "b"), "_W": ("W",)}
KINDS = ("structured", "jacrev_vmap", "nt_JACOBIAN_CONTRACTION", "nt_NTK_VECTOR_PRODUCTS", "nt_STRUCTURED_DERIVATIVES")
JAC_GIB = 12.0  # jacrev_vmap: one J up to this size, else groups of samples of half of it each
AGREEMENT = 1e-10
OLD_COMMIT = "57ae8ce"
ENV = {"PYTHONPATH": str(ROOT)}  # this tree's ntk_rnn, not the editable install's


# ----------------------------------------------------------------------------- worker (either environment)


def config(cell: str, m: int, trainable: tuple[str, ...]):
    import ntk_rnn

    return ntk_rnn.RNNConfig(width=m, input_dim=DX, output_dim=D, cell=cell, sigma_b2=SIGMA_B2, trainable=trainable)


def write_problem(cell: str, m: int, path: Path, seed: int = 0) -> None:
    """x (N, L, d_x) with unit tokens and every parameter of the cell at width m, N(0, std^2), into an .npz."""
    import numpy as np

    cfg = config(cell, m, ("W",))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, LENGTH, DX))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    params = {f"param_{k}": rng.standard_normal(s) * cfg.init_std[k] for k, s in cfg.param_shapes.items()}
    np.savez(path, x=x, **params)


def kernel_call(
    kind: str, cell: str, m: int, trainable: tuple[str, ...], problem: str, max_bytes: int, jac_gib: float = JAC_GIB
):
    """A zero-argument function computing the (N L d, N L d) kernel; problem: an .npz from write_problem,
    or "" to draw the parameters in the worker (large m)."""
    import numpy as np

    data = np.load(problem) if problem else None
    params = {k.removeprefix("param_"): data[k] for k in data.files if k.startswith("param_")} if data else None
    if kind.startswith("nt_"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        import neural_tangents as nt
        import nt_cells

        frozen = {k: jnp.asarray(v) for k, v in params.items() if k not in trainable}
        theta = {k: jnp.asarray(params[k]) for k in trainable}
        f = nt_cells.model(cell, frozen)
        return bench_nt.nt_kernel_call(nt, f, kind.removeprefix("nt_"), theta, jnp.asarray(data["x"]))
    import jax
    import jax.numpy as jnp

    import ntk_rnn

    cfg = config(cell, m, trainable)
    if data is None:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, LENGTH, DX))
        x /= np.linalg.norm(x, axis=-1, keepdims=True)
        params = jax.jit(ntk_rnn.init_params, static_argnums=0)(cfg, key=jax.random.key(0))
    else:
        x, params = data["x"], {k: jnp.asarray(v) for k, v in params.items()}
    if kind == "structured":
        budget = {"max_bytes": max_bytes} if max_bytes > 0 else {}
        return lambda: ntk_rnn.empirical_ntk(cfg, params, x, positions=tuple(range(LENGTH)), **budget)
    return jacrev_vmap_call(cfg, params, jnp.asarray(x), int(jac_gib * 2**30))


def jacrev_vmap_call(cfg, params: dict, x, jac_bytes: int = int(JAC_GIB * 2**30)):
    """J J^T from jax.vmap over samples of jax.jacrev of one sequence's outputs (L, d), in sample groups
    (J_a J_b^T for group pairs a <= b, each group's J recomputed) when the whole J is over jac_bytes."""
    import jax
    import numpy as np

    from ntk_rnn.network.model import apply

    theta = {k: params[k] for k in cfg.trainable_names}
    per_sample = LENGTH * D * sum(v.size for v in theta.values()) * 8
    c = N
    while c > 1 and c * per_sample > (jac_bytes if c == N else jac_bytes // 2):
        c //= 2

    def jacobian(th, xs):  # {name: (c L d, size)}
        jac = jax.vmap(jax.jacrev(lambda t, xi: apply(cfg, {**params, **t}, xi[None])[0]), in_axes=(None, 0))(th, xs)
        return {k: v.reshape(xs.shape[0] * LENGTH * D, -1) for k, v in jac.items()}

    def gram(ja, jb):
        return sum(ja[k] @ jb[k].T for k in ja)

    groups = [x[i : i + c] for i in range(0, N, c)]
    both = jax.jit(lambda th, xs: gram(*[jacobian(th, xs)] * 2))
    fns = {"jac": jax.jit(jacobian), "gram": jax.jit(gram), "both": both}

    def precompile() -> None:
        if c == N:
            fns["both"] = fns["both"].lower(theta, x).compile()
            return
        shapes = jax.eval_shape(jacobian, theta, groups[0])
        fns["jac"] = fns["jac"].lower(theta, groups[0]).compile()
        fns["gram"] = fns["gram"].lower(shapes, shapes).compile()

    def call():
        if c == N:
            return np.asarray(fns["both"](theta, x))
        rows = c * LENGTH * D
        out = np.zeros((N * LENGTH * D, N * LENGTH * D))
        for a in range(len(groups)):
            ja = fns["jac"](theta, groups[a])
            for b in range(a, len(groups)):
                block = np.asarray(fns["gram"](ja, ja if a == b else fns["jac"](theta, groups[b])))
                out[a * rows : (a + 1) * rows, b * rows : (b + 1) * rows] = block
                out[b * rows : (b + 1) * rows, a * rows : (a + 1) * rows] = block.T
        return out

    call.precompile = precompile
    return call


def worker(args) -> dict:
    import numpy as np

    kind, m = args.worker[0], int(args.worker[1])
    call = kernel_call(kind, args.cell, m, tuple(args.trainable.split(",")), args.problem, args.max_bytes, args.jac_gib)
    result, out = bench_nt.time_call(call, args.repeats, args.warmup)
    if args.save_kernel:
        np.save(args.save_kernel, out)
    return result


# ----------------------------------------------------------------------------- driver (main environment)


def runner(
    cell: str,
    trainable: tuple[str, ...],
    problems: Path | None,
    args,
    save_kernels: Path | None = None,
    results: list[dict] | None = None,
    warmup: str | None = None,
):
    """A bench_nt.run_one for one case: its kind's worker in this file on the case's problem files
    (problems/<cell>_<m>.npz; None: drawn in the worker), saving kernels to save_kernels/<kind>.npy;
    neural-tangents' kinds are skipped past `args.nt_budget` by their forecast from `results`;
    warmup replaces run_grid's choice (calibration: "compile", so that nt's slow kinds run once)."""

    def run(kind, m, repeats, timeout, max_rss, chosen="call", max_bytes=0) -> dict:
        skip = kind.startswith("nt") and results is not None
        if skip and (skip := bench_nt.predicted_skip(kind, m, results, args.nt_budget, max_rss)):
            return {"status": skip, "peak_gib": 0.0, "wall": 0.0}
        python = str(args.nt_python) if kind.startswith("nt") else sys.executable
        cmd = [python, str(Path(__file__).resolve()), "--worker", kind, str(m), "--repeats", str(repeats)]
        cmd += ["--warmup", warmup or chosen, "--max-bytes", str(max_bytes)]
        cmd += ["--cell", cell, "--trainable", ",".join(trainable), "--jac-gib", str(args.jac_gib)]
        cmd += ["--problem", str(problems / f"{cell}_{m}.npz") if problems else ""]
        if save_kernels:
            cmd += ["--save-kernel", str(save_kernels / f"{kind}.npy")]
        return bench_nt.watch(cmd, timeout, max_rss, env=ENV)

    return run


def agreement(kinds, directory: Path) -> dict[str, float]:
    """max |K - K_structured| / max |K_structured| of each saved kernel."""
    import numpy as np

    ref = np.load(directory / "structured.npy")
    scale = np.abs(ref).max()
    return {
        k: float(np.abs(np.load(directory / f"{k}.npy") - ref).max() / scale)
        for k in kinds
        if k != "structured" and (directory / f"{k}.npy").exists()
    }


def elman_old_new(args, runs: list[dict], save) -> None:
    """The one-layer Elman structured kernel (bench_nt.py's worker) of OLD_COMMIT and of this tree, alternated."""
    old = Path(tempfile.gettempdir()) / "old"
    created = not old.exists()
    if created:
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), OLD_COMMIT], cwd=ROOT, check=True, capture_output=True
        )
    try:
        trees = {"old": old, "new": ROOT}
        for m in args.elman_sizes:
            for rnd in range(1, args.elman_rounds + 1):
                for label in ("old", "new") if rnd % 2 else ("new", "old"):
                    tree = trees[label]
                    cmd = [sys.executable, str(tree / "benchmarks" / "bench_nt.py"), "--worker", "structured", str(m)]
                    cmd += ["--repeats", str(args.elman_repeats), "--warmup", "call", "--max-bytes", "0"]
                    r = {"kind": f"elman_{label}", "m": m, "round": rnd}
                    r |= bench_nt.watch(cmd, args.timeout, args.max_rss, env={"PYTHONPATH": str(tree)})
                    runs.append(r)
                    shown = f"{r['seconds']:.3f} s" if r["status"] == "ok" else r["status"][:160]
                    print(f"m={m:>5} elman {label} round {rnd}: {shown}", flush=True)
                    save()
    finally:
        if created:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False)


def elman_lines(runs: list[dict]) -> str:
    """Per width: median seconds of old and new and their ratio, and whether the kernels agree."""
    import statistics

    lines = []
    for m in sorted({r["m"] for r in runs}):
        ok = {
            label: [r for r in runs if r["m"] == m and r["kind"] == f"elman_{label}" and r["status"] == "ok"]
            for label in ("old", "new")
        }
        if not (ok["old"] and ok["new"]):
            lines.append(f"m={m}: missing runs")
            continue
        t = {label: statistics.median(r["seconds"] for r in rs) for label, rs in ok.items()}
        frob = [r["frobenius"] for rs in ok.values() for r in rs]
        agree = max(frob) / min(frob) - 1
        lines.append(
            f"m={m}: old {t['old']:.3f} s, new {t['new']:.3f} s (medians of {len(ok['old'])}), "
            f"old/new {t['old'] / t['new']:.2f}; Frobenius norms agree to {agree:.1e}"
        )
    return "\n".join(lines)


def lead(results: list[dict], kinds) -> str:
    """Per width: the fastest other implementation over the structured kernel."""
    table = bench_nt.summarize(results, kinds)
    parts = []
    for m in sorted({m for _, m in table}):
        ref = table.get(("structured", m), {})
        others = [(e, k) for (k, mm), e in table.items() if mm == m and k != "structured" and e["status"] == "ok"]
        others = [(e["seconds"], k) for e, k in others]
        if others and ref.get("status") == "ok":
            t, k = min(others)
            parts.append(f"m={m}: {t / ref['seconds']:.1f}x ({k})")
    return "fastest other / structured: " + ", ".join(parts)


def plot(record: dict, path: Path) -> None:
    """Per case with every weight trained: seconds against m of each implementation; then the speed-up of
    the structured kernel over each other implementation, every case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    colors = dict(zip(KINDS, sns.color_palette("colorblind", len(KINDS)), strict=True))
    cases = [c for c in record["cases"] if not c.endswith("_W")]
    fig, axes = plt.subplots(1, len(cases) + 1, figsize=(5.5 * (len(cases) + 1), 5.2), constrained_layout=True)
    marker = {"gru": "o", "lstm": "s"}
    for ax, case in zip(axes, cases, strict=False):  # the last axes: the speed-ups
        table = bench_nt.summarize(record["cases"][case], KINDS)
        for kind in KINDS:
            pts = sorted((m, e["seconds"]) for (k, m), e in table.items() if k == kind and e["status"] == "ok")
            if pts:
                style = "-o" if kind == "structured" else "--s" if kind == "jacrev_vmap" else ":^"
                ax.plot(*zip(*pts, strict=True), style, color=colors[kind], label=bench_nt.LABELS[kind])
                if kind != "structured":
                    ref = {m: e["seconds"] for (k, m), e in table.items() if k == "structured" and e["status"] == "ok"}
                    ratio = [(m, t / ref[m]) for m, t in pts if m in ref]
                    axes[-1].plot(
                        *zip(*ratio, strict=True),
                        "-" + marker[case.split("_")[0]],
                        color=colors[kind],
                        label=f"{case.upper()}: {kind}",
                    )
        ax.set_ylabel("seconds per call (median of runs)")
    axes[-1].axhline(1.0, color="0.5", lw=0.8)
    axes[-1].set_ylabel("other seconds / ntk_rnn structured seconds")
    titles = [f"{c.upper()} (W, A, b trained), n={N}, L={LENGTH}, d_x={DX}, d={D}, float64" for c in cases]
    bench_nt.finish_figure(fig, axes, [*titles, "speed-up of the structured kernel (alternated runs)"], path)


def report(record: dict) -> str:
    """The tables and lines the docs quote."""
    parts = []
    for case, results in record["cases"].items():
        kinds = [k for k in KINDS if any(r["kind"] == k for r in results)]
        trained = ", ".join(TRAINABLE["_W" if case.endswith("_W") else ""])
        parts += [f"### {case}: {trained} trained", bench_nt.markdown(results, kinds), lead(results, kinds)]
        parts += [
            f"m={record['problem']['calibration_m']} agreement with structured (max abs diff / max abs): "
            + ", ".join(f"{k} {v:.1e}" for k, v in record["agreement"].get(case, {}).items())
        ]
    parts += ["### structured alone, one cold call"]
    for cell in dict.fromkeys(r["cell"] for r in record["max_m"]):
        lines = bench_nt.max_m_lines([r for r in record["max_m"] if r["cell"] == cell]).splitlines()
        parts.append("\n".join(f"{cell}: {line}" for line in lines))
    parts += ["### Elman structured kernel, old (" + OLD_COMMIT + ") / new", elman_lines(record["elman"])]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument(
        "--w-only-kinds",
        nargs="*",
        default=["structured"],
        choices=KINDS,
        help="implementations of the W-only cases (none: no W-only case)",
    )
    parser.add_argument("--w-only-sizes", type=int, nargs="*", default=[1024])
    parser.add_argument("--calibration", type=int, default=CALIBRATION, help="m of the agreement and forecast runs")
    parser.add_argument("--calibration-timeout", type=float, default=240.0)
    parser.add_argument("--max-m", type=int, nargs="*", default=list(MAX_M), help="structured-only widths after")
    parser.add_argument("--max-m-cells", nargs="*", default=["lstm"], choices=CELLS)
    parser.add_argument("--max-m-bytes", type=float, default=8.0, help="structured max_bytes (GiB) for --max-m")
    parser.add_argument("--max-m-rss", type=float, default=22.0, help="kill a --max-m run above this resident GiB")
    parser.add_argument("--rounds", type=int, default=2, help="runs (subprocesses) per implementation and size")
    parser.add_argument("--rounds-large", type=int, default=1, help="--rounds at m > 1024")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per run, after the warm-up call")
    parser.add_argument("--budget", type=float, default=300.0, help="skip sizes predicted above this s per call")
    parser.add_argument("--nt-budget", type=float, default=40.0, help="--budget of neural-tangents' kinds")
    parser.add_argument("--timeout", type=float, default=600.0, help="kill a run after this many seconds")
    parser.add_argument("--max-rss", type=float, default=20.0, help="kill a run above this resident GiB")
    parser.add_argument("--warmup-limit", type=float, default=10.0, help="runs predicted slower: compile only")
    parser.add_argument("--no-forecast", action="store_true", help="run every size")
    parser.add_argument("--elman-sizes", type=int, nargs="*", default=[512, 1024])
    parser.add_argument("--elman-rounds", type=int, default=2)
    parser.add_argument("--elman-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where bench_cells.json/.png go")
    parser.add_argument("--jac-gib", type=float, default=JAC_GIB, help="jacrev_vmap: largest J (GiB) built whole")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--nt-python", type=Path, default=bench_nt.NT_PYTHON, help="the .venv-nt interpreter")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "M"), help=argparse.SUPPRESS)
    for flag in ("--cell", "--trainable", "--problem", "--save-kernel"):
        parser.add_argument(flag, default="", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", default="call", choices=("call", "compile", "none"), help=argparse.SUPPRESS)
    parser.add_argument("--max-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    sys.path.insert(0, str(ROOT))
    json_path, png_path = args.out / "bench_cells.json", args.out / "bench_cells.png"
    if args.plot_only:
        record = json.loads(json_path.read_text())
        plot(record, png_path)
        print(report(record))
        return
    if not args.nt_python.exists() and any(k.startswith("nt") for k in args.kinds):
        sys.exit(f"{args.nt_python} is missing: `make reference` builds the neural-tangents environment")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    record = {
        "problem": {
            "n": N,
            "L": LENGTH,
            "d_x": DX,
            "d": D,
            "positions": "0..L-1",
            "sigma_b2": SIGMA_B2,
            "calibration_m": args.calibration,
            "parameterization": "paper",
            "cells": args.cells,
        },
        "session": {
            "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {
                "platform": platform.platform(),
                "cpu": cpu,
                "cpu_count": os.cpu_count(),
                "mem_gib": bench_nt._mem_total_gib(),
            },
            "code": bench_nt._code_state(),
            "settings": {k: str(v) for k, v in vars(args).items() if v and k not in ("worker", "plot_only", "warmup")},
        },
        "cases": {},
        "agreement": {},
        "max_m": [],
        "elman": [],
    }

    def save() -> None:
        bench_nt.write_json(record, json_path)

    elman_old_new(args, record["elman"], save)
    problems = Path(tempfile.mkdtemp(prefix="bench_cells_"))
    try:
        for cell in args.cells:
            for m in sorted({args.calibration, *args.sizes, *args.w_only_sizes}):
                write_problem(cell, m, problems / f"{cell}_{m}.npz")
            for suffix, trainable in TRAINABLE.items():
                kinds = tuple(k for k in (args.kinds if not suffix else args.w_only_kinds) if k in KINDS)
                if not kinds:
                    continue
                case = cell + suffix
                results = record["cases"][case] = []
                print(f"--- {case}: {', '.join(trainable)} trained", flush=True)
                saved = problems / case
                saved.mkdir()
                calibration = argparse.Namespace(**{**vars(args), "rounds": 1, "timeout": args.calibration_timeout})
                run = runner(cell, trainable, problems, args, saved, results, warmup="compile")
                bench_nt.run_grid(kinds, [args.calibration], calibration, results, save, run)
                record["agreement"][case] = agreement(kinds, saved)
                print(f"m={args.calibration} agreement: {record['agreement'][case]}", flush=True)
                sizes = args.sizes if not suffix else args.w_only_sizes
                run = runner(cell, trainable, problems, args, None, results)
                for m in sizes:
                    rounds = args.rounds if m <= 1024 else args.rounds_large
                    grid = argparse.Namespace(**{**vars(args), "rounds": rounds})
                    bench_nt.run_grid(kinds, [m], grid, results, save, run)
            for path in problems.glob(f"{cell}_*.npz"):
                path.unlink()
    finally:
        shutil.rmtree(problems, ignore_errors=True)
    if "structured" in args.kinds:
        for cell in args.max_m_cells:
            run = runner(cell, TRAINABLE[""], None, args)
            for m in args.max_m:  # one cold call each (compilation included): this is about fitting
                max_bytes = int(args.max_m_bytes * 2**30)
                r = {"kind": "structured_max_m", "cell": cell, "m": m, "round": 1, "max_bytes": max_bytes}
                r |= run("structured", m, 1, args.timeout, args.max_m_rss, chosen="none", max_bytes=max_bytes)
                record["max_m"].append(r)
                shown = f"{r['seconds']:.2f} s" if r["status"] == "ok" else r["status"]
                print(f"m={m:>5} {cell} structured (max-m) {shown}  peak {r['peak_gib']:.2f} GiB", flush=True)
                save()
                if r["status"] != "ok":
                    break
    record["fingerprints"] = {case: bench_nt.check_fingerprints(rs) for case, rs in record["cases"].items()}
    save()
    plot(record, png_path)
    print(report(record))
    bad = {c: {k: v for k, v in a.items() if not v <= AGREEMENT} for c, a in record["agreement"].items()}
    if any(bad.values()):
        print(f"kernels disagree beyond {AGREEMENT:g}: {bad}", flush=True)


if __name__ == "__main__":
    main()
