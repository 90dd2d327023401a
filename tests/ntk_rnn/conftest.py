"""Fixtures shared by the tests of ntk_rnn's modules."""

import jax
import pytest

import ntk_rnn


@pytest.fixture(scope="module")
def train_test_problem():
    """(cfg, params, train, test): the paper's model at m = 48 on 6 training sequences of length 5 and 3 test
    sequences of another length, 7."""
    train = ntk_rnn.synthetic_sequences(n=6, length=5, input_dim=4, delta=0.5, key=jax.random.key(0))
    test = ntk_rnn.synthetic_sequences(n=3, length=7, input_dim=4, delta=0.5, key=jax.random.key(9))
    cfg = ntk_rnn.RNNConfig(width=48, input_dim=4)
    return cfg, ntk_rnn.init_params(cfg, key=jax.random.key(1)), train, test
