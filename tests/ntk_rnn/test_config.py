"""RNNConfig: validation of every field."""

import pytest

import ntk_rnn


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(width=0, input_dim=2), "width must be a positive int"),
        (dict(width=4, input_dim=2, activation="gelu"), "activation must be one of"),
        (dict(width=4, input_dim=2, sigma_w2=-1.0), "sigma_w2 must be a positive"),
        (dict(width=4, input_dim=2, trainable=("W", "Q")), "trainable must be a non-empty subset"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ntk_rnn.RNNConfig(**kwargs)
