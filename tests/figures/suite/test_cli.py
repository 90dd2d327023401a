"""The `ntk-rnn` console script: the library's commands and the main job's `figures`; `python -m figures.suite`."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from figures.suite import cli
from ntk_rnn.apps import cli as library_cli

REPO = Path(__file__).resolve().parents[3]


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def test_the_main_jobs_cli_has_the_library_commands_and_figures(capsys):
    assert _commands(cli.build_parser()) == {"kernel", "train", "linearized", "classify", "figures"}
    assert _commands(library_cli.build_parser()) == {"kernel", "train", "linearized", "classify"}
    with pytest.raises(SystemExit):
        library_cli.main(["figures", "--print-config"])
    assert "invalid choice: 'figures'" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["figures", "--profile", "full", "--only", "a,b"])
    assert (args.profile, args.only, args.cache, args.out) == ("full", "a,b", "results", "figures")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["figures", "--profile", "paper"])


def test_the_console_script_is_the_main_jobs_cli():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, name = scripts["ntk-rnn"].split(":")
    assert getattr(importlib.import_module(module), name) is cli.main


def test_python_m_figures_suite_is_ntk_rnn_figures(capsys):
    assert cli.main(["figures", "--profile", "full", "--print-config"]) == 0
    expected = capsys.readouterr().out
    run = subprocess.run([sys.executable, "-m", "figures.suite", "--profile", "full", "--print-config"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected and "[kernel_spectrum]" in expected
