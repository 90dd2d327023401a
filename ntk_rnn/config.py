"""The model's configuration: one frozen dataclass, hashable so that jit can treat it as static."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
    "linear": lambda u: u,
}
PARAM_NAMES = ("W", "A", "b", "B")
PARAMETERIZATIONS = ("paper", "standard", "ntk")
READOUTS = ("all", "last", "mean")


@dataclasses.dataclass(frozen=True)
class RNNConfig:
    """Elman RNN  h_l = phi(c_W W h_{l-1} + c_A A x_l + c_b b),  y_l = c_B B h_l,  h_0 = 0  (docs/theory.md §1).

    The defaults are the paper's model: relu, W ~ N(0, 2/m), A ~ N(0, 2/m), B ~ N(0, 1/d), no
    bias, an output at every step, and only W trained.

    Attributes:
      width: hidden width m.
      input_dim: token dimension d_x.
      output_dim: output dimension d.
      activation: "relu", "tanh", "erf", "linear", or any elementwise jax function.
      parameterization: how the variances below enter (multipliers c are 1 unless stated):
        "paper":    W ~ N(0, sigma_w2/m), A ~ N(0, sigma_u2/m), b ~ N(0, sigma_b2/m), B ~ N(0, sigma_v2/d);
        "standard": W ~ N(0, sigma_w2/m), A ~ N(0, sigma_u2/d_x), b ~ N(0, sigma_b2), B ~ N(0, sigma_v2/m);
        "ntk":      every weight N(0, 1), c_W = sqrt(sigma_w2/m), c_A = sqrt(sigma_u2/d_x),
                    c_b = sqrt(sigma_b2), c_B = sqrt(sigma_v2/m).
      sigma_w2, sigma_u2, sigma_b2, sigma_v2: the variances; sigma_b2 = 0 means no bias b.
      trainable: the parameters the kernel and training differentiate, a subset of ("W", "A", "b", "B").
      readout: "all" (an output at every step, the paper's), "last" (the last state's) or "mean" (the
        readout of the mean of the states); the last two give one output per sequence.
    """

    width: int
    input_dim: int
    output_dim: int = 1
    activation: str | Callable[[jax.Array], jax.Array] = "relu"
    parameterization: str = "paper"
    sigma_w2: float = 2.0
    sigma_u2: float = 2.0
    sigma_b2: float = 0.0
    sigma_v2: float = 1.0
    trainable: tuple[str, ...] = ("W",)
    readout: str = "all"

    def __post_init__(self) -> None:
        for name in ("width", "input_dim", "output_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RNNConfig.{name} must be a positive int, got {value!r}")
        for name in ("sigma_w2", "sigma_u2", "sigma_v2"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"RNNConfig.{name} must be a positive float, got {value!r}")
        if not (isinstance(self.sigma_b2, (int, float)) and self.sigma_b2 >= 0):
            raise ValueError(f"RNNConfig.sigma_b2 must be a float >= 0 (0 means no bias), got {self.sigma_b2!r}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"RNNConfig.parameterization must be one of {PARAMETERIZATIONS}, got {self.parameterization!r}"
            )
        if self.readout not in READOUTS:
            raise ValueError(f"RNNConfig.readout must be one of {READOUTS}, got {self.readout!r}")
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
        if "b" in trainable and self.sigma_b2 == 0:
            raise ValueError("RNNConfig.trainable contains 'b' but sigma_b2 = 0 means the model has no bias")
        object.__setattr__(self, "trainable", trainable)

    @property
    def param_names(self) -> tuple[str, ...]:
        """The parameters this model has: W, A, B, and b when sigma_b2 > 0."""
        return tuple(k for k in PARAM_NAMES if k != "b" or self.sigma_b2 > 0)

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of W (m, m), A (m, d_x), b (m,) (only when sigma_b2 > 0) and B (d, m)."""
        m, dx, d = self.width, self.input_dim, self.output_dim
        shapes = {"W": (m, m), "A": (m, dx), "b": (m,), "B": (d, m)}
        return {k: shapes[k] for k in self.param_names}

    @property
    def init_std(self) -> dict[str, float]:
        """Standard deviation of each parameter's entries at initialization."""
        m, dx, d = self.width, self.input_dim, self.output_dim
        if self.parameterization == "ntk":
            return dict.fromkeys(self.param_names, 1.0)
        fan = {"paper": (m, m, m, d), "standard": (m, dx, 1, m)}[self.parameterization]
        variances = (self.sigma_w2, self.sigma_u2, self.sigma_b2, self.sigma_v2)
        std = {k: math.sqrt(v / f) for k, v, f in zip(PARAM_NAMES, variances, fan, strict=True)}
        return {k: std[k] for k in self.param_names}

    @property
    def multipliers(self) -> dict[str, float]:
        """Forward multiplier c of each parameter (1 except in the "ntk" parameterization)."""
        if self.parameterization != "ntk":
            return dict.fromkeys(self.param_names, 1.0)
        m, dx = self.width, self.input_dim
        c = {"W": self.sigma_w2 / m, "A": self.sigma_u2 / dx, "b": self.sigma_b2, "B": self.sigma_v2 / m}
        return {k: math.sqrt(c[k]) for k in self.param_names}

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
