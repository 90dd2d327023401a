"""The registry of the main job: its studies (name, one frozen config per profile, config -> table) and its
figures (file name, the studies whose tables it draws, tables -> Figure, caption, tables -> fitted numbers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

PROFILES = ("quick", "full")


@dataclasses.dataclass(frozen=True)
class Study:
    """A study: `run(config, cache_dir=Path, progress=bool) -> pd.DataFrame`, with a frozen dataclass
    config per profile ("full" falls back to "quick" when not given)."""

    name: str
    run: Callable[..., pd.DataFrame]
    quick: Any
    full: Any = None
    title: str = ""

    def config(self, profile: str) -> Any:
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        return self.full if profile == "full" and self.full is not None else self.quick


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """A figure: `render(*tables) -> matplotlib Figure` over the tables of `studies` (in that order),
    saved as name.png and name.pdf; `fits(*tables)` gives its fitted numbers (a DataFrame, or a dict
    of {quantity: {slope, ci95, ...}}) for the report."""

    name: str
    studies: tuple[str, ...]
    render: Callable[..., Any]
    caption: str
    title: str = ""
    fits: Callable[..., Any] | None = None


STUDIES: dict[str, Study] = {}
FIGURES: dict[str, FigureSpec] = {}


def add_study(name: str, run: Callable[..., pd.DataFrame], quick: Any, full: Any = None, title: str = "") -> Study:
    """Register a study (name unique; its table goes to <cache>/<name>.csv)."""
    if name in STUDIES or name == "suite" or not name.isidentifier():
        raise ValueError(f"study name {name!r} is taken or not an identifier")
    for config in (quick, full):
        if config is not None and not (dataclasses.is_dataclass(config) and not isinstance(config, type)):
            raise TypeError(f"study {name!r}: configs must be dataclass instances, got {config!r}")
    STUDIES[name] = Study(name, run, quick, full, title)
    return STUDIES[name]


def add_figure(
    name: str,
    studies: str | Sequence[str],
    render: Callable[..., Any],
    caption: str,
    title: str = "",
    fits: Callable[..., Any] | None = None,
) -> FigureSpec:
    """Register a figure drawn from the tables of one study (a name) or several (a sequence of names)."""
    studies = (studies,) if isinstance(studies, str) else tuple(studies)
    if name in FIGURES:
        raise ValueError(f"figure name {name!r} is taken")
    unknown = [s for s in studies if s not in STUDIES]
    if unknown:
        raise ValueError(f"figure {name!r} draws unknown studies {unknown}; register them first")
    FIGURES[name] = FigureSpec(name, studies, render, " ".join(caption.split()), title, fits)
    return FIGURES[name]
