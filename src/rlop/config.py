"""Config plumbing shared by every stage (TRL-style dataclasses).

Each stage owns a dataclass next to its code with a ``PRESETS`` mapping (``tiny`` for
tests, ``cpu`` for SmolLM2-135M on 2 cores). Values are resolved in this order:
dataclass defaults < preset < YAML file (``--config``) < command-line flags.
A YAML file may hold the stage's keys at top level or under a section named after the
stage (``sft:``, ``reward:``, ``ppo:`` ...), so one file can configure a whole ``rlop run``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    pass


def _field_type(cls, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    tp = hints[f.name]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else str
    return tp


def _coerce(cls, name: str, value: Any, source: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        close = [k for k in fields if k.startswith(name[:3])]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"{source}: unknown option '{name}' for {cls.__name__}{hint}")
    if value is None:
        return None
    tp = _field_type(cls, fields[name])
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp in (int, float, str):
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return tp(value)
        if typing.get_origin(tp) is list:
            if isinstance(value, str):
                value = [v for v in value.split(",") if v]
            (inner,) = typing.get_args(tp) or (str,)
            return [inner(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: option '{name}' expects {getattr(tp, '__name__', tp)}, got {value!r}") from None
    return value


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return data


def build_config(
    cls: type[T],
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    section: str | None = None,
) -> T:
    values: dict[str, Any] = {}
    presets = getattr(cls, "PRESETS", {})
    if preset:
        if preset not in presets:
            raise ConfigError(f"unknown preset '{preset}' for {cls.__name__}; choose from {', '.join(presets)}")
        values.update(presets[preset])
    if config_file:
        data = read_yaml(config_file)
        if section and isinstance(data.get(section), dict):
            data = data[section]
        elif section:
            known = {f.name for f in dataclasses.fields(cls)}
            data = {k: v for k, v in data.items() if k in known}
        for k, v in data.items():
            values[k] = _coerce(cls, k, v, str(config_file))
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = _coerce(cls, k, v, "command line")
    return cls(**values)


def add_config_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One ``--option-name`` per dataclass field (default: not given)."""
    group = parser.add_argument_group(f"{cls.__name__} options")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        doc = (f.metadata or {}).get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        group.add_argument(flag, dest=f"cfg__{f.name}", default=None, metavar=f.name.upper(), help=f"{doc} (default: {default})")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k[5:]: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
