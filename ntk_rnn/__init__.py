"""ntk-rnn: the neural tangent kernel of wide Elman RNNs, measured (Allen-Zhu, Li, Song 2019)."""

import jax

jax.config.update("jax_enable_x64", True)

from ntk_rnn.config import RNNConfig  # noqa: E402
from ntk_rnn.kernel import empirical_ntk  # noqa: E402
from ntk_rnn.model import apply, hidden_states, init_params  # noqa: E402

__all__ = ["RNNConfig", "apply", "empirical_ntk", "hidden_states", "init_params"]
