"""The every-cell studies (figures 15 to 17) on small sizes."""

import dataclasses

import jax
import numpy as np

import ntk_rnn
from analysis.cells import (
    MODELS,
    CellConditioningConfig,
    CellLazyConfig,
    CellSpreadConfig,
    cell_conditioning_table,
    cell_lazy_table,
    cell_spread_table,
    model_config,
    prefix_rows,
)
from analysis.datasets import study_dataset


def test_every_model_is_a_valid_config_with_a_normalized_kernel_in_k_over_m():
    for name in MODELS:
        cfg = model_config(name, 16, 3)
        assert cfg.width == 16 and cfg.parameterization in ("paper", "standard")
    assert model_config("gru", 8, 2).cell == "gru" and model_config("elman-relu-2layer", 8, 2).num_layers == 2


def test_the_kernel_of_the_first_steps_is_a_block_of_the_full_kernel():
    data = study_dataset("synthetic", 3, 5, 3, 0.5, key=jax.random.key(0))
    cfg = model_config("gru", 8, 3)
    params = ntk_rnn.init_params(cfg, key=jax.random.key(1))
    full = ntk_rnn.empirical_ntk(cfg, params, data.x)
    keep = prefix_rows(3, 5, 3)
    np.testing.assert_allclose(full[np.ix_(keep, keep)], ntk_rnn.empirical_ntk(cfg, params, data.x[:, :3]),
                               rtol=1e-10, atol=1e-12)  # fmt: skip


def test_conditioning_table_is_tidy_and_positive_with_the_limit_beside(tmp_path):
    config = CellConditioningConfig(models=("elman-relu", "lstm"), seeds=(0, 1), lengths=(2, 3, 4), width=16, n=3,
                                    input_dim=3, limit_samples=2**12)  # fmt: skip
    table = cell_conditioning_table(config, tmp_path, progress=False)
    limit = ["lambda_min_limit", "lambda_max_limit", "condition_limit"]
    assert {"model", "seed", "length", "width", "lambda_min", "lambda_max", "condition", *limit} <= set(table.columns)
    assert set(table.groupby(["model", "seed", "length"]).size()) == {1} and len(table) == 12
    assert (table[["lambda_min", "lambda_min_limit"]] > 0).all(axis=None)
    assert (table[["condition", "condition_limit"]] >= 1).all(axis=None)
    for _, runs in table.sort_values("length").groupby(["model", "seed"]):  # nested blocks: Cauchy interlacing
        for column in ("lambda_min", "lambda_min_limit"):
            assert (np.diff(runs[column]) <= 1e-12).all()
        for column in ("lambda_max", "lambda_max_limit"):
            assert (np.diff(runs[column]) >= -1e-12).all()


def test_lazy_table_has_one_row_per_run_and_resumes(tmp_path):
    config = CellLazyConfig(models=("gru",), widths=(16,), seeds=(0,), n_train=3, n_test=3, length=3, input_dim=3,
                            steps=4)  # fmt: skip
    table = cell_lazy_table(config, tmp_path, progress=False)
    assert {"model", "width", "seed", "kernel_drift", "gap_train_rel", "gap_test_rel", "lr", "steps"} <= set(table)
    assert len(table) == 1 and table["steps"].iloc[0] == 4
    assert (table[["kernel_drift", "gap_train", "gap_test"]] > 0).all(axis=None)
    extended = cell_lazy_table(dataclasses.replace(config, seeds=(0, 1)), tmp_path, progress=False)
    assert len(list((tmp_path / "cell_lazy").glob("*.csv"))) == 2  # the first unit was read back, not redone
    assert extended.iloc[0].equals(table.iloc[0]) and len(extended) == 2


def test_spread_table_has_every_seed_pair_and_the_limit_with_its_floor(tmp_path):
    config = CellSpreadConfig(models=("elman-relu", "gru"), widths=(8, 16), seeds=(0, 1, 2), n=3, length=3,
                              input_dim=3, limit_samples=2**12)  # fmt: skip
    table = cell_spread_table(config, tmp_path, progress=False)
    spread = table[table["quantity"] == "spread"]
    assert set(spread.groupby(["model", "width"]).size()) == {3}  # (0,1), (0,2), (1,2)
    limit = table[table["quantity"] == "limit_distance"]
    assert set(limit.groupby(["model", "width"]).size()) == {3} and len(limit) == 12
    assert limit["other_seed"].isna().all() and (limit["value"] > 0).all()
    floor = table[table["quantity"] == "limit_stderr"].set_index(["model", "width"])["value"]
    assert len(floor) == 4 and (floor.loc["elman-relu"] == 0).all()  # the Elman limit is exact
    assert floor.loc["gru"].nunique() == 1  # one Monte Carlo limit per model, whatever the width
    data = study_dataset("synthetic", 3, 3, 3, 0.5, key=jax.random.key(config.data_seed))
    est = ntk_rnn.limit_ntk(model_config("gru", 8, 3), data.x, key=jax.random.key(config.limit_seed), samples=2**12)
    assert np.isclose(floor.loc[("gru", 8)], np.linalg.norm(est.stderr) / np.linalg.norm(est.mean), rtol=1e-10)
    assert 0 < floor.loc[("gru", 8)] < 0.2 * limit.loc[limit["model"] == "gru", "value"].min()
    assert np.isfinite(table["value"]).all() and (spread["value"] > 0).all()
