"""The stage graph of ``rlop run``: the stage folders in run order and what each reads.

``--force STAGE`` follows :data:`STAGE_INPUTS`: it redoes the stage and every stage that reads
its output, directly or through others, and leaves the rest cached (e.g. ``--force ppo`` keeps
best-of-n and the SFT outputs).

With ``--rlp-iterations K`` each variant's steps 4-5 run K times: iteration k >= 2 writes
``samples-X-itk`` (samples of iteration k-1's policy), the variant's step-4 stages and its PPO
stage with the suffix ``-itk`` (e.g. ``rm-spg-it2``, ``ppo-spg-it2``); the method's policy is
the last iteration's.
"""

from __future__ import annotations

from rlop.pipeline.run_config import ALL_METHODS
from rlop.rlp.variants import VARIANTS

HELDOUT = ("heldout-sft", "heldout-ppo")  # samples on val prompts for the reward-model diagnostics
POLICY_STAGE = {"ppo": "ppo", **{v.method: v.ppo_stage for v in VARIANTS.values()}}  # method -> the stage holding its policy
OVEROPT = {p: f"overopt-{p}" for p in POLICY_STAGE.values()}  # PPO stage -> its over-optimisation curve (ppo: snapshot_steps)
EVAL_OUTPUTS = [f"outputs-{m}" for m in ALL_METHODS if m != "bon"]  # what ``--force eval`` redoes (bon samples in its own stage)


def iteration_suffix(k: int) -> str:
    """The suffix of iteration k's stage folders: none for the first (Algorithm 1 as written)."""
    return "" if k == 1 else f"-it{k}"


def samples_stage(variant, k: int) -> str:
    """Iteration k's (k >= 2) samples of iteration k-1's policy of ``variant`` on the unlabeled prompts."""
    return f"samples-{variant.ppo_stage.removeprefix('ppo-')}{iteration_suffix(k)}"


def iteration_stages(variant, k: int) -> tuple[str, ...]:
    """The stage folders iteration k >= 2 of ``variant`` writes, in order (the null arm runs in iteration 1 only)."""
    sfx = iteration_suffix(k)
    return (samples_stage(variant, k), *(s + sfx for s in variant.stages), variant.ppo_stage + sfx, OVEROPT[variant.ppo_stage] + sfx)


def policy_stages(iterations: int = 1) -> dict[str, str]:
    """Method -> the stage holding its final policy."""
    return {m: (s + iteration_suffix(iterations) if m in VARIANTS else s) for m, s in POLICY_STAGE.items()}


def stage_order(iterations: int = 1) -> list[str]:
    """Every stage folder of a run, in run order."""
    per_variant = (s for v in VARIANTS.values() for s in (*v.stages, *v.null_stages, v.ppo_stage, OVEROPT[v.ppo_stage],
                                                           *(x for k in range(2, iterations + 1) for x in iteration_stages(v, k))))
    return ["sft", "collect", "rm", "ppo", OVEROPT["ppo"], "samples", *per_variant, *HELDOUT, "bon", "eval"]


ORDER = stage_order(1)


def _stage_inputs(iterations: int = 1) -> dict[str, tuple[str, ...]]:
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
        for k in range(2, iterations + 1):  # samples of the last policy -> step 4 (with the last RM) -> PPO (from SFT or that policy)
            prev_ppo, prev_rm = (x + iteration_suffix(k - 1) for x in (v.ppo_stage, v.reward_stage))
            samples, *step4, ppo, overopt = iteration_stages(v, k)
            graph[samples] = (prev_ppo,)
            reads = ("sft", "collect", "rm", prev_ppo, prev_rm, samples)
            for stage in step4:
                graph[stage], reads = reads, (*reads, stage)
            graph[ppo] = ("sft", step4[-1], prev_ppo)
            graph[overopt] = ("sft", step4[-1], ppo)
    graph[OVEROPT["ppo"]] = ("sft", "rm", "ppo")
    final = policy_stages(iterations)
    graph.update({out: (final.get(out[8:], out[8:]),) for out in EVAL_OUTPUTS})  # sft's outputs read the sft stage
    return graph


STAGE_INPUTS = _stage_inputs()


def downstream(stage: str, iterations: int = 1) -> list[str]:
    """``stage`` and every stage that reads its output, directly or through others, in run order
    (``eval``: the sampled eval outputs of every method but best-of-n)."""
    graph = _stage_inputs(iterations)
    found = set(EVAL_OUTPUTS) if stage == "eval" else {stage}
    while True:
        more = {s for s, reads in graph.items() if found & set(reads)} - found
        if not more:
            return [s for s in [*stage_order(iterations), *EVAL_OUTPUTS] if s in found]
        found |= more
