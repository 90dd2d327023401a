"""The library's command line: kernel, train, linearized and classify, their files and their errors."""

import json

import numpy as np
import pytest

from ntk_rnn.apps import cli
from ntk_rnn.storage import read_table


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


def test_cli_kernel_outputs_agree(tmp_path, capsys):
    """--output sharded (LOBPCG extreme eigenvalues), --output npy and --matrix-free agree with --output numpy
    (eigvalsh); --kernel limit runs; flags that do not go together are refused."""
    args = ["--width", "16", "--n", "12", "--length", "5", "--input-dim", "4"]
    runs = {}
    for name, extra in [("numpy", []), ("sharded", ["--output", "sharded"]), ("matfree", ["--matrix-free"]),
                        ("npy", ["--output", "npy", "--path", str(tmp_path / "K.npy")]),
                        ("limit", ["--kernel", "limit", "--output", "sharded"])]:  # fmt: skip
        assert cli.main(["kernel", *args, *extra]) == 0, name
        runs[name] = json.loads(capsys.readouterr().out)
    exact = runs["numpy"]
    for name in ("sharded", "matfree"):
        for key in ("lambda_min", "lambda_max"):
            assert runs[name][key] == pytest.approx(exact[key], rel=1e-8), (name, key)
    assert np.load(tmp_path / "K.npy").shape == tuple(exact["shape"]) and "lambda_min" not in runs["npy"]
    assert runs["limit"]["kernel"] == "limit" and runs["limit"]["lambda_min"] > 0
    assert all(r["processes"] == 1 and len(r["peak_rss_gib"]) == 1 for r in runs.values())
    assert cli.main(["kernel", *args, "--matrix-free", "--kernel", "limit"]) == 2
    assert "--matrix-free" in capsys.readouterr().err
    assert cli.main(["kernel", *args, "--output", "npy"]) == 2
    assert "needs path" in capsys.readouterr().err


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


def test_cli_linearized(tmp_path):
    out = tmp_path / "lin"
    args = ["--width", "16", "--n", "6", "--n-test", "2", "--length", "4", "--input-dim", "4", "--steps", "20"]
    assert cli.main(["linearized", *args, "--trace-points", "1", "--out", str(out)]) == 0
    history = read_table(out / "history.csv")
    assert list(history["step"]) == [0, 10, 20] and history["closed_form_gap_train"].max() < 1e-8
    assert set(read_table(out / "outputs.csv")["model"]) == {"true", "lin", "closed_form"}
    assert cli.main(["linearized", *args, "--lr-scale", "3", "--out", str(out)]) == 2


def test_cli_classify_writes_the_table_and_names_bad_datasets(tmp_path, capsys):
    """`classify` on a bundled dataset's official split: one row per predictor and width, the model chosen by
    cross-validation printed; an unknown dataset is refused by name."""
    out = tmp_path / "italy.csv"
    argv = ["classify", "--dataset", "ItalyPowerDemand", "--predictors", "ntk", "linearized", "trained",
            "--widths", "8", "--steps", "3", "--folds", "2", "--readouts", "last", "--sigma-w2s", "1.0",
            "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "chosen by 2-fold cross-validation on the training split" in printed
    table = read_table(out)
    assert list(table["predictor"]) == ["ntk", "linearized", "linearized-converged", "trained"]
    assert set(table["n_test"]) == {1029} and table["test_accuracy"].between(0, 1).all()
    with pytest.raises(SystemExit):
        cli.main(["classify", "--dataset", "Beef"])
    assert "invalid choice: 'Beef'" in capsys.readouterr().err


def test_cli_builds_pytorch_layouts(tmp_path, capsys):
    """--stacking concat and --hidden-bias reach the model: the kernel changes with them, and a concat stack without
    --bidirectional is refused by name."""
    data = ["--width", "8", "--n", "3", "--length", "4", "--input-dim", "4"]
    args = [*data, "--cell", "gru", "--num-layers", "2", "--bidirectional", "--sigma-b2", "0.5",
            "--parameterization", "standard", "--trainable", "W", "A"]  # fmt: skip
    kernels = {}
    for name, extra in [("separate", []), ("concat", ["--stacking", "concat"]),
                        ("two-biases", ["--stacking", "concat", "--hidden-bias"])]:  # fmt: skip
        assert cli.main(["kernel", *args, *extra, "--out", str(tmp_path / f"{name}.npz")]) == 0
        kernels[name] = np.load(tmp_path / f"{name}.npz")["kernel"]
    assert kernels["separate"].shape == kernels["concat"].shape == (9, 9)
    assert not np.allclose(kernels["separate"], kernels["concat"])
    assert not np.allclose(kernels["concat"], kernels["two-biases"])  # bh moves the states, hence W's and A's Jacobians
    capsys.readouterr()
    assert (
        cli.main(["kernel", "--width", "8", "--n", "3", "--length", "4", "--input-dim", "4", "--stacking", "concat"])
        == 2
    )
    assert "stacking" in capsys.readouterr().err


def test_cli_limit_of_a_gated_cell_reports_its_error(capsys):
    """--kernel limit of an LSTM is the Monte Carlo estimate: --samples buys accuracy, the summary gives the
    relative standard error, and an output it cannot give is refused by name."""
    args = ["kernel", "--width", "8", "--n", "3", "--length", "4", "--input-dim", "4", "--cell", "lstm",
            "--parameterization", "standard", "--trainable", "W", "A", "--kernel", "limit"]  # fmt: skip
    errors = {}
    for samples in (256, 4096):
        assert cli.main([*args, "--samples", str(samples)]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["samples"] == samples and summary["lambda_min"] > 0
        errors[samples] = summary["relative_stderr"]
    assert errors[4096] < errors[256] / 2  # samples^-1/2 would give 4
    assert cli.main([*args, "--output", "sharded"]) == 2
    assert "Monte Carlo estimate: --output numpy" in capsys.readouterr().err
