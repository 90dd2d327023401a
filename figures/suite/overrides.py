"""Study configs: a profile's config per study with TOML overrides applied (every field name and type
checked), and the effective configs written back as TOML that --config reads to the same configs."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from figures.suite.registry import STUDIES, Study


def load_overrides(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read a TOML file of study overrides: one table per study name, keys = config fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--config: no such file {str(path)!r}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"--config {path}: invalid TOML: {err}") from None


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def coerce_value(value: Any, annotation: Any, where: str) -> Any:
    """value (as TOML gives it) checked against a dataclass field's annotation; lists become tuples,
    integers become floats where a float is asked for. A mismatch raises a ValueError naming `where`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        for option in options:
            with contextlib.suppress(ValueError):
                return coerce_value(value, option, where)
        raise ValueError(f"{where} must be {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list (of {_type_name(args[0]) if args else 'values'}), got {value!r}")
        item = args[0] if args else Any
        return tuple(coerce_value(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    return value  # an annotation this checker does not know: taken as given


def override_config(config: Any, changes: Mapping[str, Any], where: str) -> Any:
    """dataclasses.replace(config, **changes) with every field name and type checked."""
    if not isinstance(changes, Mapping):
        raise ValueError(f"{where} must be a table of config fields, got {changes!r}")
    hints = typing.get_type_hints(type(config))
    fields = [f.name for f in dataclasses.fields(config)]
    coerced = {}
    for key, value in changes.items():
        if key not in fields:
            raise ValueError(f"{where} has no field {key!r}; its fields are: {', '.join(fields)}")
        coerced[key] = coerce_value(value, hints.get(key, Any), f"{where}.{key}")
    return dataclasses.replace(config, **coerced)


def effective_configs(
    profile: str = "quick",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    studies: Mapping[str, Study] | None = None,
    source: str = "--config",
) -> dict[str, Any]:
    """{study name: the profile's config with the overrides applied}, over `studies` (default: the
    registry); unknown studies or fields and wrong types raise a ValueError that names them."""
    studies = STUDIES if studies is None else studies
    overrides = overrides or {}
    unknown = [name for name in overrides if name not in studies]
    if unknown:
        raise ValueError(f"{source}: unknown study [{unknown[0]}]; the studies are: {', '.join(studies)}")
    return {
        name: override_config(study.config(profile), overrides.get(name, {}), f"{source}: [{name}]")
        for name, study in studies.items()
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def configs_toml(configs: Mapping[str, Any]) -> str:
    """The configs as a TOML file that --config reads back to the same configs (None fields, which
    TOML cannot express, appear as comments)."""
    lines = []
    for name, config in configs.items():
        lines.append(f"[{name}]")
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            if value is None:
                lines.append(f"# {field.name} = None (TOML has no null: leave the field out to keep None)")
            else:
                lines.append(f"{field.name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def config_seeds(config: Any) -> list[int]:
    """The seeds a config runs (its `seeds` or `seed` field)."""
    values = dataclasses.asdict(config)
    if "seeds" in values:
        return list(values["seeds"])
    return [values["seed"]] if "seed" in values else []
