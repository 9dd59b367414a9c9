"""What ``rlop run`` measures beside the win-rates: the reward-model diagnostics (is each RM right
where the policy is, and each retrained RM against its null arm) and the over-optimisation
curves of the PPO stages run with ``snapshot_steps``. A mixin of :class:`rlop.pipeline.run.Pipeline`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlop.data.io import load_instructions
from rlop.evaluation.diagnostics import accuracy_with_interval, gold_pairs_from_samples
from rlop.evaluation.overopt import OveroptConfig, run_overopt
from rlop.evaluation.paired import paired_bootstrap
from rlop.models.precision import resolve as resolve_precision
from rlop.models.sampling import SampleConfig, run_sample
from rlop.pipeline.manifest import stage_key as _key
from rlop.pipeline.progress import fmt_seconds
from rlop.pipeline.recipe import has_tasks, source_digest
from rlop.pipeline.stages import HELDOUT, POLICY_STAGE
from rlop.reward_functions import RewardModelReward
from rlop.rlp.variants import VARIANTS
from rlop.utils import atomic_write_text

if TYPE_CHECKING:
    from rlop.training.ppo_config import PPOConfig

DIAGNOSTICS_VERSION = 2  # part of diagnostics.json's key: raise it when the diagnostics change




class Checks:
    """The pipeline's measurements; needs the Pipeline's stage plumbing (cfg, keys, stage_cfg, run_stage, stage_dir, gold, nulls)."""

    def _overopt_cfg(self, ppo_name: str, sft: Path, reward_dir: Path, ppo_dir: Path, pcfg: PPOConfig) -> OveroptConfig:
        c = self.cfg
        return self.stage_cfg(OveroptConfig, "overopt", f"overopt-{ppo_name}", recipe={"prompts_file": ("heldout_file", c.heldout_file),
                                                                                          "seed": ("seed", self._seed(f"overopt-{ppo_name}"))},
                              wired={"ppo_dir": str(ppo_dir), "reference": str(sft), "reward": str(reward_dir), "max_new_tokens": pcfg.response_len,
                                     "temperature": pcfg.temperature})

    def _overopt(self, ppo_name: str, sft: Path, reward_dir: Path, ppo_dir: Path, pcfg: PPOConfig) -> None:
        """The over-optimisation curve of one PPO stage run with ``snapshot_steps``: its kept policies scored on
        fixed held-out prompts with the same sampling seeds for every snapshot and every PPO run of the run."""
        c = self.cfg
        if self.gold is None or not has_tasks(load_instructions(c.heldout_file, limit=1)):
            if self.main:
                self.log(f"overopt-{ppo_name}: left out (the gold score needs sandbox tasks in unlabeled_file and heldout_file)", flush=True)
            return
        name = f"overopt-{ppo_name}"
        ocfg = self._overopt_cfg(ppo_name, sft, reward_dir, ppo_dir, pcfg)
        self.run_stage(name, _key(name, ocfg, self.keys[ppo_name], source_digest(c.heldout_file)), lambda d: run_overopt(ocfg, d), config=ocfg)

    def overopt_curves(self) -> dict[str, dict]:
        """Every over-optimisation curve of this run by PPO stage: its points and peak summary (no per-prompt scores)."""
        curves = {}
        for name in self.keys:
            f = self.stage_dir(name) / "curve.json"
            if name.startswith("overopt-") and f.exists():
                cv = json.loads(f.read_text())
                curves[name[len("overopt-"):]] = {"prompts": cv["prompts"], "samples": cv["samples"], "summary": cv["summary"],
                                                  "points": [{k: v for k, v in p.items() if k != "example_texts"} for p in cv["points"]]}
        return curves

    def _diagnostics(self, rm: Path, policies: dict[str, Path], eval_ex) -> dict[str, Any]:
        """Is each reward model right where the policy is? Accuracy on gold-labelled pairs of samples.

        ``heldout``: samples of SFT and of the step-3 PPO policy on val prompts, which no stage
        trained on (RLP's premise: the retrained RMs should be right more often on the PPO
        policy's samples). ``step4_samples``: the step-4 samples themselves, which rm-spg and
        rm-uml were trained on (so it flatters them)."""
        c = self.cfg
        rm_names = [n for n in ["rm", *sorted(v.reward_stage for v in VARIANTS.values()), *sorted(v.null_reward_stage for v in VARIANTS.values() if v.null_stages)]
                    if (self.stage_dir(n) / "config.json").exists() and n in self.keys]
        out: dict[str, Any] = {}
        if self.gold is None or not has_tasks(load_instructions(c.heldout_file, limit=c.heldout_prompts or 1)):
            return {"left_out": "the reward-model diagnostics need sandbox tasks (gold scores) in unlabeled_file and heldout_file"}
        heldout = {}
        if c.heldout_prompts and "ppo" in policies:
            for stage, policy in zip(HELDOUT, (policies["sft"], policies["ppo"])):
                # the held-out samples take the sample: section's sampling options; what they sample is the run's heldout_* options
                scfg = self.stage_cfg(SampleConfig, "sample", stage, recipe={"max_new_tokens": ("max_new_tokens", c.max_new_tokens)}, shared_section=True,
                                      wired={"policy": str(policy), "prompts_file": c.heldout_file, "max_prompts": c.heldout_prompts,
                                             "n": c.heldout_samples, "seed": self._seed(stage) + 2})
                heldout[stage] = self.run_stage(stage, _key(stage, scfg, self.keys[POLICY_STAGE.get(stage[8:], stage[8:])], source_digest(c.heldout_file)),
                                                lambda d: run_sample(scfg, d), config=scfg)
        # scoring takes minutes: kept in diagnostics.json under the keys of every stage it reads
        variant_stages = [st for v in VARIANTS.values() for st in (*v.stages, *v.null_stages)]
        key = _key("diagnostics", DIAGNOSTICS_VERSION, resolve_precision(c.precision),
                   {n: self.keys.get(n) for n in [*rm_names, *heldout, "samples", *variant_stages]})
        cache = self.out / "diagnostics.json"
        try:
            cached = json.loads(cache.read_text())
        except (OSError, ValueError):  # none yet, or unreadable: scored again
            cached = {}
        if isinstance(cached, dict) and cached.get("key") == key:
            return cached["diagnostics"]
        known, scored, rms = self._earlier_scorings(), {}, {}
        if rm_names and self.main:
            self.log(f"[{fmt_seconds(time.time() - self.progress.t0)}] scoring the reward models on gold-labelled sample pairs (diagnostics)", flush=True)
        sets = [(f"heldout_{stage[8:]}_samples", stage, d / "samples.jsonl") for stage, d in heldout.items()]
        if (self.stage_dir("samples") / "samples.jsonl").exists():
            sets.append(("step4_samples", "samples", self.stage_dir("samples") / "samples.jsonl"))
        for where, stage, f in sets:
            pairs = gold_pairs_from_samples(f)
            out[where] = {}
            for name in rm_names:  # one RM on one set of samples, scored once: reused from this or a sibling seed's run
                k = _key("scoring", DIAGNOSTICS_VERSION, resolve_precision(c.precision), self.keys[name], self.keys[stage])
                if k not in known:
                    if name not in rms:
                        rms[name] = RewardModelReward(self.stage_dir(name), precision=c.precision)
                    known[k] = accuracy_with_interval(rms[name], pairs)
                out[where][name], scored[k] = known[k], [where, name]
        out.update(self._versus_null(out, rm_names))
        for v in sorted(VARIANTS.values(), key=lambda v: v.reward_stage):  # each variant's own entries, in the order of its RM row
            out.update(v.diagnostics(self.stage_dir))
        if self.main:
            atomic_write_text(cache, json.dumps({"key": key, "diagnostics": out, "scored": scored}))
        return out

    def _earlier_scorings(self) -> dict[str, dict]:
        """Scorings kept in this run's diagnostics.json and, for a seed of a study, its sibling seeds':
        the same RM stage key on the same sample stage key (and precision) gives the same outcomes,
        so a shared RM is scored once on shared samples, and adding a variant scores only its RMs."""
        dirs = [self.out, *sorted(d for d in self.out.parent.glob("seed-*") if d != self.out)] if self.shared else [self.out]
        found: dict[str, dict] = {}
        for d in dirs:
            try:
                kept = json.loads((d / "diagnostics.json").read_text())
                found.update({k: kept["diagnostics"][where][name] for k, (where, name) in kept.get("scored", {}).items()})
            except (OSError, ValueError, KeyError, TypeError, AttributeError):  # none, unreadable or from an older version: scored again
                continue
        return found

    def _versus_null(self, diag: dict[str, Any], rm_names: list[str]) -> dict[str, Any]:
        """Each retrained RM paired with its null arm on the same gold-labelled pairs: the accuracy
        difference with a percentile bootstrap over pairs (``vs_null``), per set of samples."""
        null_name = {rs: next((n for n in rm_names if str(self.stage_dir(n)) == str(d)), None) for rs, d in self.nulls.items()}
        table: dict[str, Any] = {}
        for where, by_rm in diag.items():
            if not where.endswith("_samples"):
                continue
            for rs, null in null_name.items():
                if null is None or rs not in by_rm or null not in by_rm:
                    continue
                st = paired_bootstrap([by_rm[rs]["outcomes"]], [by_rm[null]["outcomes"]], seed=self.cfg.seed)
                table.setdefault(where, {})[rs] = {**st, "null": null}
        return {"vs_null": table} if table else {}
