"""The eigenvalue studies (figures 7 to 9) on small sizes."""

import jax
import numpy as np
import pytest


def test_eigenvalue_studies_and_figures(tmp_path):
    from analysis.eigenvalues import (
        ConditioningConfig,
        ConvergenceConfig,
        SeparationConfig,
        clustered_first_tokens,
        conditioning_table,
        convergence_table,
        separation_table,
    )
    from figures.eigenvalues import conditioning_figure, convergence_figure, convergence_fits, separation_figure
    from ntk_rnn.apps.datasets import first_token_separation, synthetic_sequences, token_assumption_error

    x = synthetic_sequences(6, 3, 5, delta=0.5, key=jax.random.key(0)).x
    squeezed = clustered_first_tokens(x, 0.1)
    assert first_token_separation(squeezed) == pytest.approx(0.1, rel=1e-9)
    assert token_assumption_error(squeezed) < 1e-12
    config = SeparationConfig(
        lengths=(2, 3), deltas=(0.05, 0.4), ns=(3, 4), digits_lengths=(2, 3), seeds=(0,), n=3, input_dim=4, width=64
    )
    sep = separation_table(config, tmp_path, progress=False)
    digits = sep[sep["grid"] == "digits n-L"]
    assert len(digits) == 2 * 2 * 2 and digits["delta"].isna().all() and np.all(digits["lambda_min"] > 0)
    limit = sep[(sep["grid"] == "L-delta") & (sep["kernel"] == "limit")]
    # sequences that differ only in their first tokens: a smaller separation, a smaller lambda_min
    by_delta = limit.groupby("delta")["lambda_min"].mean()
    assert by_delta.loc[0.05] < by_delta.loc[0.4]
    # the separation's and conditioning's shapes (n = 3, L = 3, d_x = 4 at widths 64 and 32): programs compiled once
    conv = convergence_table(ConvergenceConfig(widths=(32, 64), seeds=(0,), activations=("relu", "erf"), n=3,
                                               length=3, input_dim=4), tmp_path, progress=False)  # fmt: skip
    assert set(convergence_fits(conv)["activation"]) == {"relu", "erf"}
    cond = conditioning_table(ConditioningConfig(lengths=(2, 3), activations=("relu", "tanh"), seeds=(0,), n=3,
                                                 input_dim=4, width=32), tmp_path, progress=False)  # fmt: skip
    limit = cond[cond["kernel"] == "limit"].set_index(["parameterization", "activation", "length"])["condition"]
    # in the paper's 1/m scaling tanh acts through its slope at 0: its limit is the linear one (gain 1)
    linear = conditioning_table(ConditioningConfig(lengths=(2, 3), activations=("linear",), seeds=(0,), n=3,
                                                   input_dim=4, width=32), tmp_path, progress=False)  # fmt: skip
    linear = linear[linear["kernel"] == "limit"].set_index(["parameterization", "length"])["condition"]
    assert limit.loc[("paper", "tanh", 3)] == pytest.approx(linear.loc[("paper", 3)], rel=1e-8)
    figures = (separation_figure(sep), convergence_figure(conv), conditioning_figure(cond))
    assert len([ax for ax in figures[0].axes if ax.get_label() != "<colorbar>"]) == 6
    for fig in figures:
        assert all(ax.get_xlabel() for ax in fig.axes if ax.get_label() != "<colorbar>")
