"""Equinox's recurrent cells (eqx.nn.GRUCell, eqx.nn.LSTMCell), one or stacked, as ntk_rnn models.

from_equinox reads the arrays as they are (float64), so that every kernel of the returned (cfg, params) is over
exactly the parameters Equinox has: weight_hh -> W, weight_ih -> A (gates stacked in rows as ntk_rnn's: r, z, n
and i, f, g, o), bias -> b, and the GRU's bias_n, inside the reset product, -> bh (cell FLAX_GRU). Layer j >= 1
gets the suffix _l{j}: W_l1, A_l1, ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ntk_rnn.frameworks.common import imported, readout_arrays, real_array, require, type_name
from ntk_rnn.network.cells import FLAX_GRU
from ntk_rnn.network.checks import Params
from ntk_rnn.network.config import READOUTS, RNNConfig


def from_equinox(cells: Any, head: Any = None, *, readout: str = "last") -> tuple[RNNConfig, Params]:
    """(cfg, params) of Equinox recurrent cells, run over a sequence from a zero state, and a Linear head.

    Args:
      cells: an eqx.nn.GRUCell or eqx.nn.LSTMCell, or a sequence of them, bottom layer first (layer j + 1 reads
        layer j's h at every step), all of one type, width and use_bias. The model is the cell scanned forward
        from h = 0 (and c = 0), cell(x_t, h) (LSTM: cell(x_t, (h, c))); padded steps (lengths) keep the state.
      head: an eqx.nn.Linear(m, d) applied to the top layer's h (in_features an int; out_features "scalar" gives
        d = 1), its bias (if any) -> bo; or None: the identity readout, whose outputs are the states themselves
        (d = m, not trained).
      readout: "last" (the head on the final h of each sequence's real steps), "all" (on h at every step; 0 at
        padded steps) or "mean" (on the mean of h over the real steps).

    Returns:
      cfg: the model, in the "standard" parameterization with every array of cells and head trainable; its
        inputs are (n, L, d_x).
      params: float64 jax arrays equal to Equinox's.
    """
    eqx = require("equinox", "ntk_rnn.from_equinox")
    if readout not in READOUTS:
        raise ValueError(f"from_equinox: readout must be one of {READOUTS}, got {readout!r}")
    layers = list(cells) if isinstance(cells, Sequence) else [cells]
    if not layers:
        raise ValueError("from_equinox: cells is empty; pass an eqx.nn.GRUCell or eqx.nn.LSTMCell or a list of them")
    kinds = (eqx.nn.GRUCell, eqx.nn.LSTMCell)
    first = layers[0]
    for j, cell in enumerate(layers):
        where = f"cells[{j}]" if isinstance(cells, Sequence) else "cells"
        if type(cell) not in kinds:
            raise TypeError(f"from_equinox: {where} must be an eqx.nn.GRUCell or eqx.nn.LSTMCell, "
                            f"got {type_name(cell)}")  # fmt: skip
        if (type(cell), cell.hidden_size, cell.use_bias) != (type(first), first.hidden_size, first.use_bias):
            raise ValueError(f"from_equinox: every layer must have the same cell type, hidden_size and use_bias; "
                             f"{where} is {type(cell).__name__}(hidden_size={cell.hidden_size}, use_bias="
                             f"{cell.use_bias}), cells[0] is {type(first).__name__}(hidden_size={first.hidden_size}, "
                             f"use_bias={first.use_bias})")  # fmt: skip
        if j and cell.input_size != first.hidden_size:
            raise ValueError(f"from_equinox: {where} reads the layer below, so its input_size must be "
                             f"{first.hidden_size}, got {cell.input_size}")  # fmt: skip
    m, gru = first.hidden_size, type(first) is eqx.nn.GRUCell
    k = 3 if gru else 4
    arrays = {}
    for j, cell in enumerate(layers):
        where, suffix = (f"cells[{j}]" if isinstance(cells, Sequence) else "cells"), (f"_l{j}" if j else "")
        arrays["W" + suffix] = real_array(cell.weight_hh, (k * m, m), "ntk_rnn.from_equinox", f"{where}.weight_hh")
        arrays["A" + suffix] = real_array(cell.weight_ih, (k * m, cell.input_size), "ntk_rnn.from_equinox",
                                          f"{where}.weight_ih")  # fmt: skip
        if cell.use_bias:
            arrays["b" + suffix] = real_array(cell.bias, (k * m,), "ntk_rnn.from_equinox", f"{where}.bias")
            if gru:
                arrays["bh" + suffix] = real_array(cell.bias_n, (m,), "ntk_rnn.from_equinox", f"{where}.bias_n")
    if head is None:
        arrays |= readout_arrays(None, None, m, 1)
    else:
        if type(head) is not eqx.nn.Linear:
            raise TypeError(f"from_equinox: head must be an eqx.nn.Linear({m}, d) or None, got {type_name(head)}")
        if head.in_features != m:
            raise ValueError(f"from_equinox: head must be an eqx.nn.Linear({m}, d) reading the top layer's h, got "
                             f"in_features={head.in_features!r}")  # fmt: skip
        d = 1 if head.out_features == "scalar" else head.out_features
        bias = real_array(head.bias, (d,), "ntk_rnn.from_equinox", "head.bias") if head.use_bias else None
        arrays |= readout_arrays(real_array(head.weight, (d, m), "ntk_rnn.from_equinox", "head.weight"), bias, m, 1)
    return imported(arrays, head_trained=head is not None, width=m, input_dim=first.input_size,
                    cell=FLAX_GRU if gru else "lstm", activation="tanh", num_layers=len(layers),
                    readout=readout)  # fmt: skip
