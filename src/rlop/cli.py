"""The ``rlop`` command line: one table of commands over the library's ``run_x(cfg, out)``.

Every stage command takes ``--preset``, ``--config FILE.yaml``, ``--out DIR`` (refused when it
holds files rlop did not write, unless ``--overwrite``; locked while in use) and one flag per
field of its config dataclass. Values resolve as defaults < preset < YAML < flags, and are
validated before any model loads. Anything a user can get wrong ends with
``rlop: error: ...`` and exit code 2; a traceback means a bug in rlop.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rlop.config import ConfigError, add_config_args, build_config, overrides_from_args, preset_help
from rlop.errors import UserError


@dataclass(frozen=True)
class Command:
    help: str
    config: str = ""  # module:Class of its config dataclass ("" for none)
    section: str = ""  # YAML section and output kind
    out: str = "required"  # required | optional | none


def _cls(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


COMMANDS: dict[str, Command] = {
    "sft": Command("step 0: supervised fine-tuning on demonstrations (TRL SFTTrainer)", "rlop.training.sft:SFTConfig", "sft"),
    "collect": Command("step 1: two policy responses per instruction, labelled by a simulated annotator", "rlop.sandbox.collect:CollectConfig", "collect"),
    "reward": Command("steps 2 and 4: train a reward model (Bradley-Terry; + synthetic pairs; + MIB loss)", "rlop.training.reward_trainer:RewardConfig", "reward"),
    "ppo": Command("steps 3 and 5: PPO from the SFT policy against a reward", "rlop.training.ppo:PPOConfig", "ppo"),
    "sample": Command("n policy responses per instruction, to JSONL (input of RLP-UML and RLP-SPG)", "rlop.models.sampling:SampleConfig", "sample"),
    "spg": Command("step 4 (RLP-SPG): synthetic preferences from clustered policy samples", "rlop.rlp.spg:SPGConfig", "spg"),
    "ocrm": Command("step 4 (OCRM): importance weights of D's pairs from the PPO policy and the SFT policy (then rlop reward --pair-weights-file)",
                    "rlop.rlp.ocrm:OCRMConfig", "ocrm"),
    "bon": Command("best-of-n baseline: sample n, keep the highest-reward response", "rlop.training.best_of_n:BestOfNConfig", "bon"),
    "eval": Command("win-rate of model outputs against reference outputs, judged by an annotator (bootstrap 95% CI)",
                    "rlop.evaluation.winrate:EvalConfig", "eval", out="optional"),
    "overopt": Command("the over-optimisation curve: SFT and every policy PPO kept (--snapshot-steps) scored for gold, proxy and KL on fixed held-out prompts",
                       "rlop.evaluation.overopt:OveroptConfig", "overopt"),
    "agreement": Command("how far an annotator agrees with already labelled pairs, and its position bias (bootstrap 95% CIs)",
                         "rlop.evaluation.agreement:AgreementConfig", "agreement", out="optional"),
    "run": Command("Algorithm 1 end to end: SFT, collect, RM, PPO, RLP retraining, PPO again, best-of-n, eval, report",
                   "rlop.pipeline.run_config:RunConfig", "run", out="optional"),
    "report": Command("Markdown report with plots from a run directory", out="none"),
    "compare": Command("several rlop run folders (e.g. seeds) in one table: win-rates and paired differences, bootstrapped over runs and instructions",
                       section="compare"),
    "sandbox": Command("the offline simulation world: export its splits as JSONL", "rlop.sandbox.world:SandboxConfig", "sandbox"),
}


def _setup(name: str, p: argparse.ArgumentParser) -> None:
    c = COMMANDS[name]
    if name == "sandbox":
        p.add_argument("action", choices=["export"], help="export: write every split as JSONL into --out")
    if name == "report":
        p.add_argument("run_dir", help="a folder written by rlop run")
        return
    if name == "compare":
        p.add_argument("run_dirs", nargs="+", help="folders written by rlop run on the same eval set (one per seed)")
        p.add_argument("--out", required=True, help="output folder for compare.json, compare.md and compare_forest.png")
        p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out that rlop did not write")
        p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
        return
    cls = _cls(c.config)
    skip: tuple[str, ...] = ()
    if name == "run":
        from rlop.pipeline.stages import ORDER

        p.add_argument("--preset", choices=sorted(cls.PRESETS), help=preset_help(cls.PRESETS, "cpu").replace("%", "%%"))
        p.add_argument("--force", choices=ORDER, help="redo this stage and every stage that reads its output (the others stay cached)")
        skip = ("preset",)
    elif cls.PRESETS:
        p.add_argument("--preset", choices=sorted(cls.PRESETS), help=preset_help(cls.PRESETS, None).replace("%", "%%"))
    p.add_argument("--config", help="YAML file with options (top level or under a section named after the command)")
    if c.out != "none":
        default = "runs/default" if name == "run" else None
        p.add_argument("--out", required=c.out == "required", default=default,
                       help="output folder: new, empty, or an earlier rlop output of this command" + (" (default: runs/default)" if default else ""))
        p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out that rlop did not write (rlop still never "
                       "deletes or replaces a file it did not write)")
    if name == "ppo":
        p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    if name == "reward":
        p.add_argument("--views", help="alias of --views-file")
        p.add_argument("--lambda", dest="lambda_", type=float, help="alias of --rep-lambda")
    add_config_args(p, cls, skip=skip)


def _config(name: str, args: argparse.Namespace):
    c = COMMANDS[name]
    overrides = overrides_from_args(args)
    for alias, field in (("views", "views_file"), ("lambda_", "rep_lambda")):
        value = getattr(args, alias, None)
        if value is not None:
            if field in overrides:
                raise ConfigError(f"--{alias.rstrip('_')} and --{field.replace('_', '-')} are the same option; give one")
            overrides[field] = value
    return build_config(_cls(c.config), getattr(args, "preset", None), args.config, overrides, section=c.section)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# ------------------------------------------------------------------ what each command does (cfg is validated)


def _do_sft(cfg, args) -> str:
    from rlop.training.sft import run_sft

    return f"SFT model saved to {run_sft(cfg, args.out)}"


def _do_collect(cfg, args) -> str:
    from rlop.sandbox.collect import run_collect

    return f"preferences written to {run_collect(cfg, args.out)}"


def _do_reward(cfg, args) -> str:
    from rlop.rlp.uml import run_uml_reward
    from rlop.training.reward_trainer import run_reward

    return json.dumps((run_uml_reward if cfg.uml.rep_loss != "none" else run_reward)(cfg, args.out), indent=2)


CPU_WARN_SECONDS = 3600  # a stage command estimated past this on a CPU warns before it loads a model


def _do_ppo(cfg, args) -> str:
    import torch

    from rlop.pipeline.progress import fmt_seconds, ppo_seconds
    from rlop.training.ppo import PPOConfig, run_ppo

    est = ppo_seconds(cfg.steps, cfg.rollout_batch_size, cfg.response_len)
    if est > CPU_WARN_SECONDS and not torch.cuda.is_available() and _is_main():
        c = PPOConfig.PRESETS["cpu"]
        print(f"rlop: warning: no GPU; this PPO run ({cfg.steps} steps x {cfg.rollout_batch_size} rollouts x {cfg.response_len} tokens"
              f"{'' if args.preset else ', the paper-scale defaults: no --preset given'}) is about {fmt_seconds(est)} on 2 CPU cores "
              f"with SmolLM2-135M; --preset cpu is about {fmt_seconds(ppo_seconds(c['steps'], c['rollout_batch_size'], c['response_len']))}",
              file=sys.stderr, flush=True)
    last = run_ppo(cfg, args.out, resume=args.resume)
    return json.dumps(last, indent=2) + f"\npolicy saved to {Path(args.out) / 'policy'}"


def _do_sample(cfg, args) -> str:
    from rlop.models.sampling import run_sample

    return f"{cfg.n} samples per instruction written to {run_sample(cfg, args.out)}"


def _do_spg(cfg, args) -> str:
    from rlop.rlp.spg import run_spg

    stats = run_spg(cfg, args.out)
    return f"{stats['pairs']} synthetic pairs from {stats['instructions']} instructions (acceptance {stats['acceptance_rate']:.2f})"


def _do_ocrm(cfg, args) -> str:
    from rlop.rlp.ocrm import run_ocrm

    st = run_ocrm(cfg, args.out)
    return (f"weights of {st['pairs']} pairs written to {Path(args.out) / 'weights.jsonl'} (effective sample size {st['effective_sample_size']:.1f}); "
            f"train the reward model with rlop reward --pair-weights-file {Path(args.out) / 'weights.jsonl'}")


def _do_bon(cfg, args) -> str:
    from rlop.training.best_of_n import run_best_of_n

    return f"best-of-{cfg.n} outputs written to {run_best_of_n(cfg, args.out)}"


def _do_eval(cfg, args) -> str:
    from rlop.evaluation.winrate import run_eval

    res = run_eval(cfg, args.out)
    return json.dumps({k: v for k, v in res.items() if k != "scores"}, indent=2)  # per-instruction scores: in winrate.json


def _do_overopt(cfg, args) -> str:
    from rlop.evaluation.overopt import run_overopt
    from rlop.evaluation.report import overopt_lines

    curve = run_overopt(cfg, args.out)
    return "\n".join(overopt_lines({Path(cfg.ppo_dir).name: curve})[1:]) + f"\n\ncurve written to {Path(args.out) / 'curve.json'} and overopt.png"


def _do_agreement(cfg, args) -> str:
    from rlop.evaluation.agreement import run_agreement, summary

    return summary(run_agreement(cfg, args.out))


def _do_run(cfg, args) -> str:
    from rlop.evaluation.report import table
    from rlop.pipeline.launch import run_pipeline

    results = run_pipeline(args.preset, args.config, args.out, overrides_from_args(args), force=args.force, overwrite=args.overwrite)
    if "win_rate" in results:  # --seeds: the comparison over the seeds' runs
        from rlop.evaluation.compare import markdown

        return markdown(results)
    return table(results)


def _do_sandbox(cfg, args) -> str:
    from rlop.sandbox.world import export

    return f"sandbox splits written to {export(args.out, cfg)}"


def _do_report(args) -> str:
    from rlop import outputs
    from rlop.evaluation.report import write_report

    run = Path(args.run_dir)
    marker = outputs.read_marker(run) if run.is_dir() else None
    if marker is None or marker.get("kind") != "run" or not (run / "results.json").exists():
        raise outputs.OutputError(f"{run}: not a finished rlop run folder (no results.json written by rlop run)")
    with outputs.lock(run):
        return f"report written to {write_report(run)}"


ACTIONS: dict[str, Callable[..., str]] = {"sft": _do_sft, "collect": _do_collect, "reward": _do_reward, "ppo": _do_ppo, "sample": _do_sample,
                                          "spg": _do_spg, "ocrm": _do_ocrm, "bon": _do_bon, "overopt": _do_overopt, "eval": _do_eval, "agreement": _do_agreement, "run": _do_run, "sandbox": _do_sandbox}


def _execute(args: argparse.Namespace) -> int:
    from rlop import outputs

    name = args.command
    if name == "report":
        print(_do_report(args))
        return 0
    if name == "compare":
        from rlop.evaluation.compare import markdown, run_compare

        with outputs.claim(args.out, "compare", args.overwrite):
            print(markdown(run_compare(args.run_dirs, args.out, args.seed)))
        return 0
    if name == "run":  # run_pipeline builds and validates its config, then claims and locks --out
        print(ACTIONS[name](None, args))
        return 0
    cfg = _config(name, args)
    if getattr(args, "out", None):
        with outputs.claim(args.out, COMMANDS[name].section, args.overwrite, main=_is_main()):
            print(ACTIONS[name](cfg, args))
    else:
        print(ACTIONS[name](cfg, args))
    return 0


def write_error(e: OSError) -> str | None:
    """The message for an ``OSError`` a user can fix (no space, read-only, permission), else None."""
    import errno
    import shutil

    if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
        return None
    where = e.filename or "the output folder"
    text = f"cannot write {where}: {e.strerror or e}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT) and e.filename:
        existing = next((p for p in [Path(e.filename), *Path(e.filename).parents] if p.exists()), None)
        if existing is not None:
            text += f" ({shutil.disk_usage(existing).free / 2**20:.0f} MiB free there); free some space or choose another --out"
    return text + "; nothing half-written was left"


EPILOG = "Terms (D, steps 0-5, GAE, noptepochs, MIB, SPG's gamma, null arm ...) are explained in docs/glossary.md."


def build_parser() -> argparse.ArgumentParser:
    from rlop import __version__

    parser = argparse.ArgumentParser(prog="rlop", description="RLHF with Reward Learning on Policy (RLP)")
    parser.add_argument("--version", action="version", version=f"rlop {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, c in COMMANDS.items():
        text = c.help.replace("%", "%%")
        p = sub.add_parser(name, help=text, description=text, epilog=EPILOG)
        _setup(name, p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return _execute(args)
    except UserError as e:
        print(f"rlop: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        message = write_error(e)
        if message is None:
            raise
        print(f"rlop: error: {message}", file=sys.stderr)
        return 2
    except Exception as e:  # safetensors reports a failed write as its own error, not an OSError
        if type(e).__name__ != "SafetensorError" or "No space left" not in str(e):
            raise
        print(f"rlop: error: {write_error(OSError(28, 'No space left on device', getattr(args, 'out', None)))}", file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main())
