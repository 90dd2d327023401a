"""What every importer shares: the optional framework, the readout head, and the (cfg, params) it returns.

An imported model is in the "standard" parameterization, whose multipliers are all 1, so params are the
framework's own arrays (in float64) and every kernel is over exactly the parameters the framework has.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

import jax.numpy as jnp
import numpy as np

from ntk_rnn.network.checks import Params, check_params
from ntk_rnn.network.config import PARAM_NAMES, RNNConfig, base_name


def require(module: str, importer: str, package: str | None = None) -> ModuleType:
    """Import an optional framework, or say which package `importer` needs."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{importer} needs {package or module}, which is not installed: "
                          f"pip install {package or module}") from error  # fmt: skip


def type_name(obj: object) -> str:
    """module.Class of an object, for the importers' errors."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def real_array(value, shape: tuple[int, ...], importer: str, where: str) -> np.ndarray:
    """A float64 copy of a real floating array of the given shape, or an error naming `where`."""
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{importer}: {where} must be a real floating array, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"{importer}: {where} must have shape {shape}, got {array.shape}")
    return np.array(array, np.float64)


def readout_arrays(weight, bias, width: int, directions: int) -> dict[str, np.ndarray]:
    """A head y = weight [h_forward; h_reverse] + bias, weight (d, directions * m), as B (d, m), B_reverse and bo;
    weight None is the identity head, whose outputs are the states themselves (d = directions * m)."""
    if weight is None:
        weight = np.eye(directions * width)
    weight = np.asarray(weight, np.float64)
    if weight.ndim != 2 or weight.shape[1] != directions * width:
        raise ValueError(f"head: the readout weight must have shape (d, {directions * width}) (the {directions} "
                         f"direction(s) of width {width}), got {weight.shape}")  # fmt: skip
    out = {"B" + d: weight[:, i * width : (i + 1) * width] for i, d in enumerate(("", "_reverse")[:directions])}
    if bias is not None:
        out["bo"] = np.asarray(bias, np.float64).reshape(-1)
    return out


def imported(arrays: Mapping[str, np.ndarray], *, head_trained: bool, **fields) -> tuple[RNNConfig, Params]:
    """(cfg, params) of a framework's arrays {our name: array}: cfg has `fields` (width, input_dim, cell, ...),
    the "standard" parameterization, output_dim from B, biases as present, and every array trainable except an
    identity head (head_trained False). The shapes are checked against cfg."""
    names = {base_name(k) for k in arrays}
    output_dim = np.shape(arrays["B"])[0]
    cfg = RNNConfig(output_dim=output_dim, parameterization="standard", sigma_b2=1.0 if "b" in names else 0.0,
                    hidden_bias="bh" in names, output_bias="bo" in names,
                    trainable=tuple(k for k in PARAM_NAMES if k in names and (head_trained or k not in ("B", "bo"))),
                    **fields)  # fmt: skip
    missing = set(cfg.param_names) ^ set(arrays)
    if missing:
        raise ValueError(f"the imported arrays {sorted(arrays)} do not make the model {cfg.param_names}")
    return cfg, check_params(cfg, {k: jnp.asarray(v, jnp.float64) for k, v in arrays.items()})
