"""The width-training study (figures 2 and 3) on small sizes."""

import numpy as np
import pytest

from analysis.width_training import WidthTrainingConfig, training_table
from figures.training import loss_curves_figure, movement_figure, movement_fits


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    config = WidthTrainingConfig(widths=(32, 64, 128), seeds=(0, 1), n=4, length=4, input_dim=4, steps=40,
                                 kernel_every=20)  # fmt: skip
    return training_table(config, tmp_path_factory.mktemp("cache"), progress=False)


def test_training_table_and_fits(training):
    assert {"width", "seed", "step", "loss", "kernel_drift", "lr", "predicted_log_rate"} <= set(training.columns)
    assert set(training.groupby(["width", "seed"]).size()) == {5}
    fits = movement_fits(training)
    assert set(fits) == {"kernel_drift", "w_distance_fro"} and all(np.isfinite(f["slope"]) for f in fits.values())


def test_training_figures_render_with_log_axes_and_slopes(training):
    fig = loss_curves_figure(training)
    assert fig.axes[0].get_yscale() == "log"
    fig = movement_figure(training)
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in fig.axes)
    assert any("slope" in t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts())
