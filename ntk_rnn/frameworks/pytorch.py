"""PyTorch's recurrent layers (torch.nn.RNN, GRU, LSTM) as ntk_rnn models, and back.

from_torch reads a module's weights as they are (float64), so that every kernel of the returned (cfg, params)
is over exactly the parameters torch has: weight_hh -> W, weight_ih -> A, bias_ih -> b, bias_hh -> bh, the head's
weight -> [B, B_reverse] and its bias -> bo. Names follow the layer and direction: weight_hh_l1_reverse -> W_l1_reverse.
ntk_rnn's inputs are always (n, L, d_x), whatever the module's batch_first; lengths (n,) stand for a padded
batch packed with torch.nn.utils.rnn.pack_padded_sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ntk_rnn.frameworks.common import imported, readout_arrays, require, type_name
from ntk_rnn.network.cells import FLAX_GRU, GRU, LSTM
from ntk_rnn.network.checks import Params, check_params
from ntk_rnn.network.config import READOUTS, RNNConfig

# torch's RNNBase.mode -> (cell, activation)
MODES = {"RNN_TANH": ("elman", "tanh"), "RNN_RELU": ("elman", "relu"), "GRU": ("gru", "tanh"),
         "LSTM": ("lstm", "tanh")}  # fmt: skip
TORCH_NAMES = {"W": "weight_hh", "A": "weight_ih", "b": "bias_ih", "bh": "bias_hh"}


def _suffixes(num_layers: int, bidirectional: bool) -> list[tuple[str, str]]:
    """(ntk_rnn suffix, torch suffix) of each layer and direction: ("_l1_reverse", "_l1_reverse"), ("", "_l0")..."""
    directions = ("", "_reverse") if bidirectional else ("",)
    return [((f"_l{j}" if j else "") + d, f"_l{j}{d}") for j in range(num_layers) for d in directions]


def _array(torch: Any, tensor: Any, name: str) -> np.ndarray:
    """A tensor's values as float64 numpy (any real dtype or device)."""
    if tensor.is_complex():
        raise TypeError(f"from_torch: {name} is complex ({tensor.dtype}); ntk_rnn's models are real")
    return tensor.detach().to(device="cpu", dtype=torch.float64).numpy().copy()


def _check_plain(module: Any, label: str, expected: set[str]) -> None:
    """Refuse re-parameterized weights (weight norm, parametrizations): the kernel would be over other parameters
    than the module's."""
    names = {name for name, _ in module.named_parameters()}
    if names != expected:
        raise ValueError(f"from_torch: {label} must have the plain parameters {sorted(expected)}, got {sorted(names)} "
                         f"(weight norm and parametrizations are not supported)")  # fmt: skip


def _check_rnn(torch: Any, rnn: Any) -> None:
    """Refuse what the model cannot be: other modules, proj_size, dropout that acts, re-parameterized weights."""
    nn = torch.nn
    if (not isinstance(rnn, nn.RNNBase) or getattr(rnn, "mode", None) not in MODES
            or type(rnn).forward not in (nn.RNN.forward, nn.GRU.forward, nn.LSTM.forward)):  # fmt: skip
        raise TypeError(f"from_torch: rnn must be a torch.nn.RNN, torch.nn.GRU or torch.nn.LSTM (with their "
                        f"forward), got {type_name(rnn)}")  # fmt: skip
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"from_torch: LSTM proj_size={rnn.proj_size} (a projected hidden state) is not supported; "
                         f"use proj_size=0")  # fmt: skip
    if rnn.dropout > 0 and rnn.training and rnn.num_layers > 1:
        raise ValueError(f"from_torch: dropout={rnn.dropout} acts between the layers in training mode, and the "
                         f"kernel is of the deterministic network; call rnn.eval() or set dropout=0")  # fmt: skip
    keys = ("W", "A", "b", "bh") if rnn.bias else ("W", "A")
    suffixes = _suffixes(rnn.num_layers, rnn.bidirectional)
    _check_plain(rnn, "rnn", {TORCH_NAMES[k] + theirs for _, theirs in suffixes for k in keys})


def from_torch(rnn: Any, head: Any = None, *, readout: str = "last") -> tuple[RNNConfig, Params]:
    """(cfg, params) of a torch.nn.RNN (tanh or relu), GRU or LSTM and its readout head.

    Args:
      rnn: the recurrent module, any num_layers, bidirectional (-> stacking "concat": upper layers read
        [h_forward; h_reverse]), bias or not, batch_first either way, any real dtype and device. Refused:
        proj_size > 0, dropout > 0 in training mode with several layers (after rnn.eval() dropout does nothing),
        subclasses with their own forward, re-parameterized weights.
      head: a torch.nn.Linear(directions * m, d) applied to [h_forward; h_reverse] (its bias becomes bo), or
        None: the identity readout, whose outputs are the states themselves (d = directions * m, not trained).
      readout: "last" (the head on torch's h_n of the top layer: the forward state at each sequence's last real
        step and the reverse state at step 0), "all" (the head on torch's output sequence at every step; 0 at
        padded steps) or "mean" (the head on the mean of the outputs over the real steps).

    Returns:
      cfg: the model, in the "standard" parameterization with every parameter of rnn and head trainable
        (requires_grad is not read; narrow cfg.trainable with cfg.replace), both biases when bias=True
        (hidden_bias=True); its inputs are (n, L, d_x) with lengths (n,).
      params: float64 jax arrays equal to torch's.
    """
    torch = require("torch", "ntk_rnn.from_torch")
    _check_rnn(torch, rnn)
    if readout not in READOUTS:
        raise ValueError(f"from_torch: readout must be one of {READOUTS}, got {readout!r}")
    m, directions = rnn.hidden_size, 2 if rnn.bidirectional else 1
    if head is not None and not isinstance(head, torch.nn.Linear):
        raise TypeError(f"from_torch: head must be a torch.nn.Linear({directions * m}, d) or None, "
                        f"got {type_name(head)}")  # fmt: skip
    if head is not None and head.in_features != directions * m:
        raise ValueError(f"from_torch: head must be a torch.nn.Linear({directions * m}, d) reading the {directions} "
                         f"direction(s) of width {m}, got in_features={head.in_features}")  # fmt: skip
    if head is not None:
        _check_plain(head, "head", {"weight"} if head.bias is None else {"weight", "bias"})
    arrays = {}
    for ours, theirs in _suffixes(rnn.num_layers, rnn.bidirectional):
        for key, torch_name in TORCH_NAMES.items():
            if rnn.bias or key in ("W", "A"):
                arrays[key + ours] = _array(torch, getattr(rnn, torch_name + theirs), torch_name + theirs)
    if head is None:
        arrays |= readout_arrays(None, None, m, directions)
    else:
        bias = None if head.bias is None else _array(torch, head.bias, "head.bias")
        arrays |= readout_arrays(_array(torch, head.weight, "head.weight"), bias, m, directions)
    cell, activation = MODES[rnn.mode]
    return imported(arrays, head_trained=head is not None, width=m, input_dim=rnn.input_size, cell=cell,
                    activation=activation, num_layers=rnn.num_layers, bidirectional=bool(rnn.bidirectional),
                    stacking="concat" if rnn.bidirectional else "separate", readout=readout)  # fmt: skip


def to_torch(cfg: RNNConfig, params: Mapping[str, Any], *, batch_first: bool = True) -> tuple[Any, Any]:
    """The torch modules (rnn, head) computing cfg's model in float64, multipliers folded into the weights.

    rnn is a torch.nn.RNN (Elman with tanh or relu), GRU or LSTM with cfg's layers and directions, and head a
    torch.nn.Linear(directions * m, d) (bias when cfg.output_bias): cfg's outputs are head(cat of the top layer's
    h_n over directions) for readout "last", head(output) for "all" (0 at padded steps) and head(mean of output
    over the real steps) for "mean"; with lengths, on the packed sequence. A model with b but no bh gets
    bias_hh = 0, and Flax's GRU (FLAX_GRU) bias_hh = [0; 0; bh]: torch then has parameters that cfg does not
    train, and a kernel over all of torch's differs.
    Refused: custom cells and activations, and stacking "separate" with several layers of two directions.
    """
    torch = require("torch", "ntk_rnn.to_torch")
    params = check_params(cfg, params)
    spec = cfg.cell_spec
    if cfg.cell == "elman" and cfg.activation in ("tanh", "relu"):
        module, options = torch.nn.RNN, {"nonlinearity": cfg.activation}
    elif spec in (GRU, LSTM, FLAX_GRU):
        module, options = torch.nn.LSTM if spec is LSTM else torch.nn.GRU, {}
    else:
        raise ValueError(f"to_torch: torch has the Elman cell with activation 'tanh' or 'relu', 'gru' and 'lstm'; "
                         f"cfg has cell={cfg.cell_name!r}, activation={cfg.activation_name!r}")  # fmt: skip
    if cfg.bidirectional and cfg.num_layers > 1 and cfg.stacking != "concat":
        raise ValueError("to_torch: torch's upper layers read both directions (stacking='concat'); cfg has "
                         f"stacking={cfg.stacking!r} with {cfg.num_layers} layers")  # fmt: skip
    rnn = module(cfg.input_dim, cfg.width, num_layers=cfg.num_layers, bias=cfg.has_bias, batch_first=batch_first,
                 bidirectional=cfg.bidirectional, dtype=torch.float64, **options)  # fmt: skip
    c, m = cfg.multipliers, cfg.width
    values = {k: np.asarray(params[k]) * c[k] for k in cfg.param_names}
    with torch.no_grad():
        for ours, theirs in _suffixes(cfg.num_layers, cfg.bidirectional):
            for key, torch_name in TORCH_NAMES.items():
                if key == "bh" and cfg.has_bias and "bh" + ours not in values:
                    values["bh" + ours] = np.zeros(cfg.cell_spec.gates * m)
                elif key == "bh" and spec is FLAX_GRU and cfg.has_bias:
                    values["bh" + ours] = np.concatenate([np.zeros(2 * m), values["bh" + ours]])
                if key + ours in values:
                    getattr(rnn, torch_name + theirs).copy_(torch.from_numpy(values[key + ours]))
        weight = np.concatenate([values["B" + d] for d in cfg.directions], axis=1)
        head = torch.nn.Linear(weight.shape[1], cfg.output_dim, bias=cfg.output_bias, dtype=torch.float64)
        head.weight.copy_(torch.from_numpy(weight))
        if cfg.output_bias:
            head.bias.copy_(torch.from_numpy(values["bo"]))
    return rnn, head
