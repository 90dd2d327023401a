"""Studies, sweeps, result files, figures and the CLI, on small sizes."""

import json
import signal
from dataclasses import replace as dataclasses_replace

import jax
import numpy as np
import pandas as pd
import pytest

from analysis.kernel_spectrum import SpectrumConfig, spectrum_table
from analysis.linearization import LinearizationConfig, linearization_table, trajectory_table
from analysis.sweep import interruptible, run_sweep
from analysis.width_training import WidthTrainingConfig, training_table
from figures.linearization import gap_figure, gap_fits, loss_comparison_figure, trajectory_figure
from figures.spectrum import spectrum_figure
from figures.style import save_figure
from figures.training import loss_curves_figure, movement_figure, movement_fits
from ntk_rnn import cli
from ntk_rnn.storage import read_table, write_json, write_table


def test_sweep_resumes_after_an_interruption(tmp_path):
    calls = []

    def compute(unit):
        calls.append(unit["k"])
        if unit["k"] == 2 and len(calls) == 3:
            raise KeyboardInterrupt  # the first run dies on the third unit
        return pd.DataFrame({"value": [unit["k"] ** 2]})

    units = [{"k": k} for k in range(4)]
    config = SpectrumConfig()
    with pytest.raises(KeyboardInterrupt):
        run_sweep("toy", config, units, compute, tmp_path, progress=False)
    assert calls == [0, 1, 2]
    assert len(list((tmp_path / "toy").glob("*.csv"))) == 2
    table = run_sweep("toy", config, units, compute, tmp_path, progress=False)
    assert calls == [0, 1, 2, 2, 3]  # only the unfinished units ran again
    assert list(table["k"]) == [0, 1, 2, 3] and list(table["value"]) == [0, 1, 4, 9]
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_signal_lost_in_a_finalizer_still_stops_the_sweep_at_the_next_unit(tmp_path, lost_interrupt):
    calls = []

    def compute(unit):
        calls.append(unit["k"])
        if unit["k"] == 1:
            lost_interrupt()
        return pd.DataFrame({"value": [unit["k"]]})

    units = [{"k": k} for k in range(4)]
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interruptible():
        run_sweep("toy", SpectrumConfig(), units, compute, tmp_path, progress=False)
    assert calls == [0, 1]  # unit 1 finished (the interrupt was dropped inside it), unit 2 never started
    assert lost_interrupt.dropped == [KeyboardInterrupt]  # Python dropped the handler's exception
    assert len(list((tmp_path / "toy").glob("*.csv"))) == 2
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored
    assert run_sweep("toy", SpectrumConfig(), units, compute, tmp_path, progress=False)["k"].tolist() == [0, 1, 2, 3]


def test_an_ignored_signal_stays_ignored():  # e.g. SIGINT in a shell's background job
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interruptible():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_extended_sweep_reuses_finished_units(tmp_path):
    calls = []

    def compute(unit):
        calls.append(unit["width"])
        return pd.DataFrame({"value": [unit["width"]]})

    run_sweep(
        "toy", SpectrumConfig(widths=(8, 16)), [{"width": 8}, {"width": 16}], compute, tmp_path, False, ("widths",)
    )
    run_sweep("toy", SpectrumConfig(widths=(8, 16, 32)), [{"width": w} for w in (8, 16, 32)], compute, tmp_path,
              False, ("widths",))  # fmt: skip
    assert calls == [8, 16, 32]
    run_sweep("toy", SpectrumConfig(widths=(8,), n=5), [{"width": 8}], compute, tmp_path, False, ("widths",))
    assert calls == [8, 16, 32, 8]  # another non-axis field is another computation


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "t.csv"
    write_table(pd.DataFrame({"a": [1]}), path)

    class Boom(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_table(Boom({"a": [2]}), path)
    assert read_table(path)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]
    write_json({"x": 1}, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": 1}


@pytest.fixture(scope="module")
def small_tables(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    spectrum = spectrum_table(
        SpectrumConfig(widths=(16, 32, 64), seeds=(0, 1), n=4, length=4, input_dim=4), cache, progress=False
    )
    training = training_table(
        WidthTrainingConfig(widths=(32, 64, 128), seeds=(0, 1), n=4, length=4, input_dim=4, steps=40, kernel_every=20),
        cache,
        progress=False,
    )
    return spectrum, training


def test_spectrum_table_is_tidy_and_positive(small_tables):
    spectrum, _ = small_tables
    assert set(spectrum.columns) == {
        "dataset", "kernel", "width", "seed", "rank", "eigenvalue_over_m", "label_energy", "random_label_energy"
    }  # fmt: skip
    # synthetic: 4 sequences x 3 positions; digits: 4 x 7; per width and seed, plus the limit per seed
    sizes = spectrum.groupby(["dataset", "kernel", "width", "seed"], dropna=False).size()
    assert set(sizes.loc["synthetic"]) == {12} and set(sizes.loc["digits"]) == {28}
    assert sizes.loc[("digits", "limit")].index.get_level_values("width").isna().all()
    assert len(sizes.loc[("digits", "empirical")]) == 6 and len(sizes.loc[("digits", "limit")]) == 2
    assert np.all(spectrum["eigenvalue_over_m"] > 0)
    energy = spectrum.groupby(["dataset", "kernel", "width", "seed"], dropna=False)[
        ["label_energy", "random_label_energy"]
    ].sum()
    np.testing.assert_allclose(energy.to_numpy(), 1.0, rtol=1e-10)


def test_label_energy_of_an_eigenvector_sits_on_it():
    from analysis.kernel_spectrum import label_energy

    K = np.array([[2.0, 1.0], [1.0, 2.0]])
    _, vectors = np.linalg.eigh(K)
    np.testing.assert_allclose(label_energy(vectors, np.array([1.0, 1.0])), [0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(label_energy(vectors, np.array([1.0, 0.0])), [0.5, 0.5], rtol=1e-12)


def test_training_table_and_fits(small_tables):
    _, training = small_tables
    assert {"width", "seed", "step", "loss", "kernel_drift", "lr", "predicted_log_rate"} <= set(training.columns)
    assert set(training.groupby(["width", "seed"]).size()) == {5}
    fits = movement_fits(training)
    assert set(fits) == {"kernel_drift", "w_distance_fro"} and all(np.isfinite(f["slope"]) for f in fits.values())


def test_figures_render_with_labels_and_log_axes(small_tables, tmp_path):
    spectrum, training = small_tables
    fig = spectrum_figure(spectrum)
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log", "linear"]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    paths = save_figure(fig, tmp_path, "spectrum")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
    fig = loss_curves_figure(training)
    assert fig.axes[0].get_yscale() == "log"
    fig = movement_figure(training)
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in fig.axes)
    assert any("slope" in t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts())


def test_cli_kernel_and_train(tmp_path, capsys):
    out = tmp_path / "k.npz"
    args = ["--width", "16", "--n", "4", "--length", "4", "--input-dim", "4"]
    assert cli.main(["kernel", *args, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    saved = np.load(out)
    assert saved["kernel"].shape == (12, 12) and summary["lambda_min"] == pytest.approx(saved["eigenvalues"][0])
    assert cli.main(["train", *args, "--steps", "20", "--kernel-every", "10", "--out", str(tmp_path / "run")]) == 0
    history = read_table(tmp_path / "run" / "history.csv")
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert list(history["step"]) == [0, 10, 20] and record["model"]["width"] == 16
    assert "jax" in record["environment"]["packages"]


def test_cli_reports_divergence_and_bad_input(tmp_path, capsys):
    args = ["--width", "16", "--n", "4", "--length", "4", "--input-dim", "4"]
    run = tmp_path / "bad"
    code = cli.main(["train", *args, "--lr", "5", "--batch-size", "1", "--steps", "200", "--record-every", "5",
                     "--kernel-every", "0", "--out", str(run)])  # fmt: skip
    assert code == 1
    assert "diverged at step" in capsys.readouterr().err
    assert read_table(run / "history.csv")["step"].iloc[0] == 0
    assert "error" in json.loads((run / "record.json").read_text())
    assert cli.main(["kernel", "--data", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    assert cli.main(["kernel", *args, "--delta", "5"]) == 2
    assert "delta" in capsys.readouterr().err


def test_linearization_study_and_figures(tmp_path):
    config = LinearizationConfig(widths=(16, 64, 256), seeds=(0, 1), n_train=4, n_test=3, length=4, input_dim=4,
                                 steps=20, record_every=10)  # fmt: skip
    table = linearization_table(config, tmp_path, progress=False)
    assert set(table.groupby(["dataset", "width", "seed"]).size()) == {3}
    assert table["closed_form_gap_train"].max() < 1e-8
    fits = gap_fits(table)
    assert set(fits["quantity"]) == {"gap_train", "gap_test", "kernel_drift", "w_distance_true"}
    assert np.isfinite(fits["slope"]).all() and (fits["ci_low"] <= fits["slope"]).all()
    traced = trajectory_table(dataclasses_replace(config, widths=(16, 64), seeds=(0,), datasets=("synthetic",),
                                                  trace_points=1), tmp_path, progress=False)  # fmt: skip
    assert set(traced["model"]) == {"true", "lin", "closed_form"}
    for fig in (loss_comparison_figure(table), gap_figure(table), trajectory_figure(traced)):
        assert all(ax.get_xlabel() or ax.get_ylabel() for ax in fig.axes)
    assert all(ax.get_yscale() == "log" for ax in gap_figure(table).axes)


def test_cli_linearized(tmp_path):
    out = tmp_path / "lin"
    args = ["--width", "16", "--n", "6", "--n-test", "2", "--length", "4", "--input-dim", "4", "--steps", "20"]
    assert cli.main(["linearized", *args, "--trace-points", "1", "--out", str(out)]) == 0
    history = read_table(out / "history.csv")
    assert list(history["step"]) == [0, 10, 20] and history["closed_form_gap_train"].max() < 1e-8
    assert set(read_table(out / "outputs.csv")["model"]) == {"true", "lin", "closed_form"}
    assert cli.main(["linearized", *args, "--lr-scale", "3", "--out", str(out)]) == 2


def test_eigenvalue_studies_and_figures(tmp_path):
    from analysis.eigenvalues import (
        ConditioningConfig,
        ConvergenceConfig,
        SeparationConfig,
        clustered_first_tokens,
        conditioning_table,
        convergence_table,
        separation_table,
    )
    from figures.eigenvalues import conditioning_figure, convergence_figure, convergence_fits, separation_figure
    from ntk_rnn.data import first_token_separation, synthetic_sequences, token_assumption_error

    x = synthetic_sequences(jax.random.key(0), 6, 3, 5, delta=0.5).x
    squeezed = clustered_first_tokens(x, 0.1)
    assert first_token_separation(squeezed) == pytest.approx(0.1, rel=1e-9)
    assert token_assumption_error(squeezed) < 1e-12
    config = SeparationConfig(
        lengths=(2, 3), deltas=(0.05, 0.4), ns=(3, 4), digits_lengths=(2, 3), seeds=(0,), n=3, input_dim=4, width=64
    )
    sep = separation_table(config, tmp_path, progress=False)
    digits = sep[sep["grid"] == "digits n-L"]
    assert len(digits) == 2 * 2 * 2 and digits["delta"].isna().all() and np.all(digits["lambda_min"] > 0)
    limit = sep[(sep["grid"] == "L-delta") & (sep["kernel"] == "limit")]
    # sequences that differ only in their first tokens: a smaller separation, a smaller lambda_min
    by_delta = limit.groupby("delta")["lambda_min"].mean()
    assert by_delta.loc[0.05] < by_delta.loc[0.4]
    conv = convergence_table(ConvergenceConfig(widths=(32, 128), seeds=(0,), activations=("relu", "erf"), n=2,
                                               length=3, input_dim=3), tmp_path, progress=False)  # fmt: skip
    assert set(convergence_fits(conv)["activation"]) == {"relu", "erf"}
    cond = conditioning_table(ConditioningConfig(lengths=(2, 3), activations=("relu", "tanh"), seeds=(0,), n=3,
                                                 input_dim=4, width=32), tmp_path, progress=False)  # fmt: skip
    limit = cond[cond["kernel"] == "limit"].set_index(["parameterization", "activation", "length"])["condition"]
    # in the paper's 1/m scaling tanh acts through its slope at 0: its limit is the linear one (gain 1)
    linear = conditioning_table(ConditioningConfig(lengths=(2, 3), activations=("linear",), seeds=(0,), n=3,
                                                   input_dim=4, width=32), tmp_path, progress=False)  # fmt: skip
    linear = linear[linear["kernel"] == "limit"].set_index(["parameterization", "length"])["condition"]
    assert limit.loc[("paper", "tanh", 3)] == pytest.approx(linear.loc[("paper", 3)], rel=1e-8)
    assert len([ax for ax in separation_figure(sep).axes if ax.get_label() != "<colorbar>"]) == 6
    for fig in (separation_figure(sep), convergence_figure(conv), conditioning_figure(cond)):
        assert all(ax.get_xlabel() for ax in fig.axes if ax.get_label() != "<colorbar>")


def test_probe_studies_and_figures(tmp_path):
    """The five probe studies on tiny sizes: tidy tables, the relu limit values, rendered figures."""
    from analysis import probes as studies
    from figures import probes as figures

    small = {"seeds": (0,), "input_dim": 4}
    config = studies.ForwardConfig(activations=("relu", "linear"), sigma_w2s=(2.0,), widths=(16, 32), n=2, length=4)
    forward = studies.forward_table(dataclasses_replace(config, **small), tmp_path, progress=False)
    limit = forward[(forward["kernel"] == "limit") & (forward["activation"] == "relu")]
    np.testing.assert_allclose(limit["norm"], np.sqrt(np.arange(1, 5)), rtol=1e-12)  # ||h_l||^2 -> l
    config = studies.BackwardConfig(activations=("relu",), widths=(16,), product_widths=(16,), n=2, length=4)
    backward = studies.backward_table(dataclasses_replace(config, **small), tmp_path, progress=False)
    assert set(backward["quantity"]) == {"backward", "product"}
    np.testing.assert_allclose(backward.loc[backward["kernel"] == "limit", "value"], 1.0, rtol=1e-12)
    config = studies.PerturbationConfig(widths=(16,), omegas=(0.1, 0.5, 2.0), n=3, length=4, ascent_steps=2)
    perturbation = studies.perturbation_table(dataclasses_replace(config, **small), tmp_path, progress=False)
    assert len(perturbation) == 3 * 3 * 4
    first = perturbation["step"] == 0  # h_1 = phi(A x_1) does not depend on W
    assert np.all(perturbation.loc[first, "hidden_change"] == 0)
    assert np.all(perturbation.loc[~first, "hidden_change"] > 0)
    fits = figures.perturbation_fits(perturbation)
    assert set(fits["measure"]) <= set(figures.PAPER_EXPONENTS) and np.all(np.isfinite(fits["exponent"]))
    config = studies.TrainingProbeConfig(deltas=(0.2, 0.5), width=32, n=3, length=3, steps=20, record_every=10,
                                         kernel_every=10, omegas=(0.1, 1.0))  # fmt: skip
    training = studies.training_probe_table(dataclasses_replace(config, **small), tmp_path, progress=False)
    assert set(training["source"]) == {"GD", "SGD", "random"}
    checkpoints = training[training["grad_sq_norm"].notna()]
    assert np.all(checkpoints["gradient_ratio"] >= 1 - 1e-9)  # ||grad f||^2 = r^T K r >= 2 lambda_min f
    rendered = [figures.forward_figure(forward), figures.backward_figure(backward),
                figures.perturbation_figure(perturbation), figures.gradient_bound_figure(training),
                figures.sign_flip_figure(training)]  # fmt: skip
    for fig in rendered:
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes if ax.has_data())
