"""How well a reward model trained by rlop agrees with GPT-4's AlpacaEval verdicts (``rlop agreement``).

Data: the AlpacaEval-v1 GPT-4 annotations under ../shared/data/alpaca_eval (six models' outputs,
each against the text-davinci-003 reference, with GPT-4's verdict). Split by instruction so no
instruction is in both parts: pairs whose instruction id is below --split-id train the reward
model (``rlop reward``, cpu preset, SmolLM2-135M-Instruct; draws left out); the pairs of the
other instructions, from all six files, are held out and judged by the trained reward model.
The held-out pairs are shuffled (seed 0) before --eval-pairs of them are kept, so every model
is represented.

    python benchmarks/annotator_agreement.py [--train 192] [--eval-pairs 300] [--max-length 192] [--out DIR]

With --out the reward model is kept in DIR/rm (examples/alpacafarm/recipe-reward.yaml judges with
runs/af-judge/rm); without it, everything goes to a temporary folder.

Prints the agreement with GPT-4 and the position statistics, with 95% bootstrap intervals.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from rlop.config import build_config
from rlop.evaluation.agreement import AgreementConfig, run_agreement, summary
from rlop.training.reward_trainer import RewardConfig, run_reward

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval" / "annotations_alpaca_eval_gpt4"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=192, help="training pairs (from instructions with id < --split-id)")
    ap.add_argument("--eval-pairs", type=int, default=300, help="held-out pairs judged by the reward model")
    ap.add_argument("--split-id", type=int, default=600)
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--out", default="", help="keep the pair files, the reward model (OUT/rm) and the agreement here; must not exist")
    a = ap.parse_args()
    if a.out and Path(a.out).exists():
        raise SystemExit(f"rlop: error: --out {a.out} exists; choose a new folder")
    rows = []
    for f in sorted(DATA.glob("*_vs_text_davinci_003.jsonl")):
        for line in f.open():
            r = json.loads(line)
            rows.append({"instruction": r["instruction"], "input": "", "output_1": r["output_1"], "output_2": r["output_2"],
                         "preference": r["preference"], "id": r["id"], "generator_2": r.get("generator_2", f.name.split("_vs_")[0])})
    rng = random.Random(0)
    train = [r for r in rows if r["id"] < a.split_id and r["preference"] in (1, 2) and r["output_1"] != r["output_2"]]
    held = [r for r in rows if r["id"] >= a.split_id]
    rng.shuffle(train)
    rng.shuffle(held)
    tmp = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="rlop-agreement-"))
    tmp.mkdir(parents=True, exist_ok=not a.out)
    (tmp / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train[: a.train]))
    (tmp / "held.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held[: a.eval_pairs]))
    t0 = time.time()
    cfg = build_config(RewardConfig, "cpu", overrides={"model": a.model, "train_file": str(tmp / "train.jsonl"), "max_train_pairs": a.train,
                                                       "eval_holdout": 0, "max_length": a.max_length})
    run_reward(cfg, tmp / "rm")
    trained = time.time() - t0
    t0 = time.time()
    res = run_agreement(build_config(AgreementConfig, overrides={"pairs_file": str(tmp / "held.jsonl"), "annotator": "reward",
                                                                 "reward_model": str(tmp / "rm")}), tmp / "agreement")
    print(json.dumps({"train_pairs": a.train, "held_out_pairs": a.eval_pairs, "max_length": a.max_length, "train_seconds": round(trained),
                      "judge_seconds": round(time.time() - t0), **res}, indent=2))
    gpt4_second = sum(r["preference"] == 2 for r in held[: a.eval_pairs] if r["preference"] in (1, 2))
    labelled = sum(r["preference"] in (1, 2) for r in held[: a.eval_pairs])
    print(f"GPT-4 picked the model's output (output_2) in {gpt4_second}/{labelled} held-out pairs (an 'always output_2' judge agrees that often)")
    print(summary(res))


if __name__ == "__main__":
    main()
