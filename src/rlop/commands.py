"""CLI commands for the policy stages: ppo, bon, sample (registered into rlop.cli)."""

from __future__ import annotations

import json
from pathlib import Path

from rlop.cli import _stage_args, build_config, command, overrides_from_args, stage_setup


def _ppo(args) -> int:
    from rlop.training.ppo import PPOConfig, run_ppo

    cfg = build_config(PPOConfig, args.preset, args.config, overrides_from_args(args), section="ppo")
    if not cfg.reward:
        raise SystemExit("rlop ppo: --reward is required (a reward model directory, 'gold', or python:module:function)")
    last = run_ppo(cfg, args.out, resume=args.resume)
    print(json.dumps(last, indent=2))
    print(f"policy saved to {Path(args.out) / 'policy'}")
    return 0


def _ppo_setup(p):
    from rlop.training.ppo import PPOConfig

    _stage_args(p, PPOConfig)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")


command("ppo", "steps 3 and 5: PPO from the SFT policy against a reward", _ppo_setup)(_ppo)


def _bon(args) -> int:
    from rlop.training.best_of_n import BestOfNConfig, run_best_of_n

    cfg = build_config(BestOfNConfig, args.preset, args.config, overrides_from_args(args), section="bon")
    if not cfg.reward:
        raise SystemExit("rlop bon: --reward is required")
    path = run_best_of_n(cfg, args.out)
    print(f"best-of-{cfg.n} outputs written to {path}")
    return 0



command("bon", "best-of-n baseline: sample n, keep the highest-reward response", stage_setup("rlop.training.best_of_n:BestOfNConfig"))(_bon)


def _sample(args) -> int:
    from rlop.data.io import load_instructions
    from rlop.models.generation import SamplingConfig
    from rlop.rlp.samples import sample_responses
    from rlop.utils import write_jsonl

    examples = load_instructions(args.prompts_file, limit=args.max_prompts or None)
    sampling = SamplingConfig(args.max_new_tokens, args.temperature, args.top_p, args.top_k, True, args.batch_size)
    sets = sample_responses(args.policy, examples, args.n, sampling, args.seed)
    path = Path(args.out) / "samples.jsonl"
    write_jsonl(path, [s.to_record() for s in sets])
    print(f"{len(sets)} x {args.n} samples written to {path}")
    return 0


def _sample_setup(p):
    presets = {"tiny": dict(policy="tiny", n=4, max_new_tokens=12, max_prompts=8), "cpu": dict(n=10, max_new_tokens=96, max_prompts=200)}
    p.add_argument("--preset", choices=sorted(presets))
    p.add_argument("--out", required=True)
    p.add_argument("--policy")
    p.add_argument("--prompts-file", default="sandbox:unlabeled")
    p.add_argument("--max-prompts", type=int)
    p.add_argument("--n", type=int, help="responses per instruction (paper: 10)")
    p.add_argument("--temperature", type=float, default=1.0, help="paper: 1.0 at training time")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(_presets=presets)


def _sample_with_presets(args) -> int:
    from rlop.models.loading import DEFAULT_MODEL

    base = {"policy": DEFAULT_MODEL, "n": 10, "max_new_tokens": 300, "max_prompts": 0}
    base.update(args._presets.get(args.preset or "", {}))
    for k, v in base.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    return _sample(args)


command("sample", "n policy responses per instruction, to JSONL (input of RLP-UML and RLP-SPG)", _sample_setup)(_sample_with_presets)


def _spg(args) -> int:
    from rlop.rewards import load_reward
    from rlop.rlp.judges import make_judge
    from rlop.rlp.samples import load_samples
    from rlop.rlp.spg import PolicyPairwiseJudge, SPGConfig, generate
    from rlop.utils import atomic_write_text, write_jsonl

    cfg = build_config(SPGConfig, args.preset, args.config, overrides_from_args(args), section="spg")
    sets = load_samples(cfg.samples)
    reward = load_reward(cfg.reward_model) if cfg.variant in ("spg", "select-all", "reward") else None
    judge = make_judge(cfg.judge, cfg.judge_model or None, cfg.nli_rule, cfg.threshold) if cfg.variant in ("spg", "select-all") else None
    pj = PolicyPairwiseJudge(cfg.policy) if cfg.variant == "rlaif" else None
    rows, stats = generate(sets, cfg, reward, judge, pj)
    write_jsonl(Path(args.out) / "synthetic.jsonl", rows)
    atomic_write_text(Path(args.out) / "spg_stats.json", json.dumps(stats, indent=2))
    print(f"{stats['pairs']} synthetic pairs from {stats['instructions']} instructions (acceptance {stats['acceptance_rate']:.2f})")
    return 0



command("spg", "step 4 (RLP-SPG): synthetic preferences from clustered policy samples", stage_setup("rlop.rlp.spg:SPGConfig"))(_spg)


def _collect(args) -> int:
    from rlop.sandbox.collect import collect

    path = collect(args.policy, args.prompts_file, args.out, annotator=args.annotator, max_prompts=args.max_prompts,
                   max_new_tokens=args.max_new_tokens, seed=args.seed)
    print(f"preferences written to {path}")
    return 0


def _collect_setup(p):
    from rlop.models.loading import DEFAULT_MODEL

    p.add_argument("--out", required=True)
    p.add_argument("--policy", default=DEFAULT_MODEL)
    p.add_argument("--prompts-file", default="sandbox:preference")
    p.add_argument("--annotator", default="noisy", choices=["noisy", "gold"])
    p.add_argument("--max-prompts", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)


command("collect", "step 1: sample two responses per instruction and label them with an annotator", _collect_setup)(_collect)


def _run(args) -> int:
    from rlop.evaluation.report import table
    from rlop.pipeline.run import run_pipeline

    overrides = overrides_from_args(args)
    results = run_pipeline(args.preset, args.config, args.out, overrides, force=args.force)
    print(table(results))
    return 0


def _run_setup(p):
    from rlop.config import add_config_args
    from rlop.pipeline.run import RunConfig

    p.add_argument("--preset", choices=["tiny", "cpu"], default=None, help="default: cpu (SmolLM2-135M-Instruct on the sandbox)")
    p.add_argument("--config")
    p.add_argument("--out", default="runs/default")
    p.add_argument("--force", help="redo this stage and everything after it")
    add_config_args(p, RunConfig, skip=("preset",))


command("run", "Algorithm 1 end to end: SFT, collect, RM, PPO, RLP retraining, PPO again, best-of-n, eval, report", _run_setup)(_run)


def _report(args) -> int:
    from rlop.evaluation.report import write_report

    print(f"report written to {write_report(args.run_dir)}")
    return 0


command("report", "Markdown report with plots from a run directory", lambda p: p.add_argument("run_dir"))(_report)


def _eval(args) -> int:
    from rlop.data.io import DataError, load_instructions
    from rlop.evaluation.annotators import make_annotator
    from rlop.evaluation.winrate import win_rate
    from rlop.utils import atomic_write_text

    refs = load_instructions(args.eval_file, require_output=True, limit=args.max_prompts or None)
    outs = {(o.instruction, o.input): o.output or "" for o in load_instructions(args.outputs, require_output=True)}
    missing = [r for r in refs if (r.instruction, r.input) not in outs]
    if missing:
        raise DataError(args.outputs, None, "instruction", f"no output for {len(missing)} eval instructions, e.g. {missing[0].instruction[:60]!r}")
    ann = make_annotator(args.annotator, args.reward_model)
    res = win_rate(ann.prefer, refs, [outs[(r.instruction, r.input)] for r in refs], subset_key=args.subset_key)
    if hasattr(ann, "stats"):
        res["annotator_stats"] = ann.stats
    text = json.dumps(res, indent=2)
    if args.out:
        atomic_write_text(Path(args.out) / "winrate.json", text)
    print(text)
    return 0


def _eval_setup(p):
    p.add_argument("--outputs", required=True, help="model outputs JSONL (instruction, input, output)")
    p.add_argument("--eval-file", default="sandbox:eval", help="eval set with reference outputs (AlpacaEval format: instruction, input, output, dataset)")
    p.add_argument("--annotator", default="gold", choices=["gold", "reward", "api"])
    p.add_argument("--reward-model", help="reward model dir for --annotator reward")
    p.add_argument("--subset-key", default="dataset")
    p.add_argument("--max-prompts", type=int, default=0)
    p.add_argument("--out")


command("eval", "win-rate of model outputs against reference outputs, judged by an annotator (bootstrap 95% CI)", _eval_setup)(_eval)
