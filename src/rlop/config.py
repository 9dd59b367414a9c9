"""Config plumbing shared by every stage (TRL-style dataclasses, validated on construction).

Each stage owns a dataclass next to its code, derived from :class:`StageConfig`, with a
``PRESETS`` mapping (``tiny`` for tests, ``cpu`` for SmolLM2-135M on 2 cores). Every field
is declared with :func:`opt`: a help text, and where it applies a range (``ge``, ``gt``,
``le``) and choices (a ``Literal`` type). Construction checks types, ranges, choices and the
class's own cross-field rules (``check``), so a bad value stops a command before any model
loads. Values resolve in this order: dataclass defaults < preset < YAML file (``--config``)
top level < the stage's YAML section < command-line flags (under ``rlop run``, the run's own
values for a stage come between the preset and the YAML: :mod:`rlop.pipeline.resolve`).

A YAML file may hold a stage's keys at top level or under a section named after the stage
(``sft:``, ``reward:``, ``ppo:`` ...), so one file can configure a whole ``rlop run``. Unknown
keys, misspelled or scalar sections and options placed in the wrong section are errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from rlop.errors import UserError

T = TypeVar("T")

# A run-level preset that a stage config does not define uses this preset of the stage instead
# (``rlop run --preset study`` runs every stage at its ``cpu`` settings unless the stage has a
# ``study`` entry of its own, as PPO does; ``overopt`` likewise).
PRESET_BASE = {"study": "cpu", "overopt": "cpu"}

# what each preset is for (--help of every command that takes --preset)
PRESET_HELP = {
    "tiny": "a random two-layer model and a few steps: seconds, checks the plumbing, its numbers mean nothing",
    "cpu": "SmolLM2-135M-Instruct with shapes sized for 2 CPU cores (minutes per stage)",
    "study": "the cpu shapes with 32-token responses and 10 PPO steps, for the multi-seed study",
    "overopt": "the cpu shapes with AlpacaFarm's KL coefficient, 64 PPO steps and a policy kept every 8 (the over-optimisation gates)",
    "gpu": "AlpacaFarm's stage shapes for one GPU (untested on a GPU)",
}


def preset_help(names, default: str | None) -> str:
    """``--preset``'s help: each preset a class offers, what it is for, and what happens without one."""
    parts = [f"{n}: {PRESET_HELP.get(n, n)}" for n in sorted(names)]
    tail = (f"default: {default}" if default else
            "default: none, the field defaults below, which are the paper's and AlpacaFarm's full scale (hours to days on a CPU)")
    return "named settings. " + "; ".join(parts) + f" ({tail})"

# YAML section -> the config class it configures (module:Class, imported on demand)
SECTIONS = {
    "sft": "rlop.training.sft:SFTConfig",
    "reward": "rlop.training.reward_trainer:RewardConfig",
    "ppo": "rlop.training.ppo:PPOConfig",
    "bon": "rlop.training.best_of_n:BestOfNConfig",
    "spg": "rlop.rlp.spg:SPGConfig",
    "ocrm": "rlop.rlp.ocrm:OCRMConfig",
    "sample": "rlop.models.sampling:SampleConfig",
    "collect": "rlop.sandbox.collect:CollectConfig",
    "eval": "rlop.evaluation.winrate:EvalConfig",
    "overopt": "rlop.evaluation.overopt:OveroptConfig",
    "agreement": "rlop.evaluation.agreement:AgreementConfig",
    "sandbox": "rlop.sandbox.world:SandboxConfig",
    "run": "rlop.pipeline.run_config:RunConfig",
}


# learning-rate schedules by their transformers names (SFT and reward training)
LRScheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"]


class ConfigError(UserError, ValueError):
    """A config value, file or flag combination that cannot work (exit code 2)."""


def opt(default: Any, help: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Any:
    """A documented config field with an optional range."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class StageConfig:
    """Base of every stage config: validates fields on construction, then ``check()``."""

    PRESETS: typing.ClassVar[dict] = {}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, _validate(type(self), f, getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Cross-field rules; raise :class:`ConfigError`."""


@lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field_type(cls, f: dataclasses.Field) -> Any:
    tp = _hints(cls)[f.name]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else str
    return tp


def choices_of(cls, f: dataclasses.Field) -> tuple | None:
    tp = _field_type(cls, f)
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else None


def nested_configs(cls) -> dict[str, type]:
    """Fields of ``cls`` that are themselves stage configs (e.g. RewardConfig.uml), by name."""
    out = {}
    for f in dataclasses.fields(cls):
        tp = _field_type(cls, f)
        if isinstance(tp, type) and issubclass(tp, StageConfig):
            out[f.name] = tp
    return out


def _owner(cls, name: str) -> str | None:
    """The nested config that holds option ``name`` (flat flags and YAML keys reach into it)."""
    return next((n for n, sub in nested_configs(cls).items() if name in {f.name for f in dataclasses.fields(sub)}), None)


def option_names(cls) -> set[str]:
    """Every option name of ``cls``, nested configs' included."""
    names = {f.name for f in dataclasses.fields(cls)}
    for sub in nested_configs(cls).values():
        names |= {f.name for f in dataclasses.fields(sub)}
    return names


def _validate(cls, f: dataclasses.Field, value: Any) -> Any:
    """Type-check (coercing exact ints to float), then choices and range."""
    tp, name, choices = _field_type(cls, f), f.name, choices_of(cls, f)
    if isinstance(tp, type) and issubclass(tp, StageConfig):
        if isinstance(value, dict):
            return tp(**value)
        if not isinstance(value, tp):
            raise ConfigError(f"option {name}: expects {tp.__name__}, got {value!r}")
        return value
    where = f"option {name} ({flag(name)})"
    if choices is not None:
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    ok = {bool: lambda v: isinstance(v, bool), int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), str: lambda v: isinstance(v, str)}
    if tp in ok and not ok[tp](value):
        raise ConfigError(f"{where}: expects {tp.__name__}, got {value!r}")
    if tp is float:
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    meta = f.metadata or {}
    if meta.get("ge") is not None and value < meta["ge"]:
        raise ConfigError(f"{where}: must be >= {meta['ge']}, got {value!r}")
    if meta.get("gt") is not None and value <= meta["gt"]:
        raise ConfigError(f"{where}: must be > {meta['gt']}, got {value!r}")
    if meta.get("le") is not None and value > meta["le"]:
        raise ConfigError(f"{where}: must be <= {meta['le']}, got {value!r}")
    return value


def coerce(cls, name: str, value: Any, source: str) -> Any:
    """Turn a YAML or command-line value into the field's type (strings are parsed)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        owner = _owner(cls, name)
        if owner is not None:
            return coerce(nested_configs(cls)[owner], name, value, source)
        raise ConfigError(f"{source}: unknown option '{name}' for {cls.__name__}{_did_you_mean(name, option_names(cls))}")
    if value is None:
        return None
    tp = _field_type(cls, fields[name])
    if isinstance(tp, type) and issubclass(tp, StageConfig):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: option '{name}' expects a mapping of {tp.__name__} options, got {value!r}")
        return {str(k): coerce(tp, str(k), v, source) for k, v in value.items()}
    if typing.get_origin(tp) is Literal:
        return str(value) if isinstance(value, (int, float)) and str(value) in map(str, typing.get_args(tp)) else value
    try:
        if tp is bool:
            if isinstance(value, str):
                low = value.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: option '{name}' ({flag(name)}) expects {getattr(tp, '__name__', tp)}, got {value!r}") from None
    return value


RENAMED = {"sandbox_sft": "sft_examples"}  # options renamed since 0.1.0: old name -> new name


def _did_you_mean(name: str, known) -> str:
    if name in RENAMED:
        return f" (renamed to {RENAMED[name]})"
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def section_class(section: str):
    module, _, cls = SECTIONS[section].partition(":")
    return getattr(importlib.import_module(module), cls)


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{path}: is a directory, not a YAML config file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options at top level, got {type(data).__name__}")
    return data


def yaml_values(cls, path: str | Path, section: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(top-level values for ``cls``, values of its section), after checking the whole file."""
    data = read_yaml(path)
    own = option_names(cls)
    all_fields: set[str] = set()
    top: dict[str, Any] = {}
    sec: dict[str, Any] = {}
    for k, v in data.items():
        k = str(k)
        if k in SECTIONS:
            if not isinstance(v, dict):
                raise ConfigError(f"{path}: section '{k}:' must be a mapping of options, got {type(v).__name__} {v!r}")
            scls = cls if k == section else section_class(k)
            for key in v:
                coerce(scls, str(key), v[key], f"{path}: section '{k}:'")
            if k == section:
                sec = {str(key): val for key, val in v.items()}
        elif k in own:
            top[k] = v
        else:
            if not all_fields:
                all_fields = set().union(*(option_names(section_class(s)) for s in SECTIONS))
            if k not in all_fields:
                raise ConfigError(f"{path}: unknown key '{k}'{_did_you_mean(k, set(SECTIONS) | all_fields)}; "
                                  f"sections: {', '.join(SECTIONS)}")
    return top, sec


def build_config(
    cls: type[T],
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    section: str | None = None,
    recipe: dict[str, Any] | None = None,
    pinned: set[str] | frozenset[str] = frozenset(),
) -> T:
    """A validated ``cls``: defaults < ``preset`` < ``recipe`` < the YAML file's top level < its
    ``section`` < ``overrides``. ``recipe``: values a caller derives for this stage (``rlop run``'s
    options); ``pinned``: recipe keys that the YAML top level does not reach (they are the caller's
    own options there, already folded into ``recipe``)."""
    values: dict[str, Any] = {}
    presets = getattr(cls, "PRESETS", {})
    if preset:
        if preset not in presets and PRESET_BASE.get(preset) in presets:
            preset = PRESET_BASE[preset]
        if preset not in presets:
            raise ConfigError(f"unknown preset '{preset}' for {cls.__name__}; choose from {', '.join(presets)}")
        values.update(presets[preset])
    for k, v in (recipe or {}).items():
        values[k] = coerce(cls, k, v, "rlop run")
    if config_file:
        top, sec = yaml_values(cls, config_file, section)
        for part in ({k: v for k, v in top.items() if k not in pinned}, sec):
            for k, v in part.items():
                values[k] = coerce(cls, k, v, str(config_file))
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = coerce(cls, k, v, "command line")
    try:
        return cls(**_nest(cls, values))
    except TypeError as e:  # a field the class lacks, from a caller's overrides
        raise ConfigError(f"{cls.__name__}: {e}") from None


def _nest(cls, values: dict[str, Any]) -> dict[str, Any]:
    """Flat option values -> constructor arguments, with nested configs built from their options."""
    nested = nested_configs(cls)
    kw: dict[str, Any] = {}
    groups: dict[str, dict[str, Any]] = {n: {} for n in nested}
    for k, v in values.items():
        if k in nested:
            groups[k].update(v if isinstance(v, dict) else dataclasses.asdict(v))
        elif k not in kw and (owner := _owner(cls, k)) is not None and k not in {f.name for f in dataclasses.fields(cls)}:
            groups[owner][k] = v
        else:
            kw[k] = v
    for n, g in groups.items():
        if g:
            kw[n] = nested[n](**g)
    return kw


def add_config_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One ``--option-name`` per dataclass field (default: not given, so presets and YAML apply)."""
    group = parser.add_argument_group(f"{cls.__name__} options")
    nested = nested_configs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.name in nested:  # its options get flat flags of their own
            add_config_args(parser, nested[f.name], skip)
            continue
        doc = (f.metadata or {}).get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        text = f"{doc} ({'; '.join(_help_facts(cls, f, default))})".replace("%", "%%")
        kw: dict[str, Any] = {"dest": f"cfg__{f.name}", "default": None, "help": text}
        choices = choices_of(cls, f)
        if _field_type(cls, f) is bool:
            kw.update(nargs="?", const="true", metavar="{true,false}")
        elif choices is not None:
            kw.update(choices=[str(c) for c in choices])
        else:
            kw.update(metavar=f.name.upper())
        group.add_argument(flag(f.name), **kw)


def _help_facts(cls, f: dataclasses.Field, default: Any) -> list[str]:
    """What ``--help`` says after a field's text: its default, each preset's value where it differs, its range."""
    facts = [f"default: {default!r}"]
    presets = [f"{name} {values[f.name]!r}" for name, values in sorted(getattr(cls, "PRESETS", {}).items())
               if f.name in values and values[f.name] != default]
    if presets:
        facts.append("presets: " + ", ".join(presets))
    meta = f.metadata or {}
    bounds = [f"{op} {meta[k]:g}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<=")) if meta.get(k) is not None]
    if bounds:
        facts.append("range: " + ", ".join(bounds))
    return facts


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k[5:]: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def stage_record(stage: str, cfg: Any, **extra: Any) -> dict[str, Any]:
    """What a stage writes to ``rlop_config.json``: its name, its config and the compute precision it ran in."""
    from rlop.models.precision import resolve

    return {"stage": stage, **to_dict(cfg), "precision": resolve(getattr(cfg, "precision", "auto")), **extra}


def require(cfg: Any, name: str, why: str) -> None:
    """A field a command cannot run without (checked before any model loads)."""
    if not getattr(cfg, name):
        raise ConfigError(f"{flag(name)} is required: {why}")
