"""The stage graph of ``rlop run``: the stage folders in run order and what each reads.

``--force STAGE`` follows :data:`STAGE_INPUTS`: it redoes the stage and every stage that reads
its output, directly or through others, and leaves the rest cached (e.g. ``--force ppo`` keeps
best-of-n and the SFT outputs).
"""

from __future__ import annotations

from rlop.pipeline.run_config import ALL_METHODS
from rlop.rlp.variants import VARIANTS

HELDOUT = ("heldout-sft", "heldout-ppo")  # samples on val prompts for the reward-model diagnostics
POLICY_STAGE = {"ppo": "ppo", **{v.method: v.ppo_stage for v in VARIANTS.values()}}  # method -> the stage holding its policy
OVEROPT = {p: f"overopt-{p}" for p in POLICY_STAGE.values()}  # PPO stage -> its over-optimisation curve (ppo: snapshot_steps)
ORDER = ["sft", "collect", "rm", "ppo", OVEROPT["ppo"], "samples",
         *(s for v in VARIANTS.values() for s in (*v.stages, *v.null_stages, v.ppo_stage, OVEROPT[v.ppo_stage])), *HELDOUT, "bon", "eval"]
EVAL_OUTPUTS = [f"outputs-{m}" for m in ALL_METHODS if m != "bon"]  # what ``--force eval`` redoes (bon samples in its own stage)


def _stage_inputs() -> dict[str, tuple[str, ...]]:
    """Every stage folder and the stages whose output it reads: the graph ``--force`` follows."""
    graph = {"sft": (), "collect": ("sft",), "rm": ("sft", "collect"), "ppo": ("sft", "rm"), "samples": ("ppo",),
             "heldout-sft": ("sft",), "heldout-ppo": ("ppo",), "bon": ("sft", "rm")}
    for v in VARIANTS.values():
        reads = ("sft", "collect", "rm", "ppo", "samples")  # what a step-4 function is given (Step4Context)
        for stage in v.stages:
            graph[stage], reads = reads, (*reads, stage)
        for stage in v.null_stages:  # the placebo is drawn from what the variant's step 4 wrote
            graph[stage], reads = reads, (*reads, stage)
        graph[v.ppo_stage] = ("sft", v.reward_stage)
        graph[OVEROPT[v.ppo_stage]] = ("sft", v.reward_stage, v.ppo_stage)
    graph[OVEROPT["ppo"]] = ("sft", "rm", "ppo")
    graph.update({out: (POLICY_STAGE.get(out[8:], out[8:]),) for out in EVAL_OUTPUTS})  # sft's outputs read the sft stage
    return graph


STAGE_INPUTS = _stage_inputs()


def downstream(stage: str) -> list[str]:
    """``stage`` and every stage that reads its output, directly or through others, in run order
    (``eval``: the sampled eval outputs of every method but best-of-n)."""
    found = set(EVAL_OUTPUTS) if stage == "eval" else {stage}
    while True:
        more = {s for s, reads in STAGE_INPUTS.items() if found & set(reads)} - found
        if not more:
            return [s for s in [*ORDER, *EVAL_OUTPUTS] if s in found]
        found |= more
