"""``rlop run``: Algorithm 1 end to end on the sandbox, with baselines, evaluation and report.

Stages (each a folder of the run directory, written atomically and skipped when its
``stage.json`` records the same key, i.e. the same config and inputs):

    sft -> collect -> rm -> ppo -> samples -> {spg -> rm-spg -> ppo-spg, rm-uml -> ppo-uml}
    sft + rm -> bon;   every policy -> outputs-METHOD -> eval -> report

PPO stages resume from their last checkpoint when a run was interrupted. ``--force STAGE``
redoes a stage and everything after it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from rlop import outputs
from rlop.config import ConfigError, StageConfig, build_config, opt
from rlop.pipeline.progress import SECONDS_PER_UNIT, RunProgress, fmt_seconds
from rlop.utils import atomic_write_text

ALL_METHODS = ("sft", "bon", "ppo", "rlp-uml", "rlp-spg")
DEFAULT_METHODS = ("sft", "bon", "ppo", "rlp-spg")
ORDER = ["sft", "collect", "rm", "ppo", "samples", "spg", "rm-spg", "ppo-spg", "rm-uml", "ppo-uml", "bon", "eval"]


@dataclass
class RunConfig(StageConfig):
    preset: Literal["tiny", "cpu"] = opt("cpu", "stage presets: cpu (SmolLM2-135M on 2 cores) | tiny (seconds, for tests)")
    methods: str = opt(",".join(DEFAULT_METHODS), f"comma-separated methods from {', '.join(ALL_METHODS)}, or all")
    seed: int = opt(0, "seed of collection, policy samples, SPG and evaluation sampling")
    sandbox_sft: int = opt(384, "sandbox demonstrations for SFT", ge=1)
    preference_prompts: int = opt(1000, "preference instructions labelled in step 1", ge=1)
    unlabeled_prompts: int = opt(64, "unlabeled instructions sampled for step 4", ge=1)
    samples_per_prompt: int = opt(10, "policy samples per unlabeled instruction (paper: 10)", ge=2)
    eval_prompts: int = opt(200, "eval instructions", ge=1)
    eval_samples: int = opt(2, "sampled outputs per eval instruction (scored by their mean)", ge=1)
    max_new_tokens: int = opt(48, "new tokens per response in every sampling stage", ge=1)
    judge: Literal["answer", "embedding", "nli"] = opt("embedding", "SPG equivalence judge: answer (sandbox) | embedding | nli")
    gamma: float = opt(0.5, "SPG confidence threshold (paper: 0.5)", ge=0, le=1)
    bon_n: int = opt(4, "samples per best-of-n pick", ge=1)

    def check(self) -> None:
        methods = [m for m in self.methods.split(",") if m]
        unknown = sorted(set(methods) - set(ALL_METHODS) - {"all"})
        if unknown or not methods:
            raise ConfigError(f"--methods: unknown {', '.join(map(repr, unknown)) or 'empty list'}; choose from {', '.join(ALL_METHODS)} or all")

    PRESETS: ClassVar[dict] = {
        "tiny": dict(preset="tiny", sandbox_sft=256, preference_prompts=64, unlabeled_prompts=16, samples_per_prompt=4,
                     eval_prompts=32, max_new_tokens=12, judge="answer", bon_n=4, methods=",".join(ALL_METHODS)),
        "cpu": dict(preset="cpu"),
    }


def _key(*parts: Any) -> str:
    from rlop.models.precision import resolve

    return hashlib.sha256(json.dumps([parts, resolve()], sort_keys=True, default=str).encode()).hexdigest()[:16]


class Pipeline:
    def __init__(self, cfg: RunConfig, out: str | Path, config_file: str | None = None, log: Callable[..., None] = print):
        self.cfg, self.out, self.config_file, self.log = cfg, Path(out), config_file, log
        chosen = cfg.methods.split(",")
        self.methods = [m for m in ALL_METHODS if m in chosen or "all" in chosen]  # canonical order
        self.keys: dict[str, str] = {}
        self.progress = RunProgress({}, log)

    # ------------------------------------------------------------------ stage plumbing
    def stage_dir(self, name: str) -> Path:
        return self.out / name

    def done(self, name: str, key: str) -> bool:
        f = self.stage_dir(name) / "stage.json"
        return f.exists() and json.loads(f.read_text()).get("key") == key

    def run_stage(self, name: str, key: str, fn: Callable[[Path], None], atomic: bool = True) -> Path:
        self.keys[name] = key
        d = self.stage_dir(name)
        if self.done(name, key):
            self.progress.cached(name)
            return d
        t = self.progress.start(name)
        if atomic:
            with outputs.staged(d, name) as tmp:
                fn(tmp)
                (tmp / "stage.json").write_text(json.dumps({"key": key, "seconds": time.time() - t}))
        else:  # PPO: its folder holds checkpoints to resume from
            with outputs.claim(d, "ppo"):
                marker = d / "stage-key"
                if marker.exists() and marker.read_text() != key:
                    outputs.remove_owned(d)
                outputs.own(d, "stage-key", "stage.json")
                marker.write_text(key)
                fn(d)
                atomic_write_text(d / "stage.json", json.dumps({"key": key, "seconds": time.time() - t}))
        self.progress.finish(name, t)
        return d

    def force(self, stage: str) -> None:
        """Forget ``stage`` and every later stage (only what rlop wrote there is removed)."""
        if stage not in ORDER:
            raise ConfigError(f"--force: unknown stage {stage!r}; stages: {', '.join(ORDER)}")
        for name in ORDER[ORDER.index(stage):] + [f"outputs-{m}" for m in ALL_METHODS if m != "bon"]:
            d = self.stage_dir(name)
            if d.is_dir():
                with outputs.lock(d):
                    outputs.remove_owned(d)

    def _stage_cfg(self, cls, section: str, **overrides):
        return build_config(cls, self.cfg.preset, self.config_file, overrides, section=section)

    # ------------------------------------------------------------------ the algorithm
    def run(self) -> dict[str, Any]:
        from rlop.evaluation.winrate import gold_prefer, gold_success_rate, win_rate
        from rlop.models.precision import resolve as resolve_precision
        from rlop.training.ppo import PPOConfig
        from rlop.training.reward import RewardConfig
        from rlop.training.sft import SFTConfig, run_sft

        c = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "run_config.json", json.dumps(dataclasses.asdict(c), indent=2))
        sft_cfg = self._stage_cfg(SFTConfig, "sft", max_examples=c.sandbox_sft)
        self.progress.estimates = self.plan(sft_cfg, self._stage_cfg(RewardConfig, "reward"), self._stage_cfg(PPOConfig, "ppo"))
        sft = self.run_stage("sft", _key("sft", sft_cfg), lambda d: run_sft(sft_cfg, d))

        policies: dict[str, Path] = {"sft": sft}
        rm = None
        if set(self.methods) != {"sft"}:  # every other method needs the step-2 reward model
            rm = self._reward_and_policies(sft, policies)

        from rlop.data.io import load_instructions

        eval_ex = load_instructions("sandbox:eval", limit=c.eval_prompts)
        outputs: dict[str, list[str]] = {}
        for m in self.methods:
            if m == "bon":
                continue
            outputs[m] = self._outputs(m, policies[m], eval_ex)
        if "bon" in self.methods:
            outputs["bon"] = self._bon(sft, rm, eval_ex)

        results = {}
        for m in self.methods:
            r = win_rate(lambda ex, a, b: gold_prefer(ex, a, b), eval_ex, outputs[m], subset_key="kind", seed=c.seed)
            r["gold_success"] = gold_success_rate(eval_ex, outputs[m])
            results[m] = r
        diag = self._diagnostics(rm, policies, eval_ex) if rm is not None else {}
        atomic_write_text(self.out / "results.json", json.dumps({"methods": results, "diagnostics": diag, "precision": resolve_precision(),
                                                                   "eval_samples": c.eval_samples}, indent=2))
        from rlop.evaluation.report import write_report

        write_report(self.out)
        self.log(f"[{fmt_seconds(time.time() - self.progress.t0)}] done: report at {self.out / 'report.md'}", flush=True)
        return results

    def _reward_and_policies(self, sft: Path, policies: dict[str, Path]) -> Path:
        """Steps 1-5 for the methods that need them (collect, RM, PPO, RLP retraining, PPO again); returns the RM."""
        from rlop.rewards import GoldReward
        from rlop.training.ppo import PPOConfig, run_ppo
        from rlop.training.reward import RewardConfig, run_reward

        c = self.cfg
        from rlop.sandbox.collect import collect

        ckey = _key("collect", self.keys["sft"], c.preference_prompts, c.max_new_tokens, c.seed)
        col = self.run_stage("collect", ckey, lambda d: collect(str(sft), "sandbox:preference", d, max_prompts=c.preference_prompts,
                                                                 max_new_tokens=c.max_new_tokens, seed=c.seed))
        prefs = str(col / "preferences.jsonl")
        rm_cfg = self._stage_cfg(RewardConfig, "reward", model=str(sft), train_file=prefs, max_train_pairs=0)
        rm = self.run_stage("rm", _key("rm", rm_cfg, ckey), lambda d: run_reward(rm_cfg, d))

        def ppo_stage(name: str, reward_dir: Path, dep: str) -> Path:
            pcfg = self._stage_cfg(PPOConfig, "ppo", policy=str(sft), reward=str(reward_dir), response_len=c.max_new_tokens)
            def do(d: Path) -> None:
                run_ppo(pcfg, d, resume=True, gold=GoldReward())
                shutil.rmtree(d / "checkpoints", ignore_errors=True)  # only needed to resume; gigabytes each

            return self.run_stage(name, _key(name, pcfg, self.keys[dep]), do, atomic=False)

        if not {"ppo", "rlp-spg", "rlp-uml"} & set(self.methods):
            return rm
        ppo = ppo_stage("ppo", rm, "rm")
        policies["ppo"] = ppo / "policy"

        if "rlp-spg" in self.methods or "rlp-uml" in self.methods:
            from rlop.models.generation import SamplingConfig
            from rlop.data.io import load_instructions
            from rlop.rlp.samples import sample_responses
            from rlop.utils import write_jsonl

            def do_samples(d: Path) -> None:
                ex = load_instructions("sandbox:unlabeled", limit=c.unlabeled_prompts)
                sets = sample_responses(str(policies["ppo"]), ex, c.samples_per_prompt, SamplingConfig(c.max_new_tokens, 1.0, 1.0, 0, True, 32), c.seed)
                write_jsonl(d / "samples.jsonl", [s.to_record() for s in sets])

            samples = self.run_stage("samples", _key("samples", self.keys["ppo"], c.unlabeled_prompts, c.samples_per_prompt, c.max_new_tokens), do_samples)
            samples_file = str(samples / "samples.jsonl")

            if "rlp-spg" in self.methods:
                from rlop.rewards import RewardModelReward
                from rlop.rlp.judges import make_judge
                from rlop.rlp.samples import load_samples
                from rlop.rlp.spg import SPGConfig, generate

                def do_spg(d: Path) -> None:
                    scfg = SPGConfig(samples=samples_file, reward_model=str(rm), judge=c.judge, gamma=c.gamma, seed=c.seed)
                    rows, stats = generate(load_samples(samples_file), scfg, RewardModelReward(rm), make_judge(c.judge))
                    write_jsonl(d / "synthetic.jsonl", rows)
                    (d / "spg_stats.json").write_text(json.dumps(stats))

                spg = self.run_stage("spg", _key("spg", self.keys["samples"], c.judge, c.gamma), do_spg)
                syn = str(spg / "synthetic.jsonl")
                has_pairs = (spg / "synthetic.jsonl").stat().st_size > 0
                rcfg = self._stage_cfg(RewardConfig, "reward", model=str(sft), train_file=prefs, max_train_pairs=0, synthetic_file=syn if has_pairs else "")
                rm_spg = self.run_stage("rm-spg", _key("rm-spg", rcfg, self.keys["spg"], ckey), lambda d: run_reward(rcfg, d))
                policies["rlp-spg"] = ppo_stage("ppo-spg", rm_spg, "rm-spg") / "policy"

            if "rlp-uml" in self.methods:
                ucfg = self._stage_cfg(RewardConfig, "reward", model=str(sft), train_file=prefs, max_train_pairs=0, views_file=samples_file, rep_loss="mib")
                rm_uml = self.run_stage("rm-uml", _key("rm-uml", ucfg, self.keys["samples"], ckey), lambda d: run_reward(ucfg, d))
                policies["rlp-uml"] = ppo_stage("ppo-uml", rm_uml, "rm-uml") / "policy"
        return rm

    # ------------------------------------------------------------------ helpers
    def plan(self, sft_cfg, rm_cfg, ppo_cfg) -> dict[str, float]:
        """Stages this run will go through, in order, with their estimated seconds."""
        c, u = self.cfg, SECONDS_PER_UNIT
        ppo = u["ppo"] * ppo_cfg.steps * ppo_cfg.rollout_batch_size * c.max_new_tokens
        rm = u["rm"] * c.preference_prompts * rm_cfg.epochs
        samples = c.unlabeled_prompts * c.samples_per_prompt
        est = {"sft": u["sft"] * c.sandbox_sft * sft_cfg.epochs}
        if set(self.methods) != {"sft"}:
            est.update({"collect": u["collect"] * c.preference_prompts * 2 * c.max_new_tokens, "rm": rm})
        if {"ppo", "rlp-spg", "rlp-uml"} & set(self.methods):
            est["ppo"] = ppo
        if {"rlp-spg", "rlp-uml"} & set(self.methods):
            est["samples"] = u["samples"] * samples * c.max_new_tokens
        if "rlp-spg" in self.methods:
            est.update({"spg": u["spg"] * samples, "rm-spg": rm * 1.1, "ppo-spg": ppo})
        if "rlp-uml" in self.methods:
            est.update({"rm-uml": rm * 1.8, "ppo-uml": ppo})
        for m in self.methods:
            if m != "bon":
                est[f"outputs-{m}"] = u["outputs"] * c.eval_prompts * c.eval_samples * c.max_new_tokens
        if "bon" in self.methods:
            est["bon"] = u["bon"] * c.eval_prompts * c.bon_n * c.eval_samples * c.max_new_tokens
        return est

    def _outputs(self, method: str, policy: Path, eval_ex) -> list[str]:
        from rlop.models.generation import SamplingConfig
        from rlop.rlp.samples import sample_responses
        from rlop.utils import read_jsonl_plain, write_jsonl

        name = f"outputs-{method}"
        key = _key(name, self.keys.get(method if method == "sft" else {"ppo": "ppo", "rlp-spg": "ppo-spg", "rlp-uml": "ppo-uml"}[method]), len(eval_ex),
                   self.cfg.eval_samples)

        def do(d: Path) -> None:
            sets = sample_responses(str(policy), eval_ex, self.cfg.eval_samples, SamplingConfig(self.cfg.max_new_tokens, 0.7, 0.9, 0, True, 32),
                                    self.cfg.seed + 1, desc=f"eval {method}")
            write_jsonl(d / "outputs.jsonl", [{"instruction": s.example.instruction, "input": s.example.input, "output": s.responses[0],
                                               "outputs": s.responses} for s in sets])

        d = self.run_stage(name, key, do)
        return [r["outputs"] for r in read_jsonl_plain(d / "outputs.jsonl")]

    def _bon(self, sft: Path, rm: Path, eval_ex) -> list[str]:
        from rlop.rewards import RewardModelReward
        from rlop.training.best_of_n import BestOfNConfig, best_of_n
        from rlop.utils import read_jsonl_plain, write_jsonl

        bcfg = BestOfNConfig(policy=str(sft), reward=str(rm), n=self.cfg.bon_n, draws=self.cfg.eval_samples, temperature=0.7,
                             max_new_tokens=self.cfg.max_new_tokens, seed=self.cfg.seed + 1)

        def do(d: Path) -> None:
            write_jsonl(d / "outputs.jsonl", best_of_n(bcfg, RewardModelReward(rm), eval_ex))

        d = self.run_stage("bon", _key("bon", bcfg, self.keys["rm"], len(eval_ex)), do)
        return [r.get("outputs", [r["output"]]) for r in read_jsonl_plain(d / "outputs.jsonl")]

    def _diagnostics(self, rm: Path, policies: dict[str, Path], eval_ex) -> dict[str, Any]:
        """On-distribution RM accuracy: gold-labelled pairs of the PPO policy's samples."""
        from rlop.evaluation.diagnostics import gold_pairs_from_samples, reward_accuracy
        from rlop.rewards import RewardModelReward

        f = self.stage_dir("samples") / "samples.jsonl"
        if not f.exists():
            return {}
        pairs = gold_pairs_from_samples(f)
        out: dict[str, Any] = {"on_policy_pairs": len(pairs)}
        for name in ("rm", "rm-spg", "rm-uml"):
            d = self.stage_dir(name)
            if (d / "config.json").exists() and pairs:
                out[f"{name}_on_policy_accuracy"] = reward_accuracy(RewardModelReward(d), pairs)
        return out


RUN_ENTRIES = ("run_config.json", "results.json", "report.md", "winrate.png", "ppo_curves.png", "spg_confidence.png")


def run_pipeline(preset: str | None, config_file: str | None, out: str | Path, overrides: dict | None = None, force: str | None = None,
                 overwrite: bool = False) -> dict:
    """``rlop run``: claim and lock ``out`` (see :mod:`rlop.outputs`), then run the stages."""
    cfg = build_config(RunConfig, preset or "cpu", config_file, overrides, section="run")
    if force and force not in ORDER:
        raise ConfigError(f"--force: unknown stage {force!r}; stages: {', '.join(ORDER)}")
    with outputs.claim(out, "run", overwrite) as out:
        outputs.own(out, *RUN_ENTRIES, *ORDER, *(f"outputs-{m}" for m in ALL_METHODS))
        p = Pipeline(cfg, out, config_file)
        if force:
            p.force(force)
        return p.run()
