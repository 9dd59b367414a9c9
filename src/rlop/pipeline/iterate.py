"""Steps 4-5 iterated (``rlop run --rlp-iterations K``): iteration k >= 2 of an RLP variant.

Algorithm 1 runs step 4 (retrain the reward model on the step-3 policy's samples) and step 5 (PPO
again from SFT) once. Iteration k repeats them on iteration k-1's output:

1. ``samples-X-itk``: iteration k-1's policy samples the unlabeled prompts, as step 4's ``samples``
   stage does for the step-3 policy (same prompts, n and seed);
2. the variant's own step-4 function, unchanged, with a :class:`~rlop.rlp.variants.Step4Context`
   whose policy, samples and reward model are iteration k-1's (SPG scores its candidates with
   iteration k-1's retrained RM; OCRM's density ratios are iteration k-1's policy against SFT); its
   stage folders get the suffix ``-itk``;
3. ``ppo-X-itk``: PPO on the new reward model, from SFT with the KL to SFT (``--rlp-iterate-from
   sft``, RLP's step 5) or from iteration k-1's policy with the KL to that policy (``policy``,
   OCRM's loop, where each PPO round continues the last one).

The null arm (``--null-arm``) runs in iteration 1 only. Every stage is cached and resumable like
the others: its key holds iteration k-1's keys, so a change upstream redoes the iterations after it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from rlop.models.sampling import run_sample
from rlop.pipeline.manifest import stage_key as _key
from rlop.pipeline.stages import iteration_suffix, samples_stage


def iteration(p: Any, v: Any, k: int, ctx: Any, samples_cfg: Any, ppo_stage: Callable[..., Path]) -> Path:
    """Iteration ``k`` >= 2 of variant ``v`` in pipeline ``p``: returns its PPO stage folder.
    ``ctx``: iteration 1's step-4 context; ``samples_cfg``: the config of iteration 1's ``samples`` stage;
    ``ppo_stage(name, reward_dir, reward_stage, start=, after=)``: the pipeline's cached PPO stage."""
    sfx, prev = iteration_suffix(k), iteration_suffix(k - 1)
    prev_ppo, prev_rm = v.ppo_stage + prev, v.reward_stage + prev
    prev_policy = p.stage_dir(prev_ppo) / "policy"
    name = samples_stage(v, k)
    scfg = dataclasses.replace(samples_cfg, policy=str(prev_policy))
    samples = p.run_stage(name, _key(name, scfg, p.keys[prev_ppo]), lambda d: run_sample(scfg, d), config=scfg)
    ictx = dataclasses.replace(
        ctx, policy=prev_policy, policy_key=p.keys[prev_ppo], samples=str(samples / "samples.jsonl"), samples_key=p.keys[name],
        reward_model=p.stage_dir(prev_rm), reward_model_key=p.keys[prev_rm],
        run_stage=lambda stage, parts, fn, config=None: p.run_stage(stage + sfx, _key(*parts, k), fn, config=config),
        stage_dir=lambda stage: p.stage_dir(stage + sfx))
    retrained = v.run_step4(ictx)
    start = ctx.sft if p.cfg.rlp_iterate_from == "sft" else prev_policy
    return ppo_stage(v.ppo_stage + sfx, retrained, v.reward_stage + sfx, start=start, after=(prev_ppo,))


def iteration_estimates(v: Any, iterations: int, est: dict[str, float], ppo_seconds: float) -> dict[str, float]:
    """Estimated seconds of iterations 2..K of ``v``: as iteration 1's samples, step-4 stages and PPO."""
    more = {}
    for k in range(2, iterations + 1):
        sfx = iteration_suffix(k)
        more[samples_stage(v, k)] = est.get("samples", 0.0)
        more.update({s + sfx: est.get(s, 0.0) for s in v.stages})
        more[v.ppo_stage + sfx] = ppo_seconds
    return more
