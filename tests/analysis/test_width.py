"""The width studies (figures 18 to 20): nested parameters and GD to a loss target on ntk_rnn, the bisection, the
closed-form step count, and the three tables on small sizes."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_rnn
from analysis.nested import gd_until, linearized_steps, nested_params, paper_model
from analysis.width import (
    FluctuationConfig,
    RateConfig,
    RequirementConfig,
    bisect_width,
    fluctuation_table,
    rate_table,
    relative_distance,
    requirement_table,
    separated_data,
    width_grid,
)


def test_nested_params_are_init_params_at_the_cap_and_its_rescaled_leading_block_below():
    cfg = paper_model(12, 4)
    params = nested_params(cfg, 12, key=jax.random.key(1))  # width == cap: init_params' own numbers
    drawn = ntk_rnn.init_params(cfg, key=jax.random.key(1))
    assert set(params) == set(drawn) == {"W", "A", "B"}
    assert all(params[k].dtype == jnp.float64 and np.array_equal(params[k], drawn[k]) for k in drawn)
    half = nested_params(paper_model(6, 4), 12, key=jax.random.key(1))  # variance 2/6 from 2/12: sqrt(2)
    assert {k: v.shape for k, v in half.items()} == {"W": (6, 6), "A": (6, 4), "B": (1, 6)}
    np.testing.assert_allclose(half["W"], params["W"][:6, :6] * np.sqrt(2.0), rtol=1e-15)
    np.testing.assert_allclose(half["A"], params["A"][:6] * np.sqrt(2.0), rtol=1e-15)
    assert np.array_equal(half["B"], params["B"][:, :6])  # B ~ N(0, 1/d) does not depend on m
    with pytest.raises(ValueError, match="width"):
        nested_params(paper_model(24, 4), 12, key=jax.random.key(1))
    with pytest.raises(ValueError, match="Elman"):
        nested_params(ntk_rnn.RNNConfig(width=6, input_dim=4, cell="gru"), 12, key=jax.random.key(1))


def test_gd_until_is_run_steps_and_stops_before_the_first_step_at_the_target():
    x, y = separated_data(3, 4, 4, 0.5, seed=0, shared_tail=False)
    cfg = paper_model(12, 4)
    params = nested_params(cfg, 12, key=jax.random.key(1))
    lr = 0.5 / np.linalg.eigvalsh(ntk_rnn.empirical_ntk(cfg, params, x))[-1]
    targets = jnp.asarray(np.concatenate([np.zeros((3, 1)), y.reshape(3, 3)], axis=1)[..., None])
    theta = {"W": params["W"]}
    tcfg = ntk_rnn.TrainConfig(steps=6)
    trained, _, losses = ntk_rnn.run_steps(cfg, tcfg, params, theta, tcfg.make_optimizer(lr).init(theta),
                                           jnp.asarray(x), targets, lr, key=jax.random.key(0), step0=0, num_steps=6,
                                           positions=(1, 2, 3))  # fmt: skip
    losses = np.asarray(losses)  # losses[t]: the loss after t steps
    assert np.all(np.diff(losses) < 0)
    for chunk in (1, 4):  # single steps; a run, then single steps
        stepped, taken = gd_until(cfg, params, x, y, lr, 6, chunk=chunk)
        assert taken == 6 and set(stepped) == set(params) and stepped["A"] is params["A"]
        np.testing.assert_allclose(stepped["W"], trained["W"], rtol=1e-12, atol=1e-15)
    assert np.abs(stepped["W"] - params["W"]).max() > 1e-6  # it moved
    target = (losses[3] + losses[4]) / 2 / losses[0]  # first below at step 4
    for chunk in (1, 3, 4):  # by single steps, inside a run (3 + 1 single), at a run's first step
        stepped, taken = gd_until(cfg, params, x, y, lr, 50, until=target, chunk=chunk)
        assert taken == 4
        f = ntk_rnn.flat_outputs(cfg, stepped, jnp.asarray(x), (1, 2, 3))
        assert 0.5 * np.sum((np.asarray(f) - y) ** 2) == pytest.approx(losses[4], rel=1e-12)
    assert gd_until(cfg, params, x, y, lr, 3, until=target, chunk=3)[1] == 3  # out of steps before the target
    assert gd_until(cfg, params, x, y, lr, 3, until=1.0)[1] == 0  # the initial loss already meets it
    with pytest.raises(ValueError, match="chunk"):
        gd_until(cfg, params, x, y, lr, 3, chunk=0)


def test_the_bisection_finds_the_threshold_of_a_monotone_criterion_and_reports_censoring():
    grid = width_grid(8, 1024, 4)
    assert grid[0] == 8 and grid[-1] == 1024 and list(grid) == sorted(set(grid)) and 10 in grid and 11 in grid
    for threshold in (8, 9, 37, 300, 1024):
        m_star, probed = bisect_width(lambda m, t=threshold: m >= t, grid)
        assert m_star == min(w for w in grid if w >= threshold)
        assert probed[0] == 1024 and len(probed) <= np.ceil(np.log2(len(grid))) + 2
    m_star, probed = bisect_width(lambda m: m >= 5000, grid)
    assert m_star is None and probed == [1024]


def test_the_closed_form_step_count_is_explicit_linearized_gd():
    rng = np.random.default_rng(0)
    J = rng.standard_normal((6, 9))
    K = J @ J.T + 0.05 * np.eye(6)
    f0, y = rng.standard_normal(6), rng.standard_normal(6)
    lr, eps = 1.0 / np.linalg.eigvalsh(K)[-1], 1e-3
    f, steps = f0.copy(), 0
    while np.sum((f - y) ** 2) > eps * np.sum((f0 - y) ** 2):
        f, steps = f - lr * K @ (f - y), steps + 1
    assert steps > 10 and linearized_steps(K, f0, y, lr, eps, 10**6) == steps
    assert linearized_steps(K, f0, y, lr, eps, steps - 1) is None
    assert linearized_steps(K, f0, y, 2.0 / np.linalg.eigvalsh(K)[-1], eps, 10**6) is None  # unstable


def test_the_fluctuation_table_is_the_direct_distance_to_the_limit(tmp_path):
    config = FluctuationConfig(widths=(6, 12), lengths=(2, 4), seeds=(0, 1), ns=(3,), input_dim=4)
    table = fluctuation_table(config, tmp_path, progress=False)
    assert set(table["quantity"]) == {"limit_distance", "spread"} and len(table) == 2 * 2 * (2 + 1)
    data = ntk_rnn.synthetic_sequences(3, 4, 4, delta=0.5, key=jax.random.key(0))
    cfg = ntk_rnn.RNNConfig(width=12, input_dim=4)
    K = ntk_rnn.empirical_ntk(cfg, ntk_rnn.init_params(cfg, key=jax.random.key(1)), data.x) / 12
    theta = ntk_rnn.limit_ntk(cfg, data.x)
    row = table[(table["width"] == 12) & (table["length"] == 4) & (table["quantity"] == "limit_distance")
                & (table["seed"] == 1)]  # fmt: skip
    assert row["value"].item() == pytest.approx(relative_distance(K, theta), rel=1e-9)
    assert relative_distance(theta, theta) == 0.0
    with pytest.raises(ValueError, match=r"FluctuationConfig\.lengths"):
        FluctuationConfig(lengths=(1, 2))


def test_the_requirement_table_has_one_row_per_cell_and_censors(tmp_path):
    config = RequirementConfig(lengths=(4,), ns=(3,), deltas=(0.5, 0.25), train_lengths=(4,), train_ns=(3,),
                               train_deltas=(0.5,), seeds=(0, 1), input_dim=4, min_width=4, cap=12, train_cap=8,
                               max_steps=300)  # fmt: skip
    table = requirement_table(config, tmp_path, progress=False)
    assert list(table["criterion"]) == ["spectrum", "spectrum", "training"]
    assert table["probed"].str.split().str[0].astype(int).tolist() == [12, 12, 8]  # the cap first
    done = ~table["censored"]
    assert (table.loc[done, "m_star"] <= table.loc[done, "cap"]).all() and table.loc[~done, "m_star"].isna().all()
    strict = requirement_table(dataclasses.replace(config, factor=1.000001, train_lengths=()), tmp_path, progress=False)
    assert strict["censored"].all() and (strict["probes"] == 1).all()
    with pytest.raises(ValueError, match=r"RequirementConfig\.fraction"):
        RequirementConfig(fraction=0.0)


def test_the_rate_table_has_both_rules_and_a_trained_point(tmp_path):
    config = RateConfig(deltas=(0.3, 0.6), ns=(3,), seeds=(0,), width=12, length=4, input_dim=4, train_max_steps=500)
    table = rate_table(config, tmp_path, progress=False)
    assert sorted(set(table["rule"])) == ["lambda_max", "paper"] and len(table) == 4
    assert (table["eta_lambda_max"] < 2).all() and np.allclose(table.loc[table["rule"] == "lambda_max",
                                                                          "eta_lambda_max"], 1.0)  # fmt: skip
    assert table["loss_ratio_true"].notna().any()
    with pytest.raises(ValueError, match="lr_scale"):
        RateConfig(lr_scale=2.5)
