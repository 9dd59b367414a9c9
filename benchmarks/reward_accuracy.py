"""Held-out accuracy of a reward model trained on real human preferences.

Data: Anthropic HH-RLHF harmless-base test (../shared/data/hh_rlhf), converted to TRL
prompt/chosen/rejected records; the first N_TRAIN pairs (seeded shuffle) train the RM with
the ``cpu`` preset on SmolLM2-135M-Instruct, the next N_EVAL are held out.

    python benchmarks/reward_accuracy.py [--train 256] [--eval 200] [--max-length 256]

Prints the held-out accuracy with its count and a 95% Wilson interval.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

from rlop.config import build_config
from rlop.training.reward_trainer import RewardConfig, run_reward

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_rlhf" / "harmless_base_test.jsonl"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=256)
    ap.add_argument("--eval", type=int, default=200)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--data", default=str(DATA))
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.data)]
    rows = [r for r in rows if r.get("prompt") and r.get("chosen_response") and r.get("rejected_response") and r["chosen_response"] != r["rejected_response"]]
    random.Random(0).shuffle(rows)
    tmp = Path(tempfile.mkdtemp(prefix="rlop-bench-"))

    def dump(name, part):
        p = tmp / name
        with open(p, "w") as f:
            for r in part:
                f.write(json.dumps({"prompt": r["prompt"].strip(), "chosen": r["chosen_response"].strip(), "rejected": r["rejected_response"].strip()}) + "\n")
        return p

    train = dump("train.jsonl", rows[: a.train])
    ev = dump("eval.jsonl", rows[a.train : a.train + a.eval])
    cfg = build_config(RewardConfig, "cpu", overrides={"model": a.model, "train_file": str(train), "eval_file": str(ev), "max_length": a.max_length, "max_train_pairs": a.train})
    t0 = time.time()
    res = run_reward(cfg, tmp / "rm")
    k, n = round(res["eval_accuracy"] * res["eval_pairs"]), res["eval_pairs"]
    lo, hi = wilson(k, n)
    print(f"HH-RLHF harmless-base: trained on {res['train_pairs']} pairs ({res['steps']} steps, {time.time() - t0:.0f} s), "
          f"held-out accuracy {k}/{n} = {k / n:.3f} (95% CI {lo:.3f}-{hi:.3f})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
