"""The registry of RLP variants: how step 4 of Algorithm 1 builds a reward model.

Each variant names its method (a row of the results), the stage folders its step 4 writes
(the last holds the retrained reward model), the PPO stage of step 5, the function that runs
its step 4, and a cost model for the run ETA. ``rlop run`` derives its stage order, cache
keys, outputs, diagnostics and report rows from this table.

A step-4 function gets a :class:`rlop.pipeline.run.Step4Context`: the SFT model, the
preference file D, the step-2 reward model, the PPO policy's samples on unlabeled prompts,
``stage_cfg`` (a stage config from presets, YAML and overrides) and ``run_stage`` (a cached,
atomic stage). To add a variant, write its step-4 function in a new module and add one line
below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Variant:
    method: str  # the method name in --methods and in results.json
    stages: tuple[str, ...]  # step-4 stage folders, in order; the last holds the retrained reward model
    ppo_stage: str  # step 5: PPO from SFT on that reward model
    step4: str  # "module:function" taking a Step4Context, returning the reward-model folder
    cost: Callable[[float, float], dict[str, float]]  # (seconds of one step-2 RM, of one SPG clustering pass) -> stage estimates

    @property
    def reward_stage(self) -> str:
        return self.stages[-1]

    def run_step4(self, ctx):
        module, _, fn = self.step4.partition(":")
        return getattr(importlib.import_module(module), fn)(ctx)


# the order is the order of the methods in results.json and the report
VARIANTS: dict[str, Variant] = {v.method: v for v in (
    Variant("rlp-uml", ("rm-uml",), "ppo-uml", "rlop.rlp.uml:step4", lambda rm, spg: {"rm-uml": rm * 1.8}),
    Variant("rlp-spg", ("spg", "rm-spg"), "ppo-spg", "rlop.rlp.spg:step4", lambda rm, spg: {"spg": spg, "rm-spg": rm * 1.1}),
)}
