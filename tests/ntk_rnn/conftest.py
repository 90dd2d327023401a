"""Fixtures shared by the tests of ntk_rnn's modules."""

import jax
import numpy as np
import pytest

import ntk_rnn


@pytest.fixture(scope="module")
def train_test_problem():
    """(cfg, params, train, test): the paper's model at m = 48 on 6 training sequences of length 5 and 3 test
    sequences of another length, 7."""
    train = ntk_rnn.synthetic_sequences(n=6, length=5, input_dim=4, delta=0.5, key=jax.random.key(0))
    test = ntk_rnn.synthetic_sequences(n=3, length=7, input_dim=4, delta=0.5, key=jax.random.key(9))
    cfg = ntk_rnn.RNNConfig(width=48, input_dim=4)
    rng = np.random.default_rng(1)  # N(0, init_std^2) as init_params draws, without compiling a sampler per shape
    params = {k: rng.standard_normal(shape) * cfg.init_std[k] for k, shape in cfg.param_shapes.items()}
    return cfg, params, train, test
