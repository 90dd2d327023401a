"""Write neural-tangents oracle files for tests/ntk_rnn/test_oracle.py. Runs in .venv-nt (`make reference`), never
in .venv.

This script must not import ntk_rnn: it runs on neural-tangents 0.6.5 with JAX 0.4.25 (see
reference/requirements-nt.txt), and it has its own transcription of the RNN (theory.md §1 and
ntk_rnn/network/config.py's parameterizations):

    h_0 = 0,  h_l = phi(c_W W h_{l-1} + c_A A x_l + c_b b),  y_l = c_B B h_l  (l = 1..L),

readout "all" keeps y_l at the chosen positions (n, P, d), "last" gives c_B B h_L (n, d) and "mean"
c_B B mean_l h_l (n, d). All randomness is numpy's (seeded per case) and every input and parameter is
saved, so the main environment evaluates ntk_rnn at exactly these arrays.

For each case, in `OUT/<case>.npz` (written atomically) it stores:
  x1 (n1, L1, d_x) training inputs, x2 (n2, L2, d_x) test inputs, param_<name> for W, A, B (and b),
  y_train (targets, shaped like f(x1)), f0_train, f0_test (the outputs at init);
  kernel_train_<IMPL> = nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=IMPL)(x1, None, theta)
    and kernel_test_train_<IMPL> (x2, x1), in nt's layout (n_a, n_b, o_a1, o_b1, ...), for every
    implementation that runs (failures go to the manifest);
  shift_<name> (trainable params after a seeded shift), lin_x1/lin_x2 = nt.linearize(f_full, theta0)
    at the shifted params (f_full = the model's whole output: (n, L, d) or (n, d)), true_x1/true_x2 =
    the model itself there;
  predict_lr, predict_times, predict_train (T, *f0_train.shape), predict_test (T, *f0_test.shape) =
    nt.predict.gradient_descent_mse(kernel_train, y_train, learning_rate=predict_lr, trace_axes=())
    at each time, from the JACOBIAN_CONTRACTION kernels. nt's flow is on the loss 1/(2N) ||f - y||^2
    (N = y_train.size): f_t - y = exp(-lr t K / N) (f_0 - y).
and OUT/manifest.json records the versions, the cases, the timings and any implementation failure.

    .venv-nt/bin/python reference/make_oracle.py [--out reference/oracle]
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # neural_tangents imports tensorflow; keep its logs quiet

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import neural_tangents as nt  # noqa: E402

IMPLEMENTATIONS = ("JACOBIAN_CONTRACTION", "NTK_VECTOR_PRODUCTS", "STRUCTURED_DERIVATIVES", "AUTO")
ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "erf": jax.scipy.special.erf, "linear": lambda u: u}

# name, seed, shapes (n1, n2, L1, L2, d_x, d, m), model, trainable, readout, positions (None: 1..L-1)
CASES: list[dict] = [
    dict(name="paper_relu_W", seed=1, n1=4, n2=3, L1=5, L2=6, dx=3, d=1, m=32, activation="relu",
         parameterization="paper", sigma_b2=0.0, trainable=["W"], readout="all", positions=None),
    dict(name="paper_relu_W_big", seed=2, n1=8, n2=4, L1=8, L2=8, dx=8, d=1, m=128, activation="relu",
         parameterization="paper", sigma_b2=0.0, trainable=["W"], readout="all", positions=None),
    dict(name="paper_relu_WAB_d2", seed=3, n1=3, n2=2, L1=4, L2=4, dx=3, d=2, m=24, activation="relu",
         parameterization="paper", sigma_b2=0.0, trainable=["W", "A", "B"], readout="all", positions=[0, 2, 3]),
    dict(name="paper_linear_A", seed=4, n1=3, n2=2, L1=4, L2=5, dx=4, d=1, m=16, activation="linear",
         parameterization="paper", sigma_b2=0.0, trainable=["A"], readout="all", positions=[0, 1, 2, 3]),
    dict(name="standard_tanh_all_bias", seed=5, n1=3, n2=3, L1=5, L2=5, dx=3, d=2, m=20, activation="tanh",
         parameterization="standard", sigma_b2=0.1, sigma_w2=1.0, trainable=["W", "A", "b", "B"], readout="all",
         positions=[4]),
    dict(name="standard_relu_b_mean", seed=6, n1=4, n2=2, L1=4, L2=3, dx=3, d=1, m=24, activation="relu",
         parameterization="standard", sigma_b2=0.5, trainable=["b"], readout="mean", positions=None),
    dict(name="ntk_erf_all_last", seed=7, n1=4, n2=3, L1=5, L2=4, dx=3, d=1, m=32, activation="erf",
         parameterization="ntk", sigma_b2=0.05, sigma_w2=1.5, sigma_u2=1.0, trainable=["W", "A", "b", "B"],
         readout="last", positions=None),
    dict(name="ntk_tanh_WB_mean_d3", seed=8, n1=3, n2=2, L1=4, L2=6, dx=2, d=3, m=16, activation="tanh",
         parameterization="ntk", sigma_b2=0.0, trainable=["W", "B"], readout="mean", positions=None),
]  # fmt: skip
DEFAULT_SIGMAS = {"sigma_w2": 2.0, "sigma_u2": 2.0, "sigma_v2": 1.0}


def full_case(case: dict) -> dict:
    """The case with every variance filled in (defaults as in ntk_rnn.RNNConfig)."""
    return {**DEFAULT_SIGMAS, **case}


def param_names(case: dict) -> list[str]:
    return ["W", "A", "b", "B"] if case["sigma_b2"] > 0 else ["W", "A", "B"]


def init_std_and_multipliers(case: dict) -> tuple[dict[str, float], dict[str, float]]:
    """Entry std and forward multiplier of each parameter for the case's parameterization."""
    m, dx, d = case["m"], case["dx"], case["d"]
    var = {"W": case["sigma_w2"], "A": case["sigma_u2"], "b": case["sigma_b2"], "B": case["sigma_v2"]}
    names = param_names(case)
    if case["parameterization"] == "ntk":
        fan = {"W": m, "A": dx, "b": 1, "B": m}
        return {k: 1.0 for k in names}, {k: math.sqrt(var[k] / fan[k]) for k in names}
    fan = {"paper": {"W": m, "A": m, "b": m, "B": d}, "standard": {"W": m, "A": dx, "b": 1, "B": m}}
    fan = fan[case["parameterization"]]
    return {k: math.sqrt(var[k] / fan[k]) for k in names}, {k: 1.0 for k in names}


def shapes(case: dict) -> dict[str, tuple[int, ...]]:
    m, dx, d = case["m"], case["dx"], case["d"]
    return {k: s for k, s in {"W": (m, m), "A": (m, dx), "b": (m,), "B": (d, m)}.items() if k in param_names(case)}


def model(case: dict, frozen: dict, positions: tuple[int, ...] | None):
    """f(theta, x): x (n, L, d_x) -> outputs at `positions` (n, P, d), all outputs (n, L, d) when positions is
    None and readout is "all", or (n, d) for readouts "last" and "mean"."""
    _, c = init_std_and_multipliers(case)
    phi = ACTIVATIONS[case["activation"]]

    def f(theta, x):
        p = {**frozen, **theta}
        bias = c["b"] * p["b"] if "b" in p else 0.0

        def step(h, x_t):
            h = phi(c["W"] * h @ p["W"].T + c["A"] * x_t @ p["A"].T + bias)
            return h, h

        h0 = jnp.zeros((x.shape[0], case["m"]), dtype=x.dtype)
        _, hs = jax.lax.scan(step, h0, jnp.swapaxes(x, 0, 1))
        hs = jnp.swapaxes(hs, 0, 1)  # (n, L, m)
        readout = c["B"] * p["B"]
        if case["readout"] == "last":
            return hs[:, -1] @ readout.T
        if case["readout"] == "mean":
            return hs.mean(axis=1) @ readout.T
        y = hs @ readout.T
        return y if positions is None else y[:, np.asarray(positions)]

    return f


def kernel_positions(case: dict, length: int) -> tuple[int, ...] | None:
    """Output positions of the kernel rows: None for per-sequence readouts, else the case's or 1..L-1."""
    if case["readout"] != "all":
        return None
    return tuple(case["positions"]) if case["positions"] is not None else tuple(range(1, length))


def run_case(case: dict) -> tuple[dict[str, np.ndarray], dict]:
    """All oracle arrays of one case, and its manifest entry."""
    case = full_case(case)
    rng = np.random.default_rng(case["seed"])
    std, _ = init_std_and_multipliers(case)
    params = {k: rng.standard_normal(s) * std[k] for k, s in shapes(case).items()}
    x1 = rng.standard_normal((case["n1"], case["L1"], case["dx"]))
    x2 = rng.standard_normal((case["n2"], case["L2"], case["dx"]))
    trainable = case["trainable"]
    theta0 = {k: jnp.asarray(params[k]) for k in trainable}
    frozen = {k: jnp.asarray(v) for k, v in params.items() if k not in trainable}
    pos1, pos2 = kernel_positions(case, case["L1"]), kernel_positions(case, case["L2"])
    f1, f2 = model(case, frozen, pos1), model(case, frozen, pos2)
    out: dict[str, np.ndarray] = {"x1": x1, "x2": x2, **{f"param_{k}": v for k, v in params.items()}}
    out["f0_train"] = np.asarray(f1(theta0, jnp.asarray(x1)))
    out["f0_test"] = np.asarray(f2(theta0, jnp.asarray(x2)))
    out["y_train"] = rng.standard_normal(out["f0_train"].shape)
    entry: dict = {"case": case, "kernel_seconds": {}, "failures": {}}

    # kernels: the positions differ between x1 and x2 when L1 != L2, so f is a function of the positions,
    # and the test-train kernel needs both; nt's empirical_ntk_fn takes one f, so slice afterwards.
    f_all = model(case, frozen, None)
    for impl in IMPLEMENTATIONS:
        try:
            start = time.perf_counter()
            fn = nt.empirical_ntk_fn(
                f_all, trace_axes=(), vmap_axes=0, implementation=getattr(nt.NtkImplementation, impl)
            )
            k11 = np.asarray(fn(jnp.asarray(x1), None, theta0))
            k21 = np.asarray(fn(jnp.asarray(x2), jnp.asarray(x1), theta0))
            entry["kernel_seconds"][impl] = time.perf_counter() - start
        except Exception as error:  # recorded, not fatal: the test skips what is missing
            entry["failures"][impl] = f"{type(error).__name__}: {error}"[:2000]
            print(f"  {impl}: FAILED {entry['failures'][impl][:200]}", flush=True)
            continue
        if case["readout"] == "all":  # nt layout (n_a, n_b, L_a, L_b, d, d): keep the kernel positions
            k11 = k11[:, :, np.asarray(pos1)][:, :, :, np.asarray(pos1)]
            k21 = k21[:, :, np.asarray(pos2)][:, :, :, np.asarray(pos1)]
        out[f"kernel_train_{impl}"] = k11
        out[f"kernel_test_train_{impl}"] = k21
        print(f"  {impl}: {entry['kernel_seconds'][impl]:.2f} s", flush=True)

    # a direct call with position-selecting f, as a check on the slicing above (same kernel up to rounding)
    fn = nt.empirical_ntk_fn(f1, trace_axes=(), vmap_axes=0, implementation=nt.NtkImplementation.JACOBIAN_CONTRACTION)
    direct = np.asarray(fn(jnp.asarray(x1), None, theta0))
    if "kernel_train_JACOBIAN_CONTRACTION" in out:
        ref = out["kernel_train_JACOBIAN_CONTRACTION"]
        entry["slice_check"] = float(np.abs(direct - ref).max() / np.abs(ref).max())

    # linearize after a seeded shift of the trainable parameters (about 10% of each parameter's scale)
    shift = {k: theta0[k] + 0.1 * float(np.std(params[k])) * rng.standard_normal(params[k].shape) for k in trainable}
    f_lin = nt.linearize(f_all, theta0)
    for name, x in (("x1", x1), ("x2", x2)):
        out[f"lin_{name}"] = np.asarray(f_lin(shift, jnp.asarray(x)))
        out[f"true_{name}"] = np.asarray(f_all(shift, jnp.asarray(x)))
    out.update({f"shift_{k}": np.asarray(v) for k, v in shift.items()})

    # gradient flow predictions from the JACOBIAN_CONTRACTION kernels
    if "kernel_train_JACOBIAN_CONTRACTION" in out:
        k11, k21 = out["kernel_train_JACOBIAN_CONTRACTION"], out["kernel_test_train_JACOBIAN_CONTRACTION"]
        size = out["y_train"].size
        lam = np.linalg.eigvalsh(_to_matrix(k11))
        lam_max = float(lam[-1])
        lr = size / lam_max  # so lr / N = 1 / lambda_max
        times = np.array([0.0, 0.5, 2.0, 10.0, 50.0, 400.0])
        predict = nt.predict.gradient_descent_mse(jnp.asarray(k11), jnp.asarray(out["y_train"]), lr, trace_axes=())
        train_t, test_t = predict(
            jnp.asarray(times), jnp.asarray(out["f0_train"]), jnp.asarray(out["f0_test"]), jnp.asarray(k21)
        )
        out.update(predict_lr=np.array(lr), predict_times=times, predict_train=np.asarray(train_t))
        out["predict_test"] = np.asarray(test_t)
        entry["predict"] = {"lr": lr, "lambda_min": float(lam[0]), "lambda_max": lam_max}
    return out, entry


def _to_matrix(k: np.ndarray) -> np.ndarray:
    """nt layout (n_a, n_b, o_a1, o_b1, o_a2, o_b2, ...) -> (n_a * prod o_a, n_b * prod o_b)."""
    side_a, side_b = list(range(0, k.ndim, 2)), list(range(1, k.ndim, 2))
    rows = math.prod(k.shape[i] for i in side_a)
    return k.transpose(side_a + side_b).reshape(rows, -1)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez through a temporary file in the same directory, renamed into place."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def versions() -> dict[str, str | None]:
    import importlib.metadata

    names = ("neural-tangents", "jax", "jaxlib", "numpy", "scipy", "tensorflow-cpu", "tf2jax", "ml_dtypes")
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "oracle"))
    args = parser.parse_args()
    out_dir = Path(args.out)
    start = time.perf_counter()
    manifest: dict = {
        "versions": versions(),
        "python": platform.python_version(),
        "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "implementations": list(IMPLEMENTATIONS),
        "cases": {},
    }
    status = 0
    for case in CASES:
        print(f"{case['name']}", flush=True)
        try:
            arrays, entry = run_case(case)
        except Exception:
            traceback.print_exc()
            manifest["cases"][case["name"]] = {"case": full_case(case), "error": traceback.format_exc()[-2000:]}
            status = 1
            continue
        arrays["case_json"] = np.array(json.dumps(full_case(case)))
        write_npz(out_dir / f"{case['name']}.npz", arrays)
        manifest["cases"][case["name"]] = entry
    manifest["seconds"] = time.perf_counter() - start
    write_bytes(out_dir / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())
    print(f"wrote {len(CASES)} cases to {out_dir} in {manifest['seconds']:.1f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
