"""Configs: TOML overrides checked field by field (through `ntk-rnn figures --config`), and --print-config's
TOML read back to the same configs."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from figures.suite import STUDIES, effective_configs
from figures.suite.overrides import config_seeds, configs_toml, load_overrides, override_config
from figures.suite.registry import PROFILES


def test_config_overrides_are_checked_and_named(figures_cli, tmp_path, capsys):
    configs = effective_configs("quick", {"width_training": {"widths": [8, 16], "lr_scale": 1, "steps": 5}})
    wt = configs["width_training"]
    assert wt.widths == (8, 16) and wt.lr_scale == 1.0 and isinstance(wt.lr_scale, float) and wt.steps == 5
    assert configs["kernel_spectrum"] == STUDIES["kernel_spectrum"].quick
    bad = {
        "[no_such_study]\nn = 1\n": "unknown study [no_such_study]",
        "[width_training]\nwidht = 3\n": "[width_training] has no field 'widht'",
        '[width_training]\nwidths = [8, "16"]\n': "[width_training].widths[1] must be an integer",
        "[width_training]\nsteps = true\n": "[width_training].steps must be an integer",
        "[width_training]\ndataset = 3\n": "[width_training].dataset must be a string",
        "[width_training]\nbatch_size = 1.5\n": "[width_training].batch_size must be int",
        "[separation]\nshared_tail = 1\n": "[separation].shared_tail must be true or false",
        "width_training = 3\n": "[width_training] must be a table",
        "[width_training\n": "invalid TOML",
    }
    for text, message in bad.items():
        path = tmp_path / "bad.toml"
        path.write_text(text)
        assert figures_cli("--config", str(path)) == 2
        err = capsys.readouterr().err
        assert message in err and str(path) in err, (text, err)
    assert figures_cli("--config", str(tmp_path / "missing.toml")) == 2
    assert "missing.toml" in capsys.readouterr().err
    assert figures_cli("--only", "kernel_spectrum,nope") == 2
    assert "--only: unknown study 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # nothing ran


@pytest.mark.parametrize("profile", PROFILES)
def test_print_config_reads_back_to_the_same_configs(profile, figures_cli, tmp_path, capsys):
    override = tmp_path / "o.toml"
    override.write_text("[convergence]\nwidths = [32, 64]\nsigma_w2 = 2\n")
    assert figures_cli("--profile", profile, "--config", str(override), "--print-config") == 0
    printed = tomllib.loads(capsys.readouterr().out)
    expected = effective_configs(profile, {"convergence": {"widths": [32, 64], "sigma_w2": 2.0}})
    assert effective_configs(profile, printed) == expected
    assert expected["convergence"].widths == (32, 64)


@dataclasses.dataclass(frozen=True)
class Odd:
    low: float = float("-inf")
    high: float = float("inf")
    missing: int | None = None
    seed: int = 7
    names: tuple[str, ...] = ("a", 'b "quoted"')


def test_the_toml_writer_handles_none_infinities_and_quotes(tmp_path):
    text = configs_toml({"odd": Odd()})
    assert "# missing = None" in text
    path = tmp_path / "odd.toml"
    path.write_text(text)
    read = load_overrides(path)["odd"]
    assert override_config(Odd(), read, "[odd]") == Odd() and "missing" not in read
    assert override_config(Odd(), {"missing": 3}, "[odd]").missing == 3
    with pytest.raises(ValueError, match=r"\[odd\]\.missing must be int, got 'x'"):
        override_config(Odd(), {"missing": "x"}, "[odd]")
    assert config_seeds(Odd()) == [7] and config_seeds(STUDIES["linearization"].quick) == [0, 1, 2]
