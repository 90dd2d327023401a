"""Validation at the boundary: each check names the argument and the expected form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntk_rnn
from ntk_rnn.network.checks import (
    check_inputs,
    check_int,
    check_key,
    check_pair,
    check_params,
    check_positions,
    check_structure,
    check_targets,
    loss_positions,
)

CFG = ntk_rnn.RNNConfig(width=6, input_dim=3, output_dim=2)


def test_params_are_checked_for_keys_shapes_and_values():
    params = ntk_rnn.init_params(CFG, key=jax.random.key(0))
    checked = check_params(CFG, {k: np.asarray(v, np.float32) for k, v in params.items()})
    assert all(v.dtype == jnp.float64 for v in checked.values())
    with pytest.raises(TypeError, match="params must be a dict with keys"):
        check_params(CFG, [1, 2])
    with pytest.raises(ValueError, match=r"missing \['B'\], unexpected \['C'\]"):
        check_params(CFG, {"W": params["W"], "A": params["A"], "C": 1})
    with pytest.raises(ValueError, match=r"params\['A'\] must have shape \(6, 3\)"):
        check_params(CFG, {**params, "A": np.zeros((6, 4))})
    with pytest.raises(ValueError, match=r"params\['W'\] contains NaN or inf"):
        check_params(CFG, {**params, "W": params["W"].at[0, 0].set(np.inf)})


def test_structure_checks_work_on_tracers_and_value_checks_need_values():
    params = ntk_rnn.init_params(CFG, key=jax.random.key(0))
    jax.jit(lambda p, x: check_structure(CFG, p, x))(params, jnp.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"expected shape \(n, L, 3\)"):
        jax.jit(lambda p, x: check_structure(CFG, p, x))(params, jnp.zeros((2, 4, 5)))
    with pytest.raises((jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError)):
        jax.jit(lambda p: check_params(CFG, p))(params)


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((2, 3)), r"x must have shape \(n, L, d_x\) = \(n, L, 3\), got shape \(2, 3\)"),
        (np.zeros((2, 3, 4)), "token dimension 4 but the config's input_dim is 3"),
        (np.zeros((0, 3, 3)), "at least one sequence"),
        (np.full((1, 2, 3), np.nan), "x contains NaN or inf"),
        (np.array([[["a", "b", "c"]]]), "x must be numeric"),
    ],
)
def test_inputs_are_checked(x, match):
    with pytest.raises(ValueError, match=match):
        check_inputs(CFG, x)


def test_targets_positions_and_pairs():
    x = check_inputs(CFG, np.ones((4, 5, 3)))
    with pytest.raises(ValueError, match=r"y must have shape \(n, L, d\) = \(4, 5, 2\)"):
        check_targets(CFG, x, np.ones((4, 5, 1)))
    assert check_positions(None, 5) == (1, 2, 3, 4) and check_positions(3, 5) == (3,)
    for bad, match in (((5,), r"\[0, L\) = \[0, 5\)"), ((1, 1), "must not repeat"), ((), "must not be empty"),
                       ((1.5,), "sequence of ints")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            check_positions(bad, 5)
    with pytest.raises(ValueError, match="does not apply to readout='last'"):
        loss_positions(CFG.replace(readout="last"), (1,), 5, "positions")
    pair = check_pair(CFG, np.ones((2, 3, 3)))
    assert pair.symmetric and pair.x2 is pair.x1 and pair.pos1 == pair.pos2 == (1, 2)
    pair = check_pair(CFG, np.ones((2, 3, 3)), np.ones((1, 4, 3)), positions=(0, 2))
    assert not pair.symmetric and pair.x2.shape == (1, 4, 3) and pair.pos2 == (0, 2)
    with pytest.raises(ValueError, match="x2 has token dimension 2"):
        check_pair(CFG, np.ones((2, 3, 3)), np.ones((1, 4, 2)))


def test_keys_and_ints():
    assert check_key(jax.random.key(0)).shape == ()
    for bad in (0, jax.random.PRNGKey(0), jax.random.split(jax.random.key(0))):
        with pytest.raises(ValueError, match=r"key must be a single jax\.random\.key"):
            check_key(bad)
    assert check_int(3, "n") == 3
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            check_int(bad, "n")
