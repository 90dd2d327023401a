"""Fixtures of the main job's tests: a toy registry of instant studies (so the bookkeeping is tested without
JAX work) in place of the catalogue, and the `figures` command run into a temporary directory."""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from analysis.sweep import run_sweep
from figures.suite import cli
from figures.suite.registry import FIGURES, STUDIES, FigureSpec, Study


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    values: tuple[int, ...] = (1, 2, 3)
    scale: float = 1.0
    fail: bool = False


def _toy_study(name: str, calls: list[tuple[str, int]]):
    def run(config: ToyConfig, cache_dir=None, progress: bool = True) -> pd.DataFrame:
        """A toy study: y = x * scale for x in values, one unit per x."""

        def compute(unit: dict) -> pd.DataFrame:
            calls.append((name, unit["x"]))
            if config.fail:
                raise RuntimeError(f"toy failure in {name}")
            return pd.DataFrame({"y": [unit["x"] * config.scale]})

        return run_sweep(name, config, [{"x": v} for v in config.values], compute, cache_dir, progress, ("values",))

    return run


def toy_figure(table: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(table["x"], table["y"], marker="o")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return fig


def broken_figure(table: pd.DataFrame) -> plt.Figure:
    raise ValueError("this figure cannot be drawn")


@pytest.fixture
def toy():
    """The registry holds two toy studies (alpha with a full config, beta without) and three figures, in place
    of the catalogue, until the test ends. .studies and .figures are the registry's dicts (a test may add to
    them), .calls the (study, x) units computed, .figure and .broken_figure two render functions."""
    calls: list[tuple[str, int]] = []
    studies = {
        "alpha": Study("alpha", _toy_study("alpha", calls), ToyConfig(), ToyConfig(values=(1, 2, 3, 4)), "toy alpha"),
        "beta": Study("beta", _toy_study("beta", calls), ToyConfig(scale=2.0), title="toy beta"),
    }
    figures = {
        "figA_alpha": FigureSpec("figA_alpha", ("alpha",), toy_figure, "Alpha against x: a toy caption.", "Alpha",
                                 fits=lambda t: {"y": {"slope": 1.0, "ci95": [0.5, 1.5]}}),
        "figB_beta": FigureSpec("figB_beta", ("beta",), toy_figure, "Beta against x.", "Beta"),
        "figAB_both": FigureSpec("figAB_both", ("alpha", "beta"), lambda a, b: toy_figure(pd.concat([a, b])),
                                 "Both tables.", "Both"),
    }  # fmt: skip
    saved = dict(STUDIES), dict(FIGURES)
    for registry, toys in ((STUDIES, studies), (FIGURES, figures)):
        registry.clear()
        registry.update(toys)
    try:
        yield types.SimpleNamespace(studies=STUDIES, figures=FIGURES, calls=calls, figure=toy_figure,
                                    broken_figure=broken_figure)  # fmt: skip
    finally:
        for registry, entries in zip((STUDIES, FIGURES), saved, strict=True):
            registry.clear()
            registry.update(entries)


@pytest.fixture
def figures_cli(tmp_path: Path):
    """run(*args) -> exit status of `ntk-rnn figures --out TMP/out --cache TMP/cache --no-progress *args`."""

    def run(*args: str) -> int:
        return cli.main(["figures", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
                         "--no-progress", *args])  # fmt: skip

    return run


@pytest.fixture
def suite_json(tmp_path: Path):
    """read() -> the record TMP/cache/suite.json of the last run."""
    return lambda: json.loads((tmp_path / "cache" / "suite.json").read_text())
