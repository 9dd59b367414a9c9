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

import random
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

from rlop.rlp.judges import Judge
from rlop.rlp.samples import SampleSet
from rlop.utils import derive_seed

VARIANTS = ("spg", "select-all", "reward", "rlaif")


@dataclass
class SPGConfig:
    samples: str = field(default="", metadata={"help": "policy samples JSONL (rlop sample)"})
    reward_model: str = field(default="", metadata={"help": "step-2 reward model dir (or 'gold' in the sandbox)"})
    judge: str = field(default="embedding", metadata={"help": "answer | embedding | nli"})
    judge_model: str = ""
    nli_rule: str = "lenient"
    threshold: float = 0.85
    gamma: float = 0.5
    variant: str = field(default="spg", metadata={"help": "spg | select-all | reward | rlaif"})
    policy: str = field(default="", metadata={"help": "policy that judges pairs for the rlaif variant"})
    seed: int = 42

    PRESETS: ClassVar[dict] = {"tiny": dict(judge="answer"), "cpu": dict()}


def cluster(instruction: str, responses: Sequence[str], judge: Judge) -> list[list[int]]:
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
    judge: Judge | None = None,
    pairwise_judge: Callable[[Any, str, str], float] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Synthetic preference records (AlpacaFarm format + confidence) and summary stats."""
    if cfg.variant not in VARIANTS:
        raise ValueError(f"unknown variant {cfg.variant!r}; choose from {', '.join(VARIANTS)}")
    gamma = 0.0 if cfg.variant == "select-all" else cfg.gamma
    rows, confidences = [], []
    for idx, s in enumerate(sets):
        rng = random.Random(derive_seed(cfg.seed, idx))
        ex = s.example
        base = {"instruction": ex.instruction, "input": ex.input, **ex.meta, "variant": cfg.variant}
        if cfg.variant in ("spg", "select-all"):
            clusters = cluster(ex.instruction, s.responses, judge)
            confidences.append(max(len(c) for c in clusters) / len(s.responses))
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


class PolicyPairwiseJudge:
    """RLAIF: the policy compares two outputs; log P('(a)') - log P('(b)'), averaged over both orders."""

    PROMPT = ("Which of the two outputs answers the instruction better?\n\nInstruction: {instruction}\n\n"
              "Output (a): {a}\n\nOutput (b): {b}\n\nAnswer with 'Output (a)' or 'Output (b)'.")

    def __init__(self, policy: str):
        import torch

        from rlop.models.loading import load_causal_lm, load_tokenizer

        self.tok = load_tokenizer(policy)
        self.model = load_causal_lm(policy).eval()
        self.torch = torch

    def _margin(self, ex, a: str, b: str) -> float:
        from rlop.data.formatting import format_prompt

        prompt = format_prompt(self.tok, self.PROMPT.format(instruction=ex.instruction + (f"\n{ex.input}" if ex.input else ""), a=a, b=b), "") + "Output ("
        ids = self.tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with self.torch.no_grad():
            logp = self.torch.log_softmax(self.model(input_ids=ids).logits[0, -1].float(), -1)
        ta = self.tok("a", add_special_tokens=False)["input_ids"][0]
        tb = self.tok("b", add_special_tokens=False)["input_ids"][0]
        return float(logp[ta] - logp[tb])

    def __call__(self, ex, a: str, b: str) -> float:
        return 0.5 * (self._margin(ex, a, b) - self._margin(ex, b, a))
