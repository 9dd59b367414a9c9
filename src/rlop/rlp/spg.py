"""RLP-SPG: synthetic preference generation from policy samples (paper section 4.2).

For each unlabeled instruction with n policy samples:

1. cluster the samples by semantic equivalence (:mod:`rlop.rlp.judges`): responses are
   visited in sorted text order (so clusters do not depend on input order), identical
   texts share a cluster without a judge call, and each new response is compared with
   every cluster's representative (its first member) in one batched judge call, joining
   the first equivalent cluster (about n x k calls, not n^2);
2. confidence = size of the largest cluster / n; keep the instruction if confidence >=
   gamma (0.5) and another cluster exists (confidence 1.0 has no rejected response);
   a tie for the largest cluster goes to the cluster whose best member has the higher
   reward, then to the one met first;
3. preferred = the largest cluster's member with the highest step-2 reward; rejected =
   a seeded random member of the other clusters. One pair per kept instruction.

Ablations (Table 5): ``select-all`` (gamma = 0), ``reward`` (a seeded random pair ranked by
the reward model), ``rlaif`` (the policy judges a seeded random pair with a pairwise
prompt, both orders averaged to cancel position bias).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Sequence

import torch

from rlop.distributed import is_main_process
from rlop.config import ConfigError, StageConfig, opt, require
from rlop.data.formatting import format_prompt
from rlop.data.samples import SampleSet, load_samples
from rlop.models.generation import context_length
from rlop.models.loading import load_causal_lm, load_tokenizer
from rlop.outputs import staged
from rlop.reward_functions import load_reward
from rlop.rlp.judges import EquivalenceJudge, make_judge
from rlop.training.reward_trainer import RewardConfig, run_reward
from rlop.utils import derive_seed, write_jsonl
from rlop.models import precision as precision_

SPG_ABLATIONS = ("spg", "select-all", "reward", "rlaif")  # SPG and its Table 5 ablations (--variant)


@dataclass
class SPGConfig(StageConfig):
    samples: str = opt("", "policy samples JSONL (from rlop sample): n responses per unlabeled instruction")
    reward_model: str = opt("", "step-2 reward model directory (or 'gold' in the sandbox); picks the preferred response")
    judge: Literal["answer", "embedding", "nli"] = opt("embedding", "equivalence judge for clustering: answer (sandbox) | embedding | nli")
    judge_model: str = opt("", "model of the embedding or nli judge (default: the bundled MiniLM, or microsoft/deberta-large-mnli)")
    nli_rule: Literal["lenient", "strict"] = opt("lenient", "nli equivalence: lenient (no contradiction either way) | strict (entailment both ways)")
    threshold: float = opt(0.85, "cosine similarity at which the embedding judge calls two responses equivalent", ge=-1, le=1)
    gamma: float = opt(0.5, "SPG's confidence threshold (the paper's gamma; not PPO's discount): keep an instruction when its largest cluster holds at least this share of the samples", ge=0, le=1)
    variant: Literal["spg", "select-all", "reward", "rlaif"] = opt("spg", "spg | ablations: select-all (gamma 0), reward, rlaif")
    policy: str = opt("", "policy that judges pairs for the rlaif variant")
    seed: int = opt(42, "random seed (choice of the rejected response)")
    precision: precision_.Precision = opt("auto", precision_.HELP)

    def check(self) -> None:
        if self.variant == "rlaif" and self.samples and not self.policy:
            raise ConfigError("--variant rlaif needs --policy (the policy that judges the pairs)")

    PRESETS: ClassVar[dict] = {"tiny": dict(judge="answer"), "cpu": dict(), "gpu": dict()}


def cluster(instruction: str, responses: Sequence[str], judge: EquivalenceJudge) -> list[list[int]]:
    """Clusters as lists of indices into ``responses`` (order-independent, see module doc)."""
    order = sorted(range(len(responses)), key=lambda i: (responses[i], i))
    clusters: list[list[int]] = []
    by_text: dict[str, int] = {}
    for i in order:
        text = responses[i]
        if text in by_text:
            clusters[by_text[text]].append(i)
            continue
        reps = [responses[c[0]] for c in clusters]
        verdicts = judge.equivalent(instruction, [(rep, text) for rep in reps]) if reps else []
        k = next((j for j, v in enumerate(verdicts) if v), None)
        if k is None:
            clusters.append([i])
            k = len(clusters) - 1
        else:
            clusters[k].append(i)
        by_text[text] = k
    return clusters


def select_pair(responses: Sequence[str], clusters: list[list[int]], rewards: Sequence[float], gamma: float, rng: random.Random) -> dict[str, Any] | None:
    n = len(responses)
    sizes = [len(c) for c in clusters]
    top = max(sizes)
    confidence = top / n
    if confidence < gamma or len(clusters) < 2:
        return None
    candidates = [j for j, c in enumerate(clusters) if len(c) == top]
    best = max(candidates, key=lambda j: (max(rewards[i] for i in clusters[j]), -j))
    winner = max(clusters[best], key=lambda i: (rewards[i], -i))
    others = sorted(i for j, c in enumerate(clusters) if j != best for i in c)
    loser = rng.choice(others)
    return {"chosen": responses[winner], "rejected": responses[loser], "confidence": confidence,
            "cluster_sizes": sorted(sizes, reverse=True)}


def random_pair(responses: Sequence[str], rng: random.Random) -> tuple[str, str] | None:
    distinct = list(dict.fromkeys(responses))
    if len(distinct) < 2:
        return None
    a, b = rng.sample(distinct, 2)
    return a, b


def generate(
    sets: Sequence[SampleSet],
    cfg: SPGConfig,
    reward: Callable | None = None,
    judge: EquivalenceJudge | None = None,
    pairwise_judge: Callable[[Any, str, str], float] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Synthetic preference records (AlpacaFarm format + confidence) and summary stats."""
    if cfg.variant not in SPG_ABLATIONS:
        raise ValueError(f"unknown variant {cfg.variant!r}; choose from {', '.join(SPG_ABLATIONS)}")
    gamma = 0.0 if cfg.variant == "select-all" else cfg.gamma
    rows, confidences = [], []
    for idx, s in enumerate(sets):
        rng = random.Random(derive_seed(cfg.seed, idx))
        ex = s.example
        base = {"instruction": ex.instruction, "input": ex.input, **ex.meta, "variant": cfg.variant}
        if cfg.variant in ("spg", "select-all"):
            clusters = cluster(ex.instruction + (f"\n\n{ex.input}" if ex.input else ""), s.responses, judge)  # the NLI judge reads both
            confidences.append(max(len(c) for c in clusters) / len(s.responses))
            if confidences[-1] < gamma or len(clusters) < 2:
                continue  # rejected: its rewards would go unused, so they are not computed
            rewards = reward([ex] * len(s.responses), s.responses)
            pick = select_pair(s.responses, clusters, rewards, gamma, rng)
            if pick is None:
                continue
            rows.append({**base, "output_1": pick["chosen"], "output_2": pick["rejected"], "preference": 1,
                         "confidence": pick["confidence"], "cluster_sizes": pick["cluster_sizes"]})
        else:
            pair = random_pair(s.responses, rng)
            if pair is None:
                continue
            a, b = pair
            if cfg.variant == "reward":
                ra, rb = reward([ex, ex], [a, b])
                margin = ra - rb
            else:
                margin = pairwise_judge(ex, a, b)
            rows.append({**base, "output_1": a, "output_2": b, "preference": 1 if margin >= 0 else 2, "margin": float(margin)})
    stats = {"instructions": len(sets), "pairs": len(rows), "acceptance_rate": len(rows) / max(len(sets), 1), "confidences": confidences}
    return rows, stats


class PolicyAnnotator:
    """RLAIF: the policy compares two outputs; log P('(a)') - log P('(b)'), averaged over both orders."""

    PROMPT = ("Which of the two outputs answers the instruction better?\n\nInstruction: {instruction}\n\n"
              "Output (a): {a}\n\nOutput (b): {b}\n\nAnswer with 'Output (a)' or 'Output (b)'.")

    def __init__(self, policy: str):
        self.tok = load_tokenizer(policy)
        self.model = load_causal_lm(policy).eval()
        self.torch = torch

    def _margin(self, ex, a: str, b: str) -> float:
        prompt = format_prompt(self.tok, self.PROMPT.format(instruction=ex.instruction + (f"\n{ex.input}" if ex.input else ""), a=a, b=b), "") + "Output ("
        ids = self.tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        ctx = context_length(self.model)
        if ctx is not None and ids.shape[1] > ctx:  # keep the end: the pair and the answer prefix
            ids = ids[:, -ctx:]
        with self.torch.no_grad():
            logp = self.torch.log_softmax(self.model(input_ids=ids).logits[0, -1].float(), -1)
        ta = self.tok("a", add_special_tokens=False)["input_ids"][0]
        tb = self.tok("b", add_special_tokens=False)["input_ids"][0]
        return float(logp[ta] - logp[tb])

    def __call__(self, ex, a: str, b: str) -> float:
        return 0.5 * (self._margin(ex, a, b) - self._margin(ex, b, a))


def run_spg(cfg: SPGConfig, out) -> dict[str, Any]:
    """Synthetic pairs for the samples in ``cfg.samples``: ``out/synthetic.jsonl`` and ``out/spg_stats.json``."""


    require(cfg, "samples", "the policy samples to cluster (from rlop sample)")
    if cfg.variant in ("spg", "select-all", "reward"):
        require(cfg, "reward_model", f"variant {cfg.variant} ranks responses with the step-2 reward model")
    sets = load_samples(cfg.samples)
    with staged(out, "spg", main=is_main_process()) as tmp:
        reward = load_reward(cfg.reward_model, precision=cfg.precision) if cfg.variant in ("spg", "select-all", "reward") else None
        judge = make_judge(cfg.judge, cfg.judge_model or None, cfg.nli_rule, cfg.threshold) if cfg.variant in ("spg", "select-all") else None
        pj = PolicyAnnotator(cfg.policy) if cfg.variant == "rlaif" else None
        rows, stats = generate(sets, cfg, reward, judge, pj)
        write_jsonl(tmp / "synthetic.jsonl", rows)
        (tmp / "spg_stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def step4(ctx) -> Path:
    """RLP-SPG's step 4 in ``rlop run``: synthetic pairs from the PPO policy's samples, then the RM retrained on D plus them."""
    c = ctx.run
    scfg = ctx.stage_cfg(SPGConfig, "spg", "spg", recipe={"judge": ("judge", c.judge), "gamma": ("gamma", c.gamma), "seed": ("seed", c.seed)},
                         wired={"samples": ctx.samples, "reward_model": str(ctx.reward_model)})
    spg = ctx.run_stage("spg", ("spg", scfg, ctx.samples_key), lambda d: run_spg(scfg, d), config=scfg)
    rcfg = _rm_config(ctx, "rm-spg", spg / "synthetic.jsonl")
    spg_key = _stage_key(spg)
    return ctx.run_stage("rm-spg", ("rm-spg", rcfg, spg_key, ctx.preferences_key), lambda d: run_reward(rcfg, d), config=rcfg)


def placebo_pairs(sets: Sequence[SampleSet], kept: Sequence[dict], seed: int) -> list[dict[str, Any]]:
    """The null arm's pairs: one per SPG pair, on the same instruction, two distinct samples of it drawn
    at random and labelled by a coin flip. Same count, same instructions, same policy samples; no selection."""
    by_prompt = {(s.example.instruction, s.example.input): s for s in sets}
    rows = []
    for n, k in enumerate(kept):
        s = by_prompt[(k["instruction"], k.get("input", ""))]
        rng = random.Random(derive_seed(seed, 13, n))
        a, b = random_pair(s.responses, rng)  # SPG kept it, so it has two distinct samples
        base = {"instruction": s.example.instruction, "input": s.example.input, **s.example.meta, "variant": "placebo"}
        rows.append({**base, "output_1": a, "output_2": b, "preference": rng.choice((1, 2))})
    return rows


def null_arm(ctx) -> Path:
    """RLP-SPG's placebo RM (``spg-null``, ``rm-spg-null``): as many pairs as SPG kept, from the same samples of the
    same instructions with coin-flip labels, trained under rm-spg's protocol (under matched retraining, in the same slots)."""
    from rlop.utils import read_jsonl_plain

    spg = ctx.stage_dir("spg")  # written by step4 before the null arm runs
    kept = read_jsonl_plain(spg / "synthetic.jsonl") if (spg / "synthetic.jsonl").stat().st_size else []
    seed = ctx.run.seed

    def write(d: Path) -> None:
        write_jsonl(d / "synthetic.jsonl", placebo_pairs(load_samples(ctx.samples), kept, seed))

    null = ctx.run_stage("spg-null", ("spg-null", _stage_key(spg), seed), write)
    syn = null / "synthetic.jsonl"
    rcfg = _rm_config(ctx, "rm-spg-null", syn)
    return ctx.run_stage("rm-spg-null", ("rm-spg-null", rcfg, _stage_key(null), ctx.preferences_key), lambda d: run_reward(rcfg, d), config=rcfg)


def _rm_config(ctx, stage: str, syn: Path):
    return ctx.retrain(ctx.stage_cfg(RewardConfig, "reward", stage, recipe={"max_train_pairs": (None, 0)},
                                     wired={"model": str(ctx.sft), "train_file": ctx.preferences,
                                            "synthetic_file": str(syn) if syn.stat().st_size > 0 else ""}))


def _stage_key(folder: Path) -> str:
    return json.loads((folder / "stage.json").read_text())["key"]


def diagnose(stage_dir) -> dict:
    """SPG's synthetic pairs scored against the gold (sandbox samples only)."""
    from rlop.evaluation.diagnostics import synthetic_pair_accuracy

    f = stage_dir("spg") / "synthetic.jsonl"
    return {"spg_pairs": synthetic_pair_accuracy(f)} if f.exists() else {}


def report_lines(diag: dict) -> list[str]:
    """The report's line on SPG's synthetic pairs (from :func:`diagnose`)."""
    spg = diag.get("spg_pairs")
    if not spg:
        return []
    acc = "n/a" if spg["gold_accuracy"] is None else f"{spg['gold_accuracy'] * 100:.1f}% ({spg['ci_low'] * 100:.1f}-{spg['ci_high'] * 100:.1f})"
    return ["", f"SPG kept {spg['pairs']} synthetic pairs; the gold agrees with {acc}. Per family: "
            + ", ".join(f"{f} {v['pairs']} ({v['gold_accuracy'] * 100:.0f}%)" for f, v in spg["per_family"].items())]
