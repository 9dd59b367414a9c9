"""The ``rlop`` command line: thin wrappers over the library API.

Every stage command takes ``--preset tiny|cpu``, ``--config FILE`` (YAML) and ``--out DIR``,
plus one flag per config field (``--learning-rate 1e-5``). Bad input data exits with code 2
and a message naming file, line and field, before any training starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Callable

from rlop.config import ConfigError, add_config_args, build_config, overrides_from_args
from rlop.data.io import DataError

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, setup: Callable[[argparse.ArgumentParser], None]):
    """Register ``fn`` as ``rlop NAME``; ``setup`` adds its arguments to the subparser."""

    def deco(fn):
        COMMANDS[name] = (help, setup, fn)
        return fn

    return deco


def stage_setup(target: str) -> Callable[[argparse.ArgumentParser], None]:
    """Arguments of a stage whose options are exactly its config dataclass (``module:Class``)."""

    def setup(p: argparse.ArgumentParser) -> None:
        import importlib

        module, _, cls = target.partition(":")
        _stage_args(p, getattr(importlib.import_module(module), cls))

    return setup


def _stage_args(p: argparse.ArgumentParser, cfg_cls, out_required: bool = True) -> None:
    p.add_argument("--preset", choices=sorted(getattr(cfg_cls, "PRESETS", {})), help="named settings (tiny: seconds, for tests; cpu: SmolLM2-135M on 2 cores)")
    p.add_argument("--config", help="YAML file with options (top level or under the stage's section)")
    p.add_argument("--out", required=out_required, help="output directory (written atomically)")
    add_config_args(p, cfg_cls)


def _cfg(args, cls, section: str):
    return build_config(cls, args.preset, args.config, overrides_from_args(args), section=section)


# ------------------------------------------------------------------ sft


def _sft(args) -> int:
    from rlop.training.sft import SFTConfig, run_sft

    cfg = _cfg(args, SFTConfig, "sft")
    run_sft(cfg, args.out)
    print(f"SFT model saved to {args.out}")
    return 0



command("sft", "step 0: supervised fine-tuning on demonstrations (TRL SFTTrainer)", stage_setup("rlop.training.sft:SFTConfig"))(_sft)


# ------------------------------------------------------------------ reward


def _reward(args) -> int:
    from rlop.training.reward import RewardConfig, run_reward

    overrides = overrides_from_args(args)
    if args.views:
        overrides["views_file"] = args.views
    if args.lambda_ is not None:
        overrides["rep_lambda"] = args.lambda_
    cfg = build_config(RewardConfig, args.preset, args.config, overrides, section="reward")
    result = run_reward(cfg, args.out)
    print(json.dumps(result, indent=2))
    return 0


def _reward_setup(p):
    from rlop.training.reward import RewardConfig

    _stage_args(p, RewardConfig)
    p.add_argument("--views", help="policy samples JSONL for the representation loss (same as --views-file)")
    p.add_argument("--lambda", dest="lambda_", type=float, help="weight of the representation loss (same as --rep-lambda)")


command("reward", "steps 2 and 4: train a reward model (Bradley-Terry; + synthetic pairs; + MIB loss)", _reward_setup)(_reward)


# ------------------------------------------------------------------ sandbox


def _sandbox(args) -> int:
    from rlop.sandbox.world import SandboxConfig, export

    cfg = SandboxConfig(seed=args.seed, **{k: getattr(args, k) for k in ("sft", "preference", "unlabeled", "val", "eval") if getattr(args, k) is not None})
    export(args.out, cfg)
    print(f"sandbox splits written to {args.out}")
    return 0


def _sandbox_setup(p):
    p.add_argument("action", choices=["export"])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    for k in ("sft", "preference", "unlabeled", "val", "eval"):
        p.add_argument(f"--{k}", type=int, help=f"number of {k} tasks")


command("sandbox", "the offline simulation world: export its splits as JSONL", _sandbox_setup)(_sandbox)


# ------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    from rlop import __version__

    parser = argparse.ArgumentParser(prog="rlop", description="RLHF with Reward Learning on Policy (RLP)")
    parser.add_argument("--version", action="version", version=f"rlop {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                        help="compute precision (default: $RLOP_PRECISION or auto = bf16 autocast where the CPU/GPU runs bf16 natively, else fp32)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help, setup, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        setup(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    _load_optional_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if getattr(args, "precision", None):
            from rlop.models.precision import set_precision

            set_precision(args.precision)
        return int(args.func(args) or 0)
    except (DataError, ConfigError) as e:
        print(f"rlop: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"rlop: stopped: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("rlop: interrupted; rerun the same command (with --resume where offered) to continue", file=sys.stderr)
        return 130
    finally:
        _end_distributed()


def _end_distributed() -> None:
    """Tear down a torch.distributed group (``accelerate launch``) before the interpreter exits."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _load_optional_commands() -> None:
    """Commands defined in other modules register themselves on import."""
    import importlib

    for mod in ("rlop.commands",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


if __name__ == "__main__":
    from rlop.cli import main as _main  # the registered commands live in the imported module

    sys.exit(_main())
