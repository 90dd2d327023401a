"""The kernel-spectrum study (figure 1) on small sizes."""

import numpy as np
import pytest

from analysis.kernel_spectrum import SpectrumConfig, spectrum_table
from figures.spectrum import spectrum_figure
from figures.style import save_figure


@pytest.fixture(scope="module")
def spectrum(tmp_path_factory):
    config = SpectrumConfig(widths=(16, 32, 64), seeds=(0, 1), n=4, length=4, input_dim=4)
    return spectrum_table(config, tmp_path_factory.mktemp("cache"), progress=False)


def test_spectrum_table_is_tidy_and_positive(spectrum):
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


def test_spectrum_figure_renders_with_labels_and_log_axes(spectrum, tmp_path):
    fig = spectrum_figure(spectrum)
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log", "linear"]
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    paths = save_figure(fig, tmp_path, "spectrum")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
