"""Flax linen's recurrent layers (SimpleCell, GRUCell, LSTMCell, OptimizedLSTMCell in linen.RNN or
linen.Bidirectional, stacked) as ntk_rnn models.

from_flax reads the variables as they are (float64), so that every kernel of the returned (cfg, params) is over
exactly the parameters Flax has. Each cell is a set of Dense layers whose kernels are (in, out): they are
transposed and stacked by gate in rows, A = [ir; iz; in]^T, W = [hr; hz; hn]^T (GRU, gates r, z, n) and
A = [ii; if; ig; io]^T, W = [hi; hf; hg; ho]^T (LSTM, gates i, f, g, o). Every bias that enters a gate's
pre-activation additively is b, wherever Flax puts it (the input side for SimpleCell and GRUCell, the hidden side
for LSTMCell); the GRU's candidate bias hn, inside the reset product, is bh (cell FLAX_GRU). Names follow the
layer and direction: the backward RNN of layer 1 gives W_l1_reverse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ntk_rnn.frameworks.common import imported, readout_arrays, real_array, require, type_name
from ntk_rnn.network.cells import FLAX_GRU
from ntk_rnn.network.checks import Params
from ntk_rnn.network.config import ACTIVATIONS, READOUTS, RNNConfig


class Part(NamedTuple):
    """A module and its params, with the paths that errors name: `at` in the variables
    (variables['params']['layers_1']['cell']) and `where` in the arguments (rnn.layers[1].cell)."""

    module: Any
    params: Mapping[str, Any]
    at: str
    where: str


def _params(variables: Any, where: str) -> tuple[Mapping[str, Any], str]:
    """The 'params' collection of a module's variables (or the params themselves), and its path."""
    if not isinstance(variables, Mapping):
        raise TypeError(f"from_flax: {where} must be the module's variables {{'params': ...}} (as .init returns), "
                        f"got {type(variables).__name__}")  # fmt: skip
    return (variables["params"], f"{where}['params']") if "params" in variables else (variables, where)


def _sub(params: Mapping[str, Any], key: str, at: str) -> tuple[Mapping[str, Any], str]:
    """params[key], a submodule's params, and its path."""
    value = params.get(key) if isinstance(params, Mapping) else None
    if not isinstance(value, Mapping):
        keys = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"from_flax: {at} has no submodule {key!r} ({keys}); the variables do not belong to "
                         f"this module")  # fmt: skip
    return value, f"{at}[{key!r}]"


def _exact_keys(params: Mapping[str, Any], expected: Sequence[str], at: str) -> None:
    if set(params) != set(expected):
        raise ValueError(f"from_flax: {at} must hold exactly {sorted(expected)}, got {sorted(params)}; the "
                         f"variables do not belong to this module")  # fmt: skip


def _dense(dense: Mapping[str, Any], at: str, bias: bool, shape: tuple[int, int]):
    """A Dense layer's kernel (in, out) = shape transposed, (out, in), and its bias (out,) or None."""
    _exact_keys(dense, ("kernel", "bias") if bias else ("kernel",), at)
    kernel = real_array(dense["kernel"], shape, "ntk_rnn.from_flax", f"{at}['kernel'] (in, out)")
    return kernel.T, real_array(dense["bias"], shape[1:], "ntk_rnn.from_flax", f"{at}['bias']") if bias else None


def _default(module: Any, attribute: str) -> bool:
    """Whether a dataclass attribute of the module has its default value (compared by identity)."""
    return getattr(module, attribute) is type(module).__dataclass_fields__[attribute].default


def _cell_types(linen: Any) -> tuple[type, ...]:
    return linen.SimpleCell, linen.GRUCell, linen.LSTMCell, linen.OptimizedLSTMCell


def _cell_fields(linen: Any, cell: Any, where: str) -> dict[str, Any]:
    """The RNNConfig fields of a Flax cell (cell, activation)."""
    kind = type(cell)
    if kind not in _cell_types(linen):
        raise TypeError(f"from_flax: {where} must be a flax.linen SimpleCell, GRUCell, LSTMCell or OptimizedLSTMCell, "
                        f"got {type_name(cell)}")  # fmt: skip
    if not _default(cell, "carry_init"):
        raise ValueError(f"from_flax: {where} has a carry_init other than zeros; ntk_rnn's states start at 0")
    if kind is linen.SimpleCell:
        if cell.residual:
            raise ValueError(f"from_flax: {where} is a SimpleCell with residual=True (h' = phi(... + h)), which "
                             f"ntk_rnn's Elman cell does not have; use residual=False")  # fmt: skip
        if not callable(cell.activation_fn):
            raise TypeError(f"from_flax: {where}.activation_fn must be an elementwise function")
        name = next((k for k, f in ACTIVATIONS.items() if f is cell.activation_fn), None)
        return {"cell": "elman", "activation": name or cell.activation_fn}
    for attribute, default in (("gate_fn", "sigmoid"), ("activation_fn", "tanh")):
        if not _default(cell, attribute):
            value = getattr(cell, attribute)
            raise ValueError(f"from_flax: {where}.{attribute} must be its default, {default} (the GRU and LSTM "
                             f"equations ntk_rnn has), got {getattr(value, '__name__', value)!r}")  # fmt: skip
    return {"cell": FLAX_GRU if kind is linen.GRUCell else "lstm", "activation": "tanh"}


def _dense_names(linen: Any, cell: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of a cell's Dense layers that make A and W, in gate order."""
    if type(cell) is linen.SimpleCell:
        return ("i",), ("h",)
    if type(cell) is linen.GRUCell:
        return ("ir", "iz", "in"), ("hr", "hz", "hn")
    return ("ii", "if", "ig", "io"), ("hi", "hf", "hg", "ho")


def _input_dim(linen: Any, part: Part) -> int:
    """d_in of a first-layer cell: the rows of its input kernels (in, out)."""
    names_a, names_w = _dense_names(linen, part.module)
    _exact_keys(part.params, names_a + names_w, part.at)
    dense, at = _sub(part.params, names_a[0], part.at)
    kernel = dense.get("kernel")
    if np.ndim(kernel) != 2:
        raise ValueError(f"from_flax: {at}['kernel'] must be a matrix (in, out), got shape {np.shape(kernel)}")
    return int(np.shape(kernel)[0])


def _cell_arrays(linen: Any, part: Part, d_in: int) -> dict[str, np.ndarray]:
    """W (k m, m), A (k m, d_in), b (k m,) and, for the GRU, bh (m,) of one cell's params."""
    cell, params = part.module, part.params
    m, kind = cell.features, type(cell)
    names_a, names_w = _dense_names(linen, cell)
    _exact_keys(params, names_a + names_w, part.at)
    # the biases: SimpleCell's and the GRU's on the input side (plus the GRU's hn: bh), the LSTM's on the hidden side
    input_bias = kind in (linen.SimpleCell, linen.GRUCell)
    inputs = [_dense(*_sub(params, k, part.at), input_bias, (d_in, m)) for k in names_a]
    hidden = [_dense(*_sub(params, k, part.at), not input_bias or k == "hn", (m, m)) for k in names_w]
    arrays = {"W": np.concatenate([w for w, _ in hidden]), "A": np.concatenate([w for w, _ in inputs])}
    if not input_bias:
        return arrays | {"b": np.concatenate([b for _, b in hidden])}
    arrays["b"] = np.concatenate([b for _, b in inputs])
    return arrays | ({"bh": hidden[2][1]} if kind is linen.GRUCell else {})


def _check_rnn(linen: Any, rnn: Any, where: str, inside_bidirectional: bool) -> None:
    if type(rnn) is not linen.RNN:
        raise TypeError(f"from_flax: {where} must be a flax.linen.RNN(cell), got {type_name(rnn)}")
    if not inside_bidirectional and rnn.reverse:
        raise ValueError(f"from_flax: {where} has reverse=True (one direction, right to left), which ntk_rnn does not "
                         f"have; use linen.Bidirectional for the reverse direction")  # fmt: skip
    if dict(rnn.variable_axes) or rnn.variable_broadcast != "params" or rnn.variable_carry:
        raise ValueError(f"from_flax: {where} must share its params across steps (variable_axes={{}}, "
                         f"variable_broadcast='params', variable_carry=False, the defaults)")  # fmt: skip


def _directions(linen: Any, layer: Part, top: bool) -> list[Part]:
    """The cell of each direction of one layer: a cell (top level only), an RNN or a Bidirectional."""
    module, params, at, where = layer
    if top and type(module) in _cell_types(linen):
        return [layer]
    if type(module) is linen.RNN:
        _check_rnn(linen, module, where, False)
        cell_params, cell_at = _sub(params, "cell", at)
        return [Part(module.cell, cell_params, cell_at, f"{where}.cell")]
    if type(module) is linen.Bidirectional:
        if not _default(module, "merge_fn"):
            raise ValueError(f"from_flax: {where} is a Bidirectional with merge_fn={module.merge_fn!r}; ntk_rnn's "
                             f"directions are concatenated, [forward; backward] (the default merge_fn)")  # fmt: skip
        if module.forward_rnn is module.backward_rnn:
            raise ValueError(f"from_flax: {where} shares one RNN between its directions (tied parameters); give "
                             f"it two RNN modules")  # fmt: skip
        out = []
        for key in ("forward_rnn", "backward_rnn"):
            rnn = getattr(module, key)
            _check_rnn(linen, rnn, f"{where}.{key}", True)
            rnn_params, rnn_at = _sub(params, key, at)
            cell_params, cell_at = _sub(rnn_params, "cell", rnn_at)
            out.append(Part(rnn.cell, cell_params, cell_at, f"{where}.{key}.cell"))
        _exact_keys(params, ("forward_rnn", "backward_rnn"), at)
        return out
    kinds = "a flax.linen.RNN(cell) or Bidirectional(RNN(cell), RNN(cell))" + (", or a cell" if top else "")
    raise TypeError(f"from_flax: {where} must be {kinds}, got {type_name(module)}")


def _layers(linen: Any, rnn: Any, variables: Any) -> list[Part]:
    """Each layer with its params, bottom layer first."""
    if isinstance(rnn, (list, tuple)):
        if not isinstance(variables, (list, tuple)) or len(variables) != len(rnn) or not rnn:
            raise ValueError(f"from_flax: with rnn a list of {len(rnn)} layers, variables must be a list of their "
                             f"{len(rnn)} variables, got {type(variables).__name__}")  # fmt: skip
        pairs = enumerate(zip(rnn, variables, strict=True))
        return [Part(layer, *_params(v, f"variables[{j}]"), f"rnn[{j}]") for j, (layer, v) in pairs]
    if type(rnn) is linen.Sequential:
        if not rnn.layers:
            raise ValueError("from_flax: rnn is an empty linen.Sequential")
        for j, layer in enumerate(rnn.layers[:-1]):
            if getattr(layer, "return_carry", False):
                raise ValueError(f"from_flax: rnn.layers[{j}] has return_carry=True, so linen.Sequential would "
                                 f"feed (carry, outputs) to the next layer; only the top layer may return its "
                                 f"carry")  # fmt: skip
        params, at = _params(variables, "variables")
        _exact_keys(params, [f"layers_{j}" for j in range(len(rnn.layers))], at)
        return [Part(layer, *_sub(params, f"layers_{j}", at), f"rnn.layers[{j}]") for j, layer in enumerate(rnn.layers)]
    return [Part(rnn, *_params(variables, "variables"), "rnn")]


def from_flax(rnn: Any, variables: Any, head: Any = None, head_variables: Any = None, *,
              readout: str = "last") -> tuple[RNNConfig, Params]:  # fmt: skip
    """(cfg, params) of a Flax linen recurrent network and its Dense readout head.

    Args:
      rnn: a layer, linen.RNN(cell) or linen.Bidirectional(linen.RNN(cell), linen.RNN(cell)) with cell a linen
        SimpleCell (any activation_fn), GRUCell, LSTMCell or OptimizedLSTMCell; a bare cell (run as linen.RNN
        runs it); or a stack, linen.Sequential([layer, ...]) or a list of layers, bottom first, all with the same
        cell equations, width and directions (layers above the first read the one below; a Bidirectional's
        [forward; backward] outputs -> stacking "concat"). The model is the one that gets seq_lengths in every
        layer (linen.Sequential passes it to its first layer only: for padded batches call each layer with it).
        Refused: other cells, SimpleCell(residual=True), GRU/LSTM gate_fn or activation_fn other than sigmoid and
        tanh, a carry_init other than zeros, RNN(reverse=True) outside a Bidirectional, params not shared
        across steps, a Bidirectional merge_fn other than concatenation or with one RNN for both directions, and
        linen.Sequential layers below the top with return_carry=True.
      variables: rnn's variables ({'params': ...}, as rnn.init returns, or the params themselves); for a list of
        layers, the list of their variables.
      head: a linen.Dense(d) applied to the top layer's final h (its [h_forward; h_backward] for a Bidirectional;
        LSTM carries are (c, h)) or to its outputs (readout "all"/"mean"); its bias becomes bo. None: the
        identity readout, whose outputs are the states themselves (d = directions * m, not trained).
      head_variables: head's variables (or params); None when head is None.
      readout: "last" (the head on the final carry: the forward state at each sequence's last real step, the
        backward state after the whole sequence), "all" (the head on the output sequence; 0 at padded steps,
        where Flax's are not zeroed) or "mean" (the head on the mean of the outputs over the real steps).

    Returns:
      cfg: the model, in the "standard" parameterization with every parameter of rnn and head trainable; its
        inputs are (n, L, d_x) (batch first, whatever time_major), its states start at 0.
      params: float64 jax arrays equal to Flax's (the model computes in float64, whatever the modules' dtype).
    """
    linen = require("flax.linen", "ntk_rnn.from_flax", "flax")
    if readout not in READOUTS:
        raise ValueError(f"from_flax: readout must be one of {READOUTS}, got {readout!r}")
    layers = _layers(linen, rnn, variables)
    parsed = [_directions(linen, layer, layer.module is rnn) for layer in layers]
    first = parsed[0][0]
    fields = _cell_fields(linen, first.module, first.where)
    m, directions = first.module.features, len(parsed[0])
    arrays: dict[str, np.ndarray] = {}
    input_dim = _input_dim(linen, first)
    for j, cells in enumerate(parsed):
        if len(cells) != directions:
            raise ValueError(f"from_flax: every layer must have the same directions; {layers[j].where} has "
                             f"{len(cells)}, {layers[0].where} has {directions}")  # fmt: skip
        for direction, part in zip(("", "_reverse")[:directions], cells, strict=True):
            cell = part.module
            cell_fields = _cell_fields(linen, cell, part.where)
            if cell_fields != fields or cell.features != m:
                raise ValueError(f"from_flax: every cell must have the same equations and width; {part.where} is "
                                 f"{type(cell).__name__}(features={cell.features}) with {cell_fields}, "
                                 f"{first.where} is {type(first.module).__name__}(features={m}) with "
                                 f"{fields}")  # fmt: skip
            d_in = directions * m if j else input_dim
            suffix = (f"_l{j}" if j else "") + direction
            arrays |= {k + suffix: v for k, v in _cell_arrays(linen, part, d_in).items()}
    if head is None:
        if head_variables is not None:
            raise ValueError("from_flax: head_variables given without a head; pass head=linen.Dense(d) too")
        arrays |= readout_arrays(None, None, m, directions)
    else:
        if type(head) is not linen.Dense:
            raise TypeError(f"from_flax: head must be a flax.linen.Dense(d) reading {directions * m} features, or "
                            f"None; got {type_name(head)}")  # fmt: skip
        if head_variables is None:
            raise ValueError("from_flax: head_variables (the head's {'params': {'kernel', 'bias'}}) are needed with "
                             "a head")  # fmt: skip
        head_params, at = _params(head_variables, "head_variables")
        weight, bias = _dense(head_params, at, head.use_bias, (directions * m, head.features))
        arrays |= readout_arrays(weight, bias, m, directions)
    bidirectional = directions == 2
    return imported(arrays, head_trained=head is not None, width=m, input_dim=input_dim, num_layers=len(parsed),
                    bidirectional=bidirectional, stacking="concat" if bidirectional else "separate",
                    readout=readout, **fields)  # fmt: skip
