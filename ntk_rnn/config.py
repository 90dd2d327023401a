"""The model's configuration: one frozen dataclass, hashable so that jit can treat it as static."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
    "linear": lambda u: u,
}
PARAM_NAMES = ("W", "A", "B")


@dataclasses.dataclass(frozen=True)
class RNNConfig:
    """Elman RNN  h_l = phi(W h_{l-1} + A x_l),  y_l = B h_l,  h_0 = 0  (theory.md §1).

    The defaults are the paper's model: relu, W ~ N(0, 2/m), A ~ N(0, 2/m), B ~ N(0, 1/d),
    an output at every step, and only W trained.

    Attributes:
      width: hidden width m.
      input_dim: token dimension d_x.
      output_dim: output dimension d.
      activation: "relu", "tanh", "erf", "linear", or any elementwise jax function.
      sigma_w2, sigma_u2, sigma_v2: init variances; W ~ N(0, sigma_w2/m), A ~ N(0, sigma_u2/m),
        B ~ N(0, sigma_v2/d).
      trainable: the parameters the kernel and training differentiate, a subset of ("W", "A", "B").
    """

    width: int
    input_dim: int
    output_dim: int = 1
    activation: str | Callable[[jax.Array], jax.Array] = "relu"
    sigma_w2: float = 2.0
    sigma_u2: float = 2.0
    sigma_v2: float = 1.0
    trainable: tuple[str, ...] = ("W",)

    def __post_init__(self) -> None:
        for name in ("width", "input_dim", "output_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RNNConfig.{name} must be a positive int, got {value!r}")
        for name in ("sigma_w2", "sigma_u2", "sigma_v2"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"RNNConfig.{name} must be a positive float, got {value!r}")
        if isinstance(self.activation, str) and self.activation not in ACTIVATIONS:
            raise ValueError(
                f"RNNConfig.activation must be one of {sorted(ACTIVATIONS)} or a callable, got {self.activation!r}"
            )
        if not callable(self.activation) and not isinstance(self.activation, str):
            raise ValueError(f"RNNConfig.activation must be a name or a callable, got {self.activation!r}")
        trainable = tuple(self.trainable)
        if not trainable or len(set(trainable)) != len(trainable) or not set(trainable) <= set(PARAM_NAMES):
            raise ValueError(
                f"RNNConfig.trainable must be a non-empty subset of {PARAM_NAMES} without repeats, "
                f"got {self.trainable!r}"
            )
        object.__setattr__(self, "trainable", trainable)

    @property
    def phi(self) -> Callable[[jax.Array], jax.Array]:
        """The activation as a function."""
        return ACTIVATIONS[self.activation] if isinstance(self.activation, str) else self.activation

    @property
    def activation_name(self) -> str:
        if isinstance(self.activation, str):
            return self.activation
        return getattr(self.activation, "__name__", "custom")

    def replace(self, **changes) -> RNNConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-friendly view (a custom activation is recorded by name)."""
        out = dataclasses.asdict(self)
        out["activation"] = self.activation_name
        out["trainable"] = list(self.trainable)
        return out
