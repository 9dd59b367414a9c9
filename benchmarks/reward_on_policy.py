"""How well does a step-2 reward model rank what the policy actually writes?

Trains a reward model from a run's SFT model on its collected (noisy) preferences with the
``cpu`` preset plus the given overrides, then reports three accuracies:

* held-out, noisy labels (what ``rlop reward`` prints; ceiling 75% at 25% flips);
* held-out, gold labels (the same pairs relabelled by the sandbox gold score);
* on-policy: gold-labelled pairs of the PPO policy's own samples (``RUN/samples``).

    python benchmarks/reward_on_policy.py runs/default [--prefs FILE] [--learning-rate 2e-5] [--epochs 1]

Used to choose the ``cpu`` preset's reward-model settings (README, "Choosing the defaults").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rlop.config import build_config
from rlop.data.io import load_preferences
from rlop.evaluation.diagnostics import gold_pairs_from_preferences, gold_pairs_from_samples, reward_accuracy
from rlop.reward_functions import RewardModelReward
from rlop.training.reward_data import split_holdout
from rlop.training.reward_trainer import RewardConfig, run_reward


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--prefs", help="preference JSONL with sandbox specs (default RUN/collect/preferences.jsonl)")
    ap.add_argument("--samples", help="policy samples JSONL (default RUN/samples/samples.jsonl)")
    ap.add_argument("--learning-rate", type=float)
    ap.add_argument("--epochs", type=float)
    ap.add_argument("--eval-holdout", type=int)
    ap.add_argument("--keep", type=Path, help="save the trained reward model here instead of discarding it")
    args = ap.parse_args()
    prefs = args.prefs or str(args.run / "collect" / "preferences.jsonl")
    samples = args.samples or str(args.run / "samples" / "samples.jsonl")
    overrides = {"model": str(args.run / "sft"), "train_file": prefs, "max_train_pairs": 0}
    for k in ("learning_rate", "epochs", "eval_holdout"):
        if getattr(args, k) is not None:
            overrides[k] = getattr(args, k)
    cfg = build_config(RewardConfig, "cpu", overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or Path(tmp) / "rm"
        t = time.time()
        result = run_reward(cfg, where)
        seconds = time.time() - t
        reward = RewardModelReward(where)
        _, held_out = split_holdout(load_preferences(prefs), cfg.eval_holdout, cfg.seed)
        gold_held = gold_pairs_from_preferences(held_out)
        on_policy = gold_pairs_from_samples(samples)
        rows = [
            ("held-out, noisy labels", result["eval_accuracy"], result["eval_pairs"]),
            ("held-out, gold labels", reward_accuracy(reward, gold_held), len(gold_held)),
            ("on-policy, gold labels", reward_accuracy(reward, on_policy), len(on_policy)),
        ]
    print(f"reward model: lr {cfg.learning_rate}, epochs {cfg.epochs}, {result['train_pairs']} train pairs, "
          f"{result['steps']} steps, {seconds:.0f} s")
    for name, acc, n in rows:
        print(f"  {name:<24} {100 * acc:5.1f}%  (n = {n})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
