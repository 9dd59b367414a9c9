"""The registry of RLP variants: how step 4 of Algorithm 1 builds a reward model.

Each variant names its method (a row of the results), the stage folders its step 4 writes
(the last holds the retrained reward model), the PPO stage of step 5, the function that runs
its step 4, and a cost model for the run ETA. ``rlop run`` derives its stage order, cache
keys, outputs, diagnostics and report rows from this table.

A step-4 function gets a :class:`Step4Context`: its inputs, each with the cache key of the
stage (or source file) it came from (the SFT model, the preference file D, the step-2 reward
model, the step-3 PPO policy and its samples on unlabeled prompts), ``stage_cfg`` (a stage config as
``rlop run`` resolves it, :mod:`rlop.pipeline.resolve`) and ``run_stage`` (a cached, atomic
stage). With ``--null-arm`` a variant's ``null`` function trains its placebo RM under the same
protocol (``null_stages``), against which the diagnostics pair the retrained RM. A variant may name a ``diagnose`` function: ``(stage_dir) -> dict`` of extra entries for
the run's diagnostics (``stage_dir(name)`` is the folder of one of its stages). To add a variant,
write its step-4 function in a new module and add one line below.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Step4Context:
    """What a variant's step 4 is given; ``*_key`` is the cache key of the stage or file each input came from."""
    run: Any  # the run's RunConfig (seed, judge, gamma ...), read-only
    sft: Path
    sft_key: str
    preferences: str  # D, a preference file
    preferences_key: str
    reward_model: Path  # the step-2 reward model
    reward_model_key: str
    reward_model_seed: int  # the seed of this run's RMs: its split of D, head initialisation and order of D (matched retraining)
    reward_model_matches: bool  # whether the step-2 RM has that seed (not when it is shared from another seed's run)
    policy: Path  # the step-3 PPO policy
    policy_key: str
    samples: str  # the step-3 policy's samples on the unlabeled prompts (samples.jsonl)
    samples_key: str
    stage_cfg: Callable[..., Any]  # (cls, section, stage, recipe=..., wired=...) -> config, see rlop.pipeline.resolve
    run_stage: Callable[..., Path]  # (name, key_parts, fn(folder), config) -> the published stage folder
    stage_dir: Callable[[str], Path]  # the folder of a stage of this run (one step 4 computed already)

    def retrain(self, cfg):
        """A retrained RM's config under the run's protocol. With ``matched_retraining`` it takes the
        seed of this run's step-2 RM (so its split of D, head initialisation and order of D) and the matched pair
        order (its synthetic pairs at seeded slots of that order): what differs from rm is the variant's contribution."""
        if not getattr(self.run, "matched_retraining", False):
            return cfg
        return dataclasses.replace(cfg, seed=self.reward_model_seed, pair_order="matched")


@dataclass(frozen=True)
class Variant:
    method: str  # the method name in --methods and in results.json
    stages: tuple[str, ...]  # step-4 stage folders, in order; the last holds the retrained reward model
    ppo_stage: str  # step 5: PPO from SFT on that reward model
    step4: str  # "module:function" taking a Step4Context, returning the reward-model folder
    cost: Callable[[float, float], dict[str, float]]  # (seconds of one step-2 RM, of one SPG clustering pass) -> stage estimates
    diagnose: str = ""  # "module:function" taking stage_dir (name -> Path), returning extra diagnostics entries
    report: str = ""  # "module:function" taking the run's diagnostics, returning report.md lines about those entries
    null: str = ""  # "module:function" taking a Step4Context, returning the placebo RM's folder (the null arm, --null-arm)
    null_stages: tuple[str, ...] = ()  # the stage folders the null arm writes; the last holds the placebo RM

    @property
    def null_reward_stage(self) -> str:
        return self.null_stages[-1] if self.null_stages else ""

    def run_null(self, ctx: Step4Context) -> Path | None:
        return _load(self.null)(ctx) if self.null else None

    @property
    def reward_stage(self) -> str:
        return self.stages[-1]

    def run_step4(self, ctx: Step4Context) -> Path:
        return _load(self.step4)(ctx)

    def diagnostics(self, stage_dir: Callable[[str], Path]) -> dict[str, Any]:
        return _load(self.diagnose)(stage_dir) if self.diagnose else {}

    def report_lines(self, diagnostics: dict[str, Any]) -> list[str]:
        return _load(self.report)(diagnostics) if self.report else []


def _load(spec: str) -> Callable:
    module, _, fn = spec.partition(":")
    return getattr(importlib.import_module(module), fn)


# the order is the order of the methods in results.json and the report
VARIANTS: dict[str, Variant] = {v.method: v for v in (
    Variant("rlp-uml", ("rm-uml",), "ppo-uml", "rlop.rlp.uml:step4", lambda rm, spg: {"rm-uml": rm * 1.8},
            "rlop.rlp.uml:diagnose", "rlop.rlp.uml:report_lines", "rlop.rlp.uml:null_arm", ("rm-uml-null",)),
    Variant("rlp-spg", ("spg", "rm-spg"), "ppo-spg", "rlop.rlp.spg:step4", lambda rm, spg: {"spg": spg, "rm-spg": rm * 1.1},
            "rlop.rlp.spg:diagnose", "rlop.rlp.spg:report_lines", "rlop.rlp.spg:null_arm", ("spg-null", "rm-spg-null")),
    Variant("rlp-ocrm", ("ocrm", "rm-ocrm"), "ppo-ocrm", "rlop.rlp.ocrm:step4", lambda rm, spg: {"ocrm": rm * 0.6, "rm-ocrm": rm * 1.05},
            "rlop.rlp.ocrm:diagnose", "rlop.rlp.ocrm:report_lines", "rlop.rlp.ocrm:null_arm", ("ocrm-null", "rm-ocrm-null")),
)}
