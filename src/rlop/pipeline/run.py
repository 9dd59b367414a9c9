"""``rlop run``: Algorithm 1 end to end on the sandbox, with baselines, evaluation and report.

Stages (each a folder of the run directory, written atomically and skipped when its
``stage.json`` records the same key, i.e. the same config and inputs):

    sft -> collect -> rm -> ppo -> samples -> each RLP variant's step 4 -> its PPO
    sft + rm -> bon;   every policy -> outputs-METHOD -> eval -> report

The RLP variants and their stages come from :data:`rlop.rlp.variants.VARIANTS` (today
rlp-uml: rm-uml -> ppo-uml; rlp-spg: spg -> rm-spg -> ppo-spg). Each stage's YAML section
(``sft:``, ``collect:``, ``reward:``, ``ppo:``, ``sample:``, ``spg:``, ``bon:``) applies as under
its own command, above the values the run's options give the stage; a run option the user set
and a section key that disagree are refused (:mod:`rlop.pipeline.resolve`).

PPO stages resume from their last checkpoint when a run was interrupted. ``--force STAGE``
redoes a stage and every stage that reads its output (:data:`STAGE_INPUTS`), nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from rlop import outputs
from rlop.config import ConfigError
from rlop.data.io import load_instructions
from rlop.distributed import barrier, is_main_process
from rlop.evaluation.paired import paired_table
from rlop.evaluation.report import write_report
from rlop.evaluation.winrate import EvalConfig, gold_success_rate, win_rate
from rlop.models.generation import SamplingConfig
from rlop.models.precision import resolve as resolve_precision
from rlop.models.sampling import SampleConfig, run_sample, sample_responses
from rlop.pipeline.progress import SECONDS_PER_UNIT, RunProgress, fmt_seconds, ppo_seconds
from rlop.pipeline.recipe import cut_lines, eval_annotator, has_tasks, require_tasks, source_digest
from rlop.pipeline.checks import Checks
from rlop.pipeline.manifest import manifest, mismatches, stage_key as _key
from rlop.pipeline.resolve import StageResolver
from rlop.pipeline.run_config import ALL_METHODS, RunConfig
from rlop.pipeline.iterate import iteration, iteration_estimates
from rlop.pipeline.stages import HELDOUT, ORDER, POLICY_STAGE, downstream, policy_stages
from rlop.reward_functions import RewardModelReward
from rlop.rlp.variants import VARIANTS, Step4Context
from rlop.sandbox.collect import CollectConfig, run_collect
from rlop.sandbox.gold import GoldAnnotator
from rlop.training.best_of_n import BestOfNConfig, best_of_n
from rlop.training.ppo import PPOConfig, run_ppo
from rlop.training.reward_trainer import RewardConfig, run_reward
from rlop.training.sft import SFTConfig, run_sft
from rlop.utils import atomic_write_text, peak_cuda_mb, peak_rss_mb, read_jsonl_plain, reset_peak_cuda, reset_peak_rss, write_jsonl

def _stage_record(key: str, started: float, config: Any, precision: str, folder: Path, peak_window: str) -> str:
    """``stage.json``: the cache key, the wall time, the process's peak resident memory during the
    stage (MB; models an earlier stage still holds count too), the precision it computed in (its
    config's, else the run's), the stage's config and its files' sizes and digests (:mod:`rlop.pipeline.manifest`).
    ``peak_rss_window``: "stage" where the peak was reset when the stage began, "process" where the
    system kept it (the peak since the process started, an upper bound). ``peak_cuda_mb``: the peak
    CUDA memory its tensors took (``torch.cuda.max_memory_allocated``, reset per stage; None without CUDA)."""
    rec = {"key": key, "seconds": time.time() - started, "peak_rss_mb": peak_rss_mb(), "peak_rss_window": peak_window,
           "peak_cuda_mb": peak_cuda_mb(),
           "precision": resolve_precision(getattr(config, "precision", precision)), "files": manifest(folder)}
    if config is not None:
        rec["config"] = dataclasses.asdict(config)
    return json.dumps(rec)


class Pipeline(Checks):
    def __init__(self, cfg: RunConfig, out: str | Path, config_file: str | None = None, log: Callable[..., None] = print,
                 shared: tuple[str, ...] = (), shared_dir: Path | None = None, shared_seed: int = 0, later_seeds: int = 0,
                 timings: dict | None = None, explicit: set[str] | None = None):
        """``shared``: with ``--seeds``, stages computed once (with ``shared_seed``, the first seed) in
        ``shared_dir`` and read by every seed; every other stage is this seed's own, in ``out``.
        ``later_seeds`` (seeds still to run after this one) and ``timings`` (stage timings of the
        seeds before) make the printed ETA that of the whole command. ``explicit``: the run options the
        user set (:func:`rlop.pipeline.resolve.explicit_run_options`); a YAML key that contradicts one is refused."""
        self.cfg, self.out, self.config_file, self.log = cfg, Path(out), config_file, log
        self.shared = set(shared)
        self.shared_dir, self.shared_seed = shared_dir, shared_seed
        chosen = cfg.methods.split(",")
        self.methods = [m for m in ALL_METHODS if m in chosen or "all" in chosen]  # canonical order
        self.keys: dict[str, str] = {}
        self.main = is_main_process()  # under accelerate launch, the process that writes
        self.gold = None  # the sandbox's gold scorer, when the unlabeled prompts are sandbox tasks
        self.progress = RunProgress({}, log if self.main else (lambda *a, **k: None), timings={} if timings is None else timings)
        self.later_seeds = later_seeds
        self.stage_cfg = StageResolver(cfg, config_file, explicit or set(), self._seed)
        self.nulls: dict[str, Path] = {}  # retrained RM stage -> its null arm's RM folder (--null-arm)

    # ------------------------------------------------------------------ stage plumbing
    def stage_dir(self, name: str) -> Path:
        return self.shared_dir / name if name in self.shared else self.out / name

    def _seed(self, stage: str | None) -> int:
        """The run seed a stage uses: the first seed for a stage shared by several seeds."""
        return self.shared_seed if stage in self.shared else self.cfg.seed

    def done(self, name: str, key: str) -> bool:
        """Whether the stage folder holds this key's finished output, its files as they were written
        (a damaged, truncated or edited file makes the stage be redone, with a line saying why)."""
        f = self.stage_dir(name) / "stage.json"
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(rec, dict) or rec.get("key") != key:
            return False
        problems = mismatches(self.stage_dir(name), rec.get("files", {}))
        if problems and self.main:
            self.log(f"{name}: its files changed since it was written ({'; '.join(problems[:3])}); redoing it", flush=True)
        return not problems

    def run_stage(self, name: str, key: str, fn: Callable[[Path], None], atomic: bool = True, config: Any = None) -> Path:
        """Run ``fn(folder)`` unless the stage folder records ``key``; ``stage.json`` records key, time and ``config``."""
        self.keys[name] = key
        d = self.stage_dir(name)
        if self.done(name, key):
            self.progress.cached(name)
            return d
        t = self.progress.start(name)
        peak_window = "stage" if reset_peak_rss() else "process"
        reset_peak_cuda()
        main = self.main
        if atomic:  # every process runs the stage; only the main one's folder is published (see outputs.staged)
            with outputs.staged(d, name, main=main) as tmp:
                fn(tmp)
                (tmp / "stage.json").write_text(_stage_record(key, t, config, self.cfg.precision, tmp, peak_window))
        else:  # PPO: its folder holds checkpoints to resume from, written by every process
            with outputs.claim(d, "ppo", main=main):
                if main:
                    marker = d / "stage-key"
                    if marker.exists() and marker.read_text() != key:
                        outputs.remove_owned(d)
                    outputs.own(d, "stage-key", "stage.json")
                    marker.write_text(key)
                barrier()
                fn(d)
                if main:
                    atomic_write_text(d / "stage.json", _stage_record(key, t, config, self.cfg.precision, d, peak_window))
        barrier()  # the other processes read the published stage next
        self.progress.finish(name, t)
        return d

    def stage_records(self) -> dict[str, dict[str, Any]]:
        """Seconds and peak memory of every stage this run used, as recorded when it was computed."""
        recs = {}
        for name in self.keys:
            f = self.stage_dir(name) / "stage.json"
            if f.exists():
                r = json.loads(f.read_text())
                recs[name] = {"seconds": r.get("seconds"), "peak_rss_mb": r.get("peak_rss_mb"), "shared": name in self.shared,
                              "peak_rss_window": r.get("peak_rss_window", "stage"), "peak_cuda_mb": r.get("peak_cuda_mb")}
        return recs

    def force(self, stage: str, shared: bool = True) -> None:
        """Forget ``stage`` and every stage that reads its output (:func:`downstream`); stages that do not
        read it stay cached. Only what rlop wrote there is removed; shared stages only with ``shared``."""
        if stage not in ORDER:
            raise ConfigError(f"--force: unknown stage {stage!r}; stages: {', '.join(ORDER)}")
        (self.out / "diagnostics.json").unlink(missing_ok=True)  # scored from the stages about to be redone
        for name in downstream(stage, self.cfg.rlp_iterations):
            if name in self.shared and not shared:
                continue
            d = self.stage_dir(name)
            if d.is_dir():
                with outputs.lock(d):
                    outputs.remove_owned(d)

    # ------------------------------------------------------------------ the algorithm
    def run(self) -> dict[str, Any]:
        c = self.cfg
        if self.main:
            atomic_write_text(self.out / "run_config.json", json.dumps(dataclasses.asdict(c), indent=2))
        sft_cfg = self.stage_cfg(SFTConfig, "sft", "sft", recipe={"train_file": ("sft_file", c.sft_file), "max_examples": ("sft_examples", c.sft_examples)})
        ppo_cfg = self._ppo_cfg("ppo", Path(), Path())
        self.progress.estimates = self.plan(sft_cfg, self.stage_cfg(RewardConfig, "reward", "rm"), ppo_cfg)
        self.progress.later = self.later_seeds * sum(e for s, e in self.progress.estimates.items() if s not in self.shared)
        if self.main:
            for line in cut_lines(c, self.methods, ppo_cfg.max_prompts):
                self.log(f"rlop run: {line}", flush=True)
        eval_ex = load_instructions(c.eval_file, require_output=True, limit=c.eval_prompts)
        if c.eval_annotator == "gold":
            require_tasks(eval_ex, c.eval_file, "the gold eval annotator")
        # before any training: a wrong endpoint or model stops here
        judge = eval_annotator(c, self.stage_cfg(EvalConfig, "eval", "eval", recipe={"seed": ("seed", c.seed)}))
        self.gold = GoldAnnotator() if has_tasks(load_instructions(c.unlabeled_file, limit=c.unlabeled_prompts)) else None
        sft = self.run_stage("sft", _key("sft", sft_cfg, source_digest(c.sft_file)), lambda d: run_sft(sft_cfg, d), config=sft_cfg)

        policies: dict[str, Path] = {"sft": sft}
        rm = None
        if set(self.methods) != {"sft"}:  # every other method needs the step-2 reward model
            rm = self._reward_and_policies(sft, policies)


        if not c.step5:  # RLP's methods have no policy: their reward models are compared in the diagnostics only
            self.methods = [m for m in self.methods if m not in VARIANTS]
        texts: dict[str, list[str]] = {}  # method -> sampled outputs per eval instruction
        for m in self.methods:
            if m == "bon":
                continue
            texts[m] = self._outputs(m, policies[m], eval_ex)
        if "bon" in self.methods:
            texts["bon"] = self._bon(sft, rm, eval_ex)

        results = {}
        if hasattr(judge, "prefetch"):  # api: concurrent requests up front; reward: batched scores
            judge.prefetch([(ex, ex.output or "", o) for m in self.methods for ex, outs in zip(eval_ex, texts[m]) for o in outs])
        for m in self.methods:
            r = win_rate(judge.prefer, eval_ex, texts[m], subset_key="kind" if has_tasks(eval_ex) else "dataset", seed=c.seed)
            r["gold_success"] = gold_success_rate(eval_ex, texts[m]) if has_tasks(eval_ex) else None
            if hasattr(judge, "stats"):
                r["annotator_stats"] = dict(judge.stats)
            results[m] = r
        diag = self._diagnostics(rm, policies, eval_ex) if rm is not None else {}
        paired = paired_table({m: [r["scores"]] for m, r in results.items()}, seed=c.seed)
        if not self.main:
            return results
        atomic_write_text(self.out / "results.json", json.dumps({"methods": results, "paired": paired, "diagnostics": diag, "overopt": self.overopt_curves(),
                                                                   "eval_annotator": c.eval_annotator, "rlp_iterations": c.rlp_iterations,
                                                                   "rlp_iterate_from": c.rlp_iterate_from,
                                                                   "precision": resolve_precision(c.precision), "eval_samples": c.eval_samples}, indent=2))
        atomic_write_text(self.out / "stages.json", json.dumps(self.stage_records(), indent=2))  # timings: apart, so results.json reproduces

        write_report(self.out)
        self.log(f"[{fmt_seconds(time.time() - self.progress.t0)}] done: report at {self.out / 'report.md'}", flush=True)
        return results

    def _reward_and_policies(self, sft: Path, policies: dict[str, Path]) -> Path:
        """Steps 1-5 for the methods that need them (collect, RM, PPO, RLP retraining, PPO again); returns the RM."""
        c = self.cfg
        if c.preferences_file:  # step 1 done already: the user's labelled pairs
            prefs, dep = c.preferences_file, source_digest(c.preferences_file)
        else:
            ccfg = self.stage_cfg(CollectConfig, "collect", "collect", wired={"policy": str(sft)},
                                  recipe={"prompts_file": ("preference_prompts_file", c.preference_prompts_file),
                                          "max_prompts": ("preference_prompts", c.preference_prompts),
                                          "max_new_tokens": ("max_new_tokens", c.max_new_tokens), "seed": ("seed", self._seed("collect"))})
            col = self.run_stage("collect", _key("collect", ccfg, self.keys["sft"], source_digest(c.preference_prompts_file)),
                                 lambda d: run_collect(ccfg, d), config=ccfg)
            prefs, dep = str(col / "preferences.jsonl"), self.keys["collect"]
        rm_cfg = self.stage_cfg(RewardConfig, "reward", "rm", recipe={"max_train_pairs": (None, 0)}, wired={"model": str(sft), "train_file": prefs})
        if c.matched_retraining:  # the protocol every retrained RM follows (with no synthetic pairs it is the shuffled order)
            rm_cfg = dataclasses.replace(rm_cfg, pair_order="matched")
        rm = self.run_stage("rm", _key("rm", rm_cfg, self.keys["sft"], dep), lambda d: run_reward(rm_cfg, d), config=rm_cfg)

        def ppo_stage(name: str, reward_dir: Path, dep: str, start: Path = sft, after: tuple[str, ...] = ()) -> Path:
            """PPO from ``start`` (SFT, or with --rlp-iterate-from policy the last iteration's policy) on ``reward_dir``."""
            pcfg = self._ppo_cfg(name, start, reward_dir)

            def do(d: Path) -> None:
                run_ppo(pcfg, d, resume=True, gold=self.gold)
                shutil.rmtree(d / "checkpoints", ignore_errors=True)  # only needed to resume; gigabytes each

            d = self.run_stage(name, _key(name, pcfg, self.keys[dep], *(self.keys[a] for a in after), source_digest(c.unlabeled_file)),
                               do, atomic=False, config=pcfg)
            if pcfg.snapshot_steps:
                self._overopt(name, sft, reward_dir, d, pcfg)
            return d

        if not {"ppo", *VARIANTS} & set(self.methods):
            return rm
        policies["ppo"] = ppo_stage("ppo", rm, "rm") / "policy"
        variants = [v for v in VARIANTS.values() if v.method in self.methods]
        if variants:
            scfg = self.stage_cfg(SampleConfig, "sample", "samples", wired={"policy": str(policies["ppo"])},
                                  recipe={"prompts_file": ("unlabeled_file", c.unlabeled_file), "max_prompts": ("unlabeled_prompts", c.unlabeled_prompts),
                                          "n": ("samples_per_prompt", c.samples_per_prompt), "max_new_tokens": ("max_new_tokens", c.max_new_tokens),
                                          "seed": ("seed", self._seed("samples"))})
            samples = self.run_stage("samples", _key("samples", scfg, self.keys["ppo"]), lambda d: run_sample(scfg, d), config=scfg)
            own_seed = self.stage_cfg(RewardConfig, "reward", None).seed  # this seed's RM seed, also when rm is shared
            ctx = Step4Context(run=c, sft=sft, sft_key=self.keys["sft"], preferences=prefs, preferences_key=dep, reward_model=rm,
                               reward_model_key=self.keys["rm"], reward_model_seed=own_seed, reward_model_matches=own_seed == rm_cfg.seed,
                               policy=policies["ppo"], policy_key=self.keys["ppo"], samples=str(samples / "samples.jsonl"),
                               samples_key=self.keys["samples"], stage_cfg=self.stage_cfg,
                               run_stage=lambda name, parts, fn, config=None: self.run_stage(name, _key(*parts), fn, config=config),
                               stage_dir=self.stage_dir)
            for v in variants:
                retrained = v.run_step4(ctx)
                if c.null_arm:
                    self.nulls[v.reward_stage] = v.run_null(ctx)
                if c.step5:
                    policies[v.method] = ppo_stage(v.ppo_stage, retrained, v.reward_stage) / "policy"
                    for k in range(2, c.rlp_iterations + 1):  # steps 4-5 again on the last iteration's policy
                        policies[v.method] = iteration(self, v, k, ctx, scfg, ppo_stage) / "policy"
        return rm

    # ------------------------------------------------------------------ helpers
    def _ppo_cfg(self, name: str, start: Path, reward_dir: Path) -> PPOConfig:
        """Steps 3 and 5: PPO from ``start`` (SFT, the KL reference too) on ``reward_dir``."""
        c = self.cfg
        return self.stage_cfg(PPOConfig, "ppo", name, wired={"policy": str(start), "reward": str(reward_dir)},
                              recipe={"response_len": ("max_new_tokens", c.max_new_tokens), "prompts_file": ("unlabeled_file", c.unlabeled_file)})

    def plan(self, sft_cfg, rm_cfg, ppo_cfg) -> dict[str, float]:
        """Stages this run will go through, in order, with their estimated seconds."""
        c, u = self.cfg, SECONDS_PER_UNIT
        ppo = ppo_seconds(ppo_cfg.steps, ppo_cfg.rollout_batch_size, c.max_new_tokens)
        rm = u["rm"] * c.preference_prompts * rm_cfg.epochs
        samples = c.unlabeled_prompts * c.samples_per_prompt
        est = {"sft": u["sft"] * c.sft_examples * sft_cfg.epochs}
        if set(self.methods) != {"sft"}:
            est.update({"collect": u["collect"] * c.preference_prompts * 2 * c.max_new_tokens, "rm": rm})
        if {"ppo", *VARIANTS} & set(self.methods):
            est["ppo"] = ppo
        variants = [v for v in VARIANTS.values() if v.method in self.methods]
        if variants:
            est["samples"] = u["samples"] * samples * c.max_new_tokens
        for v in variants:
            est.update(v.cost(rm, u["spg"] * samples))
            if c.null_arm and v.null_stages and not (c.matched_retraining and len(v.null_stages) == 1):  # UML's matched null is rm
                est.update({v.null_stages[0]: 1.0, v.null_reward_stage: rm * 1.1} if len(v.null_stages) > 1 else {v.null_reward_stage: est[v.reward_stage]})
            if c.step5:
                est[v.ppo_stage] = ppo
                est.update(iteration_estimates(v, c.rlp_iterations, est, ppo))
        for m in self.methods:
            if m != "bon" and (c.step5 or m not in VARIANTS):
                est[f"outputs-{m}"] = u["outputs"] * c.eval_prompts * c.eval_samples * c.max_new_tokens
        if "bon" in self.methods:
            est["bon"] = u["bon"] * c.eval_prompts * c.bon_n * c.eval_samples * c.max_new_tokens
        if c.heldout_prompts and "ppo" in est:
            est.update({h: u["samples"] * c.heldout_prompts * c.heldout_samples * c.max_new_tokens for h in HELDOUT})
        if ppo_cfg.snapshot_steps:  # each kept policy and SFT sampled, and scored by two models (about 2x the sampling)
            ocfg = self._overopt_cfg("ppo", Path(), Path(), Path(), ppo_cfg)
            points = 1 + ppo_cfg.steps // ppo_cfg.snapshot_steps
            cost = 2 * u["samples"] * points * ocfg.max_prompts * ocfg.samples * ocfg.max_new_tokens
            est = {k: v for s, e in est.items() for k, v in ((s, e), *(((f"overopt-{s}", cost),) if s in POLICY_STAGE.values() or s.startswith("ppo-") else ()))}
        return est

    def _eval_sampling(self) -> SamplingConfig:
        """How every policy's eval outputs are sampled (AlpacaFarm's decoding: temperature 0.7, top-p 0.9)."""
        return SamplingConfig(max_new_tokens=self.cfg.max_new_tokens, temperature=0.7, top_p=0.9, top_k=0, do_sample=True, batch_size=32)

    def _outputs(self, method: str, policy: Path, eval_ex) -> list[str]:
        name = f"outputs-{method}"
        key = _key(name, self.keys.get(policy_stages(self.cfg.rlp_iterations).get(method, method)), len(eval_ex), self.cfg.eval_samples, source_digest(self.cfg.eval_file),
                   self._eval_sampling(), resolve_precision(self.cfg.precision))

        def do(d: Path) -> None:
            sets = sample_responses(str(policy), eval_ex, self.cfg.eval_samples, self._eval_sampling(),
                                    self._seed(name) + 1, desc=f"eval {method}", precision=self.cfg.precision)
            write_jsonl(d / "outputs.jsonl", [{"instruction": s.example.instruction, "input": s.example.input, "output": s.responses[0],
                                               "outputs": s.responses} for s in sets])

        d = self.run_stage(name, key, do)
        return [r["outputs"] for r in read_jsonl_plain(d / "outputs.jsonl")]

    def _bon(self, sft: Path, rm: Path, eval_ex) -> list[str]:
        c = self.cfg
        bcfg = self.stage_cfg(BestOfNConfig, "bon", "bon", wired={"policy": str(sft), "reward": str(rm)},
                              recipe={"n": ("bon_n", c.bon_n), "draws": ("eval_samples", c.eval_samples), "temperature": ("bon_temperature", c.bon_temperature),
                                      "max_new_tokens": ("max_new_tokens", c.max_new_tokens), "seed": ("seed", self._seed("bon") + 1)})

        def do(d: Path) -> None:
            write_jsonl(d / "outputs.jsonl", best_of_n(bcfg, RewardModelReward(rm, precision=bcfg.precision), eval_ex))

        d = self.run_stage("bon", _key("bon", bcfg, self.keys["rm"], len(eval_ex), source_digest(self.cfg.eval_file)), do, config=bcfg)
        return [r.get("outputs", [r["output"]]) for r in read_jsonl_plain(d / "outputs.jsonl")]
