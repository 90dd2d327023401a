"""The model's configuration: one frozen dataclass and a JAX pytree whose leaves are the four variances.

Structure (width, cell, activation, layers, directions, readout, trainable set, whether there is a bias) is
the pytree's static part; sigma_w2, sigma_u2, sigma_b2 and sigma_v2 are its data. A jitted function that takes
the config as an ordinary argument therefore compiles once per structure: changing a variance compiles
nothing, and a kernel can be vmapped over a grid of variances or differentiated with respect to them
(docs/theory.md §14).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ntk_rnn.network.cells import CELLS, Cell, builtin_cell

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
    "linear": lambda u: u,
}
"""The activations RNNConfig.activation names; any other elementwise jax function may be passed itself."""
PARAM_NAMES = ("W", "A", "b", "bh", "B", "bo")
"""The parameters a model can have, by base name (RNNConfig.trainable is a subset)."""
PARAMETERIZATIONS = ("paper", "standard", "ntk")
"""The values of RNNConfig.parameterization."""
VARIANCES = ("sigma_w2", "sigma_u2", "sigma_b2", "sigma_v2")
READOUTS = ("all", "last", "mean")
"""The values of RNNConfig.readout."""
STACKINGS = ("separate", "concat")
"""The values of RNNConfig.stacking."""


@dataclasses.dataclass(frozen=True)
class RNNConfig:
    """Elman RNN  h_l = phi(c_W W h_{l-1} + c_A A x_l + c_b b),  y_l = c_B B h_l,  h_0 = 0  (docs/theory.md §1),
    or any other cell, stacked and bidirectional (docs/theory.md §8).

    The defaults are the paper's model: relu, W ~ N(0, 2/m), A ~ N(0, 2/m), B ~ N(0, 1/d), no
    bias, an output at every step, and only W trained.

    Attributes:
      width: hidden width m.
      input_dim: token dimension d_x.
      output_dim: output dimension d.
      activation: the Elman cell's phi: "relu", "tanh", "erf", "linear", or any elementwise jax function
        (GRU and LSTM use PyTorch's sigmoid and tanh).
      parameterization: how the variances below enter (multipliers c are 1 unless stated):

        - "paper": W ~ N(0, sigma_w2/m), A ~ N(0, sigma_u2/m), b ~ N(0, sigma_b2/m), B ~ N(0, sigma_v2/d);
        - "standard": W ~ N(0, sigma_w2/m), A ~ N(0, sigma_u2/d_x), b ~ N(0, sigma_b2), B ~ N(0, sigma_v2/m);
        - "ntk": every weight N(0, 1), c_W = sqrt(sigma_w2/m), c_A = sqrt(sigma_u2/d_x),
          c_b = sqrt(sigma_b2), c_B = sqrt(sigma_v2/m).

        Layers j >= 1 read the layer below through A_l{j} (k m, m): its fan-in d_x above becomes m.
      sigma_w2: the variance of W.
      sigma_u2: the variance of A.
      sigma_b2: the variance of b (and bh); 0 means no bias b.
      sigma_v2: the variance of B.
      trainable: the parameters the kernel and training differentiate, a subset of PARAM_NAMES
        ("W", "A", "b", "bh", "B", "bo"); each name covers that parameter in every layer and direction.
      readout: "all" (an output at every step, the paper's), "last" (the last state's) or "mean" (the
        readout of the mean of the states); the last two give one output per sequence.
      cell: "elman", "gru", "lstm" (PyTorch's equations and gate order, ntk_rnn.network.cells) or a Cell.
        Parameters W (k m, m), A (k m, d_x), b (k m,) with k = the cell's gates.
      num_layers: stacked layers; layer j >= 1 has parameters W_l{j}, A_l{j}, b_l{j} (PyTorch's names
        without "weight_hh_"/"weight_ih_"/"bias_ih_").
      bidirectional: add a second direction, with parameters suffixed "_reverse" and its own readout
        B_reverse, run on each sequence reversed; the two readouts are summed.
      stacking: how the layers of a bidirectional model read the layer below: "separate" (two independent
        stacks, each direction's layer j reads its own layer j - 1) or "concat" (PyTorch's, Flax's and
        Keras's: layer j of both directions reads [h_forward; h_reverse] of layer j - 1, so A_l{j} is
        (k m, 2 m)).
      hidden_bias: a second cell bias bh on the hidden side, PyTorch's bias_hh, of Cell.hidden_bias_gates
        blocks ((k m,) for the built-in cells): added to W h, which for the GRU's candidate puts it inside the
        reset product, n = tanh(A_n x + b_n + r * (W_n h + bh_n)). It has b's law (sigma_b2) and multiplier,
        and needs sigma_b2 > 0.
      output_bias: a readout bias bo (d,), added to every output (0 at padded positions); it starts at 0
        and has multiplier 1 in every parameterization (a trained head's bias, loaded as it is).
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
    cell: str | Cell = "elman"
    num_layers: int = 1
    bidirectional: bool = False
    stacking: str = "separate"
    hidden_bias: bool = False
    output_bias: bool = False

    def __post_init__(self) -> None:
        for name in ("width", "input_dim", "output_dim", "num_layers"):
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
        if not (isinstance(self.cell, Cell) or self.cell in CELLS):
            raise ValueError(f"RNNConfig.cell must be one of {CELLS} or an ntk_rnn.Cell, got {self.cell!r}")
        for name in ("bidirectional", "hidden_bias", "output_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RNNConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if self.stacking not in STACKINGS:
            raise ValueError(f"RNNConfig.stacking must be one of {STACKINGS}, got {self.stacking!r}")
        if self.stacking == "concat" and not self.bidirectional:
            raise ValueError("RNNConfig.stacking='concat' stacks the two directions of a bidirectional model; "
                             "set bidirectional=True or keep stacking='separate'")  # fmt: skip
        if self.hidden_bias and self.sigma_b2 == 0:
            raise ValueError("RNNConfig.hidden_bias=True needs sigma_b2 > 0 (bh has b's law; sigma_b2 = 0 means "
                             "no biases)")  # fmt: skip
        trainable = tuple(self.trainable)
        if not trainable or len(set(trainable)) != len(trainable) or not set(trainable) <= set(PARAM_NAMES):
            raise ValueError(
                f"RNNConfig.trainable must be a non-empty subset of {PARAM_NAMES} without repeats, "
                f"got {self.trainable!r}"
            )
        if "b" in trainable and self.sigma_b2 == 0:
            raise ValueError("RNNConfig.trainable contains 'b' but sigma_b2 = 0 means the model has no bias")
        for name, field in (("bh", "hidden_bias"), ("bo", "output_bias")):
            if name in trainable and not getattr(self, field):
                raise ValueError(f"RNNConfig.trainable contains {name!r} but {field}=False: the model has no {name}")
        object.__setattr__(self, "trainable", trainable)
        object.__setattr__(self, "_has_bias", self.sigma_b2 > 0)

    @property
    def has_bias(self) -> bool:
        """Whether the model has biases b (sigma_b2 > 0); static, also when the variances are traced."""
        return self._has_bias

    @property
    def structure(self) -> tuple:
        """Everything but the variances: the static part of the pytree, which decides what jit compiles."""
        fields = (getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in VARIANCES)
        return (*fields, self._has_bias)

    def tree_flatten(self) -> tuple[tuple, tuple]:
        return tuple(getattr(self, name) for name in VARIANCES), self.structure

    @classmethod
    def tree_unflatten(cls, structure: tuple, variances) -> RNNConfig:
        """The config with these variances (floats, arrays or tracers): built without __post_init__'s value
        checks, which need concrete numbers."""
        cfg = object.__new__(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.name not in VARIANCES]
        for name, value in zip((*names, "_has_bias"), structure, strict=True):
            object.__setattr__(cfg, name, value)
        for name, value in zip(VARIANCES, variances, strict=True):
            object.__setattr__(cfg, name, value)
        return cfg

    @property
    def cell_spec(self) -> Cell:
        """The cell as a Cell (ntk_rnn.network.cells)."""
        return self.cell if isinstance(self.cell, Cell) else builtin_cell(self.cell, self.phi)

    @property
    def cell_name(self) -> str:
        return self.cell_spec.name

    @property
    def is_elman(self) -> bool:
        """One forward Elman layer with at most the bias b: the model of docs/theory.md §1-§3, with its own
        fast paths."""
        return (self.cell == "elman" and self.num_layers == 1 and not self.bidirectional
                and not self.hidden_bias and not self.output_bias)  # fmt: skip

    @property
    def directions(self) -> tuple[str, ...]:
        """Parameter-name suffix of each direction: ("",) or ("", "_reverse")."""
        return ("", "_reverse") if self.bidirectional else ("",)

    @property
    def layers(self) -> tuple[str, ...]:
        """Parameter-name suffix of each layer: "", "_l1", "_l2", ..."""
        return tuple(f"_l{j}" if j else "" for j in range(self.num_layers))

    @property
    def param_names(self) -> tuple[str, ...]:
        """The parameters this model has: W, A, b (when sigma_b2 > 0), bh (hidden_bias) of every layer and
        direction, then the readouts B (and B_reverse), then bo (output_bias)."""
        cell = ("W", "A", "b", "bh")[: 2 + self.has_bias + self.hidden_bias]
        names = [k + layer + d for layer in self.layers for d in self.directions for k in cell]
        return (*names, *("B" + d for d in self.directions), *(("bo",) if self.output_bias else ()))

    @property
    def trainable_names(self) -> tuple[str, ...]:
        """The trainable parameters by full name, in param_names order."""
        return tuple(k for k in self.param_names if base_name(k) in self.trainable)

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of W (k m, m), A (k m, d_in), b (k m,), bh (k' m,), B (d, m) and bo (d,); k = the cell's gates,
        k' its hidden_bias_gates, d_in = d_x in the first layer, m above it (2 m for stacking "concat")."""
        m, d, k = self.width, self.output_dim, self.cell_spec.gates
        kh = self.cell_spec.hidden_bias_gates
        shapes = {"W": (k * m, m), "b": (k * m,), "bh": (kh * m,), "B": (d, m), "bo": (d,)}
        return {name: shapes.get(base_name(name), (k * m, self.fan_in(name))) for name in self.param_names}

    def fan_in(self, name: str) -> int:
        """The input dimension a parameter multiplies: m for W and B, d_x or m (2 m for stacking "concat") for
        A, 1 for the biases."""
        base = base_name(name)
        if base == "A":
            if name in ("A", "A_reverse"):
                return self.input_dim
            return self.width * (2 if self.stacking == "concat" else 1)
        return {"W": self.width, "B": self.width}.get(base, 1)

    @property
    def init_std(self) -> dict[str, float]:
        """Standard deviation of each parameter's entries at initialization (0 for bo, which starts at 0)."""
        zero = {"bo": 0.0} if self.output_bias else {}
        if self.parameterization == "ntk":
            return {**dict.fromkeys(self.param_names, 1.0), **zero}
        m, d = self.width, self.output_dim
        variance = {"W": self.sigma_w2, "A": self.sigma_u2, "b": self.sigma_b2, "bh": self.sigma_b2,
                    "B": self.sigma_v2}  # fmt: skip
        paper_fan = {"W": m, "A": m, "b": m, "bh": m, "B": d}

        def fan(name: str) -> int:
            return paper_fan[base_name(name)] if self.parameterization == "paper" else self.fan_in(name)

        std = {name: (variance[base_name(name)] / fan(name)) ** 0.5 for name in self.param_names if name != "bo"}
        return {**std, **zero}

    @property
    def multipliers(self) -> dict[str, float]:
        """Forward multiplier c of each parameter (1 except in the "ntk" parameterization)."""
        if self.parameterization != "ntk":
            return dict.fromkeys(self.param_names, 1.0)
        variance = {"W": self.sigma_w2, "A": self.sigma_u2, "b": self.sigma_b2, "bh": self.sigma_b2,
                    "B": self.sigma_v2, "bo": 1.0}  # fmt: skip
        return {k: (variance[base_name(k)] / self.fan_in(k)) ** 0.5 for k in self.param_names}

    @property
    def phi(self) -> Callable[[jax.Array], jax.Array]:
        """The activation as a function."""
        return ACTIVATIONS[self.activation] if isinstance(self.activation, str) else self.activation

    @property
    def activation_name(self) -> str:
        if isinstance(self.activation, str):
            return self.activation
        return getattr(self.activation, "__name__", "custom")

    def variances(self) -> dict[str, float]:
        """{"sigma_w2": ..., "sigma_u2": ..., "sigma_b2": ..., "sigma_v2": ...}: the pytree's data."""
        return {name: getattr(self, name) for name in VARIANCES}

    def replace(self, **changes) -> RNNConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-friendly view (a custom activation is recorded by name)."""
        out = dataclasses.asdict(self)
        out["activation"] = self.activation_name
        out["trainable"] = list(self.trainable)
        out["cell"] = self.cell_name
        return out


jax.tree_util.register_pytree_node(RNNConfig, RNNConfig.tree_flatten, RNNConfig.tree_unflatten)


def base_name(name: str) -> str:
    """The parameter a full name stands for: "W_l1_reverse" -> "W"."""
    return name.split("_", 1)[0]
