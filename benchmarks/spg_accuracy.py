"""Paper Table 5, "Preference Acc." column, on the sandbox.

Uses one or more finished ``rlop run`` directories (e.g. the ``seed-S`` folders of
``rlop run --seeds``), pooling their pairs: each run's PPO samples (``samples/samples.jsonl``,
n per unlabeled instruction), its step-2 reward model (``rm``, or ``../shared/rm`` when the
seeds shared it) and its PPO policy (``ppo/policy``, the RLAIF judge). For RLAIF, Reward,
Select-All and RLP-SPG it builds the synthetic pairs and prints their accuracy against the gold
annotator, with counts, a 95% Wilson interval and acceptance rates, next to the paper's figures
(52, 56, 55, 59). It also prints how often the ``embedding`` judge agrees with the ``answer``
judge on pairs of responses to definite-answer tasks.

    python benchmarks/spg_accuracy.py RUN_DIR[=SAMPLES] [RUN_DIR ...] [--judge embedding]

``RUN_DIR=SAMPLES`` reads that run's reward model and policy but other samples of its PPO
policy (the ``samples.jsonl`` of an ``rlop sample`` folder, e.g. on more unlabeled
instructions than the run used), so the pairs can be many more than one run's step 4 makes.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from rlop.reward_functions import RewardModelReward
from rlop.rlp.judges import AnswerJudge, make_judge
from rlop.data.samples import load_samples
from rlop.evaluation.diagnostics import wilson_interval
from rlop.rlp.spg import PolicyAnnotator, SPGConfig, generate
from rlop.sandbox.gold import GoldAnnotator

PAPER = {"rlaif": 52, "reward": 56, "select-all": 55, "spg": 59}


class Remembered:
    """A judge and a reward that answer each question once: spg and select-all cluster and score
    the same samples, so the second variant reuses the first one's verdicts and rewards."""

    def __init__(self, judge, reward):
        self.judge, self.reward, self.verdicts, self.scores = judge, reward, {}, {}

    def equivalent(self, instruction, pairs):
        todo = [p for p in dict.fromkeys(pairs) if (instruction, *p) not in self.verdicts]
        for p, v in zip(todo, self.judge.equivalent(instruction, todo) if todo else []):
            self.verdicts[(instruction, *p)] = v
        return [self.verdicts[(instruction, *p)] for p in pairs]

    def score(self, examples, responses):
        keys = [(e.instruction, e.input, r) for e, r in zip(examples, responses)]
        example_of = dict(zip(keys, examples))
        fresh = [k for k in dict.fromkeys(keys) if k not in self.scores]
        if fresh:
            self.scores.update(zip(fresh, self.reward([example_of[k] for k in fresh], [k[2] for k in fresh])))
        return [self.scores[k] for k in keys]


def reward_model_of(run: Path) -> Path:
    return run / "rm" if (run / "rm").is_dir() else run.parent / "shared" / "rm"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--judge", default="embedding")
    ap.add_argument("--gamma", type=float, default=0.5)
    ap.add_argument("--variants", default=",".join(PAPER), help="comma-separated subset of " + ", ".join(PAPER))
    a = ap.parse_args()
    runs = [Path(d.split("=", 1)[0]) for d in a.run_dirs]
    sample_files = [Path(d.split("=", 1)[1]) if "=" in d else Path(d) / "samples" / "samples.jsonl" for d in a.run_dirs]
    judge, gold = make_judge(a.judge), GoldAnnotator()
    variants = [v for v in a.variants.split(",") if v]
    if not variants or set(variants) - set(PAPER):
        ap.error(f"--variants takes a comma-separated subset of {', '.join(PAPER)}")
    counts = {v: [0, 0, 0, 0] for v in variants}  # correct, judged, accepted instructions, instructions
    families: dict[str, list[int]] = {}  # SPG per task family: instructions, kept pairs, correct, judged
    sets_all = []
    for run, sample_file in zip(runs, sample_files):
        sets = load_samples(sample_file)
        sets_all += sets
        memo = Remembered(judge, RewardModelReward(reward_model_of(run)))
        for s in sets:
            families.setdefault(s.example.meta.get("family", "?"), [0, 0, 0, 0])[0] += 1
        for variant in variants:
            pj = PolicyAnnotator(str(run / "ppo" / "policy")) if variant == "rlaif" else None
            rows, st = generate(sets, SPGConfig(variant=variant, gamma=a.gamma, judge=a.judge), memo.score, memo, pj)
            for r in rows:
                chosen, rejected = (r["output_1"], r["output_2"]) if r["preference"] == 1 else (r["output_2"], r["output_1"])
                v = gold.prefer(r["spec"], chosen, rejected)
                fam = families.setdefault(r.get("family", "?"), [0, 0, 0, 0]) if variant == "spg" else [0, 0, 0, 0]
                fam[1] += 1
                if v != 0:
                    counts[variant][0] += v == 1
                    counts[variant][1] += 1
                    fam[2] += v == 1
                    fam[3] += 1
            counts[variant][2] += st["pairs"]
            counts[variant][3] += st["instructions"]
    print(f"{len(sets_all)} instructions x {len(sets_all[0].responses)} PPO samples from {len(runs)} run(s); judge={a.judge}, gamma={a.gamma}")
    print("| variant | gold accuracy of synthetic pairs | 95% CI | correct/pairs | acceptance | paper Pref. Acc. |\n|---|---|---|---|---|---|")
    for variant, (correct, total, kept, instructions) in counts.items():
        lo, hi = wilson_interval(correct, total)
        ci = f"{lo:.1%}-{hi:.1%}" if total else "n/a"
        acc = f"{correct / total:.1%}" if total else "n/a"
        print(f"| {variant} | {acc} | {ci} | {correct}/{total} | {kept / instructions:.1%} ({kept}/{instructions}) | {PAPER[variant]} |")
    if "spg" in counts:
        print("\nRLP-SPG per task family\n| family | instructions | kept pairs | gold agrees |\n|---|---|---|---|")
        for fam, (n_instr, kept, correct, judged) in sorted(families.items()):
            print(f"| {fam} | {n_instr} | {kept} | {f'{correct}/{judged}' if judged else 'n/a'} |")
    agree = n = 0
    aj = AnswerJudge()
    for s in sets_all:
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
