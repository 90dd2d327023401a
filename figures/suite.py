"""The main job: run every study in analysis/ and render every figure into figures/."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm.auto import tqdm

from analysis.eigenvalues import (
    ConditioningConfig,
    ConvergenceConfig,
    SeparationConfig,
    conditioning_table,
    convergence_table,
    separation_table,
)
from analysis.kernel_spectrum import SpectrumConfig, spectrum_table
from analysis.linearization import LinearizationConfig, linearization_table, trajectory_table
from analysis.width_training import WidthTrainingConfig, training_table
from figures.eigenvalues import conditioning_figure, convergence_figure, convergence_fits, separation_figure
from figures.linearization import gap_figure, gap_fits, loss_comparison_figure, trajectory_figure
from figures.spectrum import spectrum_figure
from figures.style import save_figure
from figures.training import loss_curves_figure, movement_figure, movement_fits
from ntk_rnn.storage import environment, write_json, write_table

FIGURES_DIR = Path(__file__).resolve().parent


def run_suite(out_dir: str | Path = FIGURES_DIR, cache_dir: str | Path = "results", progress: bool = True) -> dict:
    """Compute the studies (cached per unit under cache_dir), save their tables beside the cache, and
    write the figures as PNG and PDF into out_dir. Returns {figure name: fitted numbers}."""
    cache_dir = Path(cache_dir)
    studies = {
        "kernel_spectrum": (SpectrumConfig(), spectrum_table),
        "width_training": (WidthTrainingConfig(), training_table),
        "linearization": (LinearizationConfig(), linearization_table),
        "trajectories": (
            LinearizationConfig(widths=(64, 1024), seeds=(0,), datasets=("synthetic",), trace_points=1),
            trajectory_table,
        ),
        "separation": (SeparationConfig(), separation_table),
        "convergence": (ConvergenceConfig(), convergence_table),
        "conditioning": (ConditioningConfig(), conditioning_table),
    }
    tables, timings = {}, {}
    for name, (config, study) in tqdm(studies.items(), desc="studies", disable=not progress):
        start = time.perf_counter()
        tables[name] = study(config, cache_dir=cache_dir, progress=progress)
        timings[name] = time.perf_counter() - start
        write_table(tables[name], cache_dir / f"{name}.csv")

    save_figure(spectrum_figure(tables["kernel_spectrum"]), out_dir, "fig1_kernel_spectrum")
    save_figure(loss_curves_figure(tables["width_training"]), out_dir, "fig2_gd_loss_curves")
    save_figure(movement_figure(tables["width_training"]), out_dir, "fig3_movement_vs_width")
    save_figure(loss_comparison_figure(tables["linearization"]), out_dir, "fig4_true_vs_linearized_loss")
    save_figure(gap_figure(tables["linearization"]), out_dir, "fig5_linearization_gap_vs_width")
    save_figure(trajectory_figure(tables["trajectories"]), out_dir, "fig6_function_space_trajectories")
    save_figure(separation_figure(tables["separation"]), out_dir, "fig7_lambda_min_heatmaps")
    save_figure(convergence_figure(tables["convergence"]), out_dir, "fig8_limit_convergence")
    save_figure(conditioning_figure(tables["conditioning"]), out_dir, "fig9_conditioning_vs_length")
    numbers = {
        "movement_slopes": movement_fits(tables["width_training"]),
        "linearization_slopes": gap_fits(tables["linearization"]).to_dict(orient="records"),
        "limit_convergence_slopes": convergence_fits(tables["convergence"]).to_dict(orient="records"),
        "seconds": timings,
    }
    write_json(
        {"configs": {k: vars(c) for k, (c, _) in studies.items()}, "results": numbers, "environment": environment()},
        cache_dir / "suite.json",
    )
    return numbers


if __name__ == "__main__":
    print(json.dumps(run_suite(), indent=2, default=str))
