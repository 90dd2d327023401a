"""The registry and the catalogue it holds: the main job's studies and figures, and the checks on registering."""

from __future__ import annotations

import dataclasses

import pytest

from analysis.kernel_spectrum import SpectrumConfig, spectrum_table
from figures.suite import FIGURES, STUDIES, add_figure, add_study, effective_configs
from figures.suite.registry import PROFILES, Study


def test_registry_holds_the_main_job_and_refuses_duplicates():
    assert list(STUDIES)[:7] == ["kernel_spectrum", "width_training", "linearization", "trajectories",
                                 "separation", "convergence", "conditioning"]  # fmt: skip
    assert len(FIGURES) >= 9 and all(f.caption and f.title for f in FIGURES.values())
    assert all("Tested" in f.caption for f in FIGURES.values())
    with pytest.raises(ValueError, match="taken"):
        add_study("kernel_spectrum", spectrum_table, SpectrumConfig())
    with pytest.raises(ValueError, match="unknown studies"):
        add_figure("figX", "no_such_study", lambda table: None, "caption")
    full = effective_configs("full")
    assert max(full["kernel_spectrum"].widths) >= 4096 and len(full["linearization"].seeds) > 3


def test_the_catalogue_states_both_profiles_of_every_study():
    for study in STUDIES.values():
        assert dataclasses.is_dataclass(study.quick) and dataclasses.is_dataclass(study.full), study.name
        assert study.quick != study.full, f"{study.name}: the full profile is the quick one"
        assert type(study.quick) is type(study.full) and study.title, study.name
    figures_of = {name: [f.name for f in FIGURES.values() if name in f.studies] for name in STUDIES}
    assert all(figures_of.values()), f"studies no figure draws: {[n for n, f in figures_of.items() if not f]}"
    assert [name.split("_")[0] for name in FIGURES] == [f"fig{i}" for i in range(1, len(FIGURES) + 1)]


def test_registering_checks_names_configs_and_studies(toy):
    with pytest.raises(ValueError, match="not an identifier"):
        add_study("two words", spectrum_table, SpectrumConfig())
    with pytest.raises(ValueError, match="taken"):
        add_study("suite", spectrum_table, SpectrumConfig())  # the name of the run's own record
    with pytest.raises(TypeError, match="dataclass instances"):
        add_study("gamma", spectrum_table, SpectrumConfig)
    study = add_study("gamma", spectrum_table, SpectrumConfig(widths=(8,)), title="toy gamma")
    assert STUDIES["gamma"] is study and list(STUDIES)[-1] == "gamma"
    figure = add_figure("figG", ("alpha", "gamma"), toy.figure, "Two\n    studies,   one caption.")
    assert figure.studies == ("alpha", "gamma") and figure.caption == "Two studies, one caption."
    with pytest.raises(ValueError, match="taken"):
        add_figure("figG", "alpha", toy.figure, "again")


def test_a_study_without_a_full_config_runs_its_quick_one_in_both_profiles():
    quick, full = SpectrumConfig(widths=(8,)), SpectrumConfig(widths=(8, 16))
    assert Study("s", spectrum_table, quick).config("full") is quick
    assert Study("s", spectrum_table, quick, full).config("full") is full
    assert Study("s", spectrum_table, quick, full).config("quick") is quick
    assert PROFILES == ("quick", "full")
    with pytest.raises(ValueError, match="profile must be one of"):
        Study("s", spectrum_table, quick).config("paper")
