"""The true-against-linearized studies (figures 4 to 6) on small sizes."""

from dataclasses import replace as dataclasses_replace

import numpy as np

from analysis.linearization import LinearizationConfig, linearization_table, trajectory_table
from figures.linearization import gap_figure, gap_fits, loss_comparison_figure, trajectory_figure


def test_linearization_study_and_figures(tmp_path):
    config = LinearizationConfig(widths=(16, 64), seeds=(0, 1), n_train=4, n_test=3, length=4, input_dim=4,
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
    figures = (loss_comparison_figure(table), gap_figure(table), trajectory_figure(traced))
    for fig in figures:
        assert all(ax.get_xlabel() or ax.get_ylabel() for ax in fig.axes)
    assert all(ax.get_yscale() == "log" for ax in figures[1].axes)
