"""Seconds per step and peak memory of the critic-free optimisers: rlop's ``rloo`` and ``grpo``
against TRL 1.16's ``RLOOTrainer`` and ``GRPOTrainer``, and rlop's ``gae`` (PPO) on the same shapes,
side by side in one run.

Every framework runs SmolLM2-135M-Instruct as the policy and its frozen reference, and a reward
model made from the same backbone (a seeded random head), on the same prompts (sandbox unlabeled,
chat template) with the same shape: 4 prompts x k = 4 samples = 16 rollouts per step, 48 new
tokens at temperature 1.0, one optimisation epoch over one mini-batch of 16, KL coefficient 0.05
(RLOO: in the reward, as a sequence sum; GRPO: in the loss, the k3 estimate, as TRL does),
float32 (TRL runs float32 on a CPU), and gradient checkpointing on both sides: on by default, as
TRL 1.16's ``RLOOConfig`` and ``GRPOConfig`` default to it (``--gradient-checkpointing off`` turns it
off on both sides). TRL 1.16 is rlop's own dependency, so it runs from rlop's
venv. Each run is its own process; the first step is a warm-up and not timed. Phases: generate
(sampling), score (reward, reference and old-policy passes without gradients), optimise (the
rest). TRL's are timed by wrapping ``_generate`` and ``_generate_and_score_completions``.
rlop ``rloo`` runs twice: with its default ``--rollout-logprobs recompute`` (a policy pass over the
rollouts, AlpacaFarm's way) and with ``sampler`` (the sampling step's log-probs, as TRL does when
each generation is optimised once).

    python benchmarks/rloo_speed.py [--steps 4] [--only rloo|grpo] [--gradient-checkpointing on|off]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from speed_setup import phase_table, prepare, ratio_line

K, PROMPTS, RESP, QUERY, KL = 4, 4, 48, 128, 0.05
BATCH = K * PROMPTS

TRL_CHILD = textwrap.dedent('''
import json, resource, sys, time, torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
kind, model_dir, rm_dir, prompts_file, steps, k, batch, resp, beta, out, gc = sys.argv[1:12]
steps, k, batch, resp, beta = int(steps), int(k), int(batch), int(resp), float(beta)
if kind == "rloo":
    from trl import RLOOConfig as Config, RLOOTrainer as Trainer
else:
    from trl import GRPOConfig as Config, GRPOTrainer as Trainer
tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
prompts = json.load(open(prompts_file))[: steps * batch // k]
ds = Dataset.from_dict({"prompt": prompts})
policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
rm = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1, dtype=torch.float32)
phase, times = {"generate": 0.0, "rollout": 0.0}, []
def timed(fn, name):
    def wrapper(*args, **kw):
        t = time.perf_counter(); res = fn(*args, **kw); phase[name] += time.perf_counter() - t
        return res
    return wrapper
Trainer._generate = timed(Trainer._generate, "generate")
Trainer._generate_and_score_completions = timed(Trainer._generate_and_score_completions, "rollout")
class T(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw): self.t = time.time()
    def on_step_end(self, args, state, control, **kw):
        total = time.time() - self.t
        times.append({"seconds": total, "generate": phase["generate"], "score": phase["rollout"] - phase["generate"],
                      "optimise": total - phase["rollout"]})
        phase.update(generate=0.0, rollout=0.0)
args = Config(output_dir="/tmp/trl-rloo-bench", per_device_train_batch_size=batch, gradient_accumulation_steps=1, num_generations=k,
              steps_per_generation=1, num_iterations=1, max_completion_length=resp, temperature=1.0, beta=beta, learning_rate=1e-6,
              max_steps=steps, report_to=[], use_cpu=True, bf16=False, save_strategy="no", logging_steps=1, seed=42,
              shuffle_dataset=False, disable_dropout=True, gradient_checkpointing=gc == "on")
trainer = Trainer(model=policy, reward_funcs=rm, args=args, train_dataset=ds, processing_class=tok, reward_processing_classes=tok,
                  callbacks=[T()])
t0 = time.time(); trainer.train(); total = time.time() - t0
json.dump({"step_seconds": times, "total": total, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(out, "w"))
''')

RLOP_CHILD = textwrap.dedent('''
import json, resource, sys, time
from rlop.config import build_config
from rlop.data.io import InstructionExample
from rlop.training.ppo import PPOConfig, PPOTrainer
estimator, model_dir, rm_dir, prompts_file, steps, k, batch, resp, beta, out, gc = sys.argv[1:12]
estimator, _, logprobs = estimator.partition("+")  # rloo+sampler: keep the sampling step's log-probs
steps, k, batch, resp, beta = int(steps), int(k), int(batch), int(resp), float(beta)
exs = [InstructionExample(**e) for e in json.load(open(prompts_file + ".examples"))]
cfg = build_config(PPOConfig, "cpu", overrides=dict(policy=model_dir, reward=rm_dir, steps=steps, rollout_batch_size=batch,
                   step_batch_size=batch, micro_batch_size=batch, noptepochs=1, response_len=resp, save_steps=10**6,
                   advantage_estimator=estimator, samples_per_prompt=k, kl_coef=beta,
                   kl_penalty="loss" if estimator == "grpo" else "reward", rollout_logprobs=logprobs or "recompute", gradient_checkpointing=gc == "on"))
times = []
tr = PPOTrainer(cfg, prompts=exs, out="/tmp/rlop-rloo-bench")
t0 = time.time()
tr.train(on_step=lambda s: times.append({"seconds": s["seconds"], "generate": s["seconds_generate"], "score": s["seconds_score"],
                                         "optimise": s["seconds_optimise"]}))
total = time.time() - t0
json.dump({"step_seconds": times, "total": total, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(out, "w"))
''')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--only", choices=("rloo", "grpo"), help="one optimiser only (default: both, and gae)")
    ap.add_argument("--gradient-checkpointing", choices=("on", "off"), default="on",
                    help="recompute activations in the backward pass, on both sides (default on: TRL 1.16's default)")
    ap.add_argument("--json", help="also write the table's rows to this file")
    a = ap.parse_args()
    work = Path("/tmp/rlop-rloo-speed")
    model_dir, rm_dir, prompts = prepare(work, a.steps * PROMPTS, QUERY)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "RLOP_PRECISION": "fp32"}
    kinds = [a.only] if a.only else ["rloo", "grpo"]
    runs = [(f"rlop {kind}", RLOP_CHILD, kind) for kind in kinds] + [(f"trl-1.16 {kind}", TRL_CHILD, kind) for kind in kinds]
    if "rloo" in kinds:  # like TRL with one iteration per generation: no policy pass to recompute the rollout log-probs
        runs.insert(1, ("rlop rloo --rollout-logprobs sampler", RLOP_CHILD, "rloo+sampler"))
    if not a.only:
        runs.append(("rlop gae", RLOP_CHILD, "gae"))
    results = {}
    for name, code, kind in runs:
        out = work / f"{name.replace(' ', '_')}.json"
        print(f"running {name} ...", flush=True)
        subprocess.run([sys.executable, "-c", code, kind, str(model_dir), str(rm_dir), str(prompts), str(a.steps), str(K), str(BATCH),
                        str(RESP), str(KL), str(out), a.gradient_checkpointing], check=True, env=env, timeout=3600)
        results[name] = json.loads(out.read_text())
    print(f"\nSmolLM2-135M-Instruct, CPU ({os.cpu_count()} cores), float32, {PROMPTS} prompts x {K} samples = {BATCH} rollouts/step, "
          f"{RESP} new tokens, 1 epoch, {a.steps} steps (first = warm-up), gradient checkpointing {a.gradient_checkpointing}:")
    row = phase_table(results)
    for kind in kinds:
        print(ratio_line(f"rlop {kind} / TRL {kind}", row[f"rlop {kind}"], row[f"trl-1.16 {kind}"]))
    if "rloo" in kinds:
        print(ratio_line("rlop rloo --rollout-logprobs sampler / TRL rloo", row["rlop rloo --rollout-logprobs sampler"], row["trl-1.16 rloo"]))
    if "rlop gae" in row:
        print(f"ratio rlop rloo / rlop gae: time {row['rlop rloo']['seconds'] / row['rlop gae']['seconds']:.2f}x, "
              f"peak memory {row['rlop rloo']['rss'] / row['rlop gae']['rss']:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"shape": {"prompts": PROMPTS, "k": K, "response_len": RESP, "kl": KL, "steps": a.steps,
                                                      "gradient_checkpointing": a.gradient_checkpointing},
                                            "rows": row}, indent=1) + "\n")


if __name__ == "__main__":
    main()
