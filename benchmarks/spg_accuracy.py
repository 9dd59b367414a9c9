"""Paper Table 5, "Preference Acc." column, on the sandbox.

Uses a finished ``rlop run`` directory: the PPO policy's samples (``samples/samples.jsonl``,
n per unlabeled instruction), the step-2 reward model (``rm``) and the PPO policy
(``ppo/policy``, the RLAIF judge). For RLAIF, Reward, Select-All and RLP-SPG it builds the
synthetic pairs and prints their accuracy against the gold annotator, with counts and
acceptance rates, next to the paper's figures (52, 56, 55, 59). It also prints how often the
``embedding`` judge agrees with the ``answer`` judge on pairs of responses to definite-answer
tasks.

    python benchmarks/spg_accuracy.py RUN_DIR [--judge embedding]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from rlop.rewards import RewardModelReward
from rlop.rlp.judges import AnswerJudge, make_judge
from rlop.data.samples import load_samples
from rlop.rlp.spg import PolicyAnnotator, SPGConfig, generate
from rlop.sandbox.gold import GoldAnnotator

PAPER = {"rlaif": 52, "reward": 56, "select-all": 55, "spg": 59}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--judge", default="embedding")
    ap.add_argument("--gamma", type=float, default=0.5)
    a = ap.parse_args()
    run = Path(a.run_dir)
    sets = load_samples(run / "samples" / "samples.jsonl")
    reward = RewardModelReward(run / "rm")
    judge = make_judge(a.judge)
    gold = GoldAnnotator()
    print(f"{len(sets)} instructions x {len(sets[0].responses)} PPO samples from {run}; judge={a.judge}, gamma={a.gamma}")
    print("| variant | gold accuracy of synthetic pairs | correct/pairs | acceptance | paper Pref. Acc. |\n|---|---|---|---|---|")
    for variant in ("rlaif", "reward", "select-all", "spg"):
        cfg = SPGConfig(variant=variant, gamma=a.gamma, judge=a.judge)
        pj = PolicyAnnotator(str(run / "ppo" / "policy")) if variant == "rlaif" else None
        rows, st = generate(sets, cfg, reward, judge, pj)
        correct = total = 0
        for r in rows:
            chosen, rejected = (r["output_1"], r["output_2"]) if r["preference"] == 1 else (r["output_2"], r["output_1"])
            v = gold.prefer(r["spec"], chosen, rejected)
            if v == 0:
                continue
            total += 1
            correct += v == 1
        acc = correct / total if total else float("nan")
        print(f"| {variant} | {acc:.1%} | {correct}/{total} | {st['acceptance_rate']:.1%} ({st['pairs']}/{st['instructions']}) | {PAPER[variant]} |")
    agree = n = 0
    aj = AnswerJudge()
    for s in sets:
        if s.example.meta.get("kind") != "answer":
            continue
        pairs = list(itertools.combinations(list(dict.fromkeys(s.responses)), 2))
        for x, y in zip(aj.equivalent("", pairs), judge.equivalent(s.example.instruction, pairs)):
            agree += x == y
            n += 1
    if n:
        print(f"embedding vs answer judge on definite-answer response pairs: agree on {agree}/{n} = {agree / n:.1%}")


if __name__ == "__main__":
    main()
