"""Seconds per PPO step and peak memory: rlop's PPO vs TRL 1.12's PPOTrainer, side by side.

Both run SmolLM2-135M-Instruct (policy and frozen reference) with a reward model and value
model made from the same backbone, on the same prompts (sandbox unlabeled, chat template),
with the cpu preset's shape: 16 rollouts per step, one mini-batch of 16, one PPO epoch,
48 new tokens, temperature 1.0. TRL 1.12 (the last TRL with PPO, under trl.experimental.ppo)
is installed by this script into its own virtual environment (benchmarks/.venv-trl).
Each framework runs in its own process; the first step is a warm-up and not timed. Each step is
split into its phases: generate (sampling the rollouts), score (reward, reference, policy and
value passes without gradients) and optimise (the rest: the PPO epochs); TRL's are timed by
wrapping the functions its loop calls (``batch_generation``; ``forward`` and ``get_reward`` outside
autograd).
rlop runs twice: in float32 (the like-for-like comparison with TRL, which runs float32 on
CPU) and, where the hardware runs bf16 natively, with bf16 autocast (its ``auto`` default); and
with ``--rollout-logprobs sampler``, which keeps the sampling step's log-probs as TRL does
instead of recomputing them with a policy pass as AlpacaFarm does (rlop's default).

    python benchmarks/ppo_speed.py [--steps 4]
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

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-trl"
BATCH, RESP, QUERY = 16, 48, 128

TRL_CHILD = textwrap.dedent('''
import json, resource, sys, time, torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
from trl.experimental.ppo import PPOConfig, PPOTrainer
model_dir, rm_dir, prompts_file, steps, batch, resp, out = sys.argv[1:8]
steps, batch, resp = int(steps), int(batch), int(resp)
tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
prompts = json.load(open(prompts_file))[: steps * batch]
ds = Dataset.from_dict({"input_ids": [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]})
policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
rm = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1, dtype=torch.float32)
value = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1, dtype=torch.float32)
import trl.experimental.ppo.ppo_trainer as P
phase, times = {"generate": 0.0, "score": 0.0}, []
def timed(fn, name):
    def wrapper(*args, **kw):
        t = time.perf_counter(); out = fn(*args, **kw)
        if name == "generate" or not torch.is_grad_enabled():
            phase[name] += time.perf_counter() - t
        return out
    return wrapper
P.batch_generation, P.forward, P.get_reward = timed(P.batch_generation, "generate"), timed(P.forward, "score"), timed(P.get_reward, "score")
class T(TrainerCallback):  # TRL's PPO loop fires on_train_begin and on_step_end only
    def on_train_begin(self, args, state, control, **kw): self.t = time.time()
    def on_step_end(self, args, state, control, **kw):
        now = time.time(); total = now - self.t; self.t = now
        times.append({"seconds": total, "generate": phase["generate"], "score": phase["score"],
                      "optimise": total - phase["generate"] - phase["score"]})
        phase.update(generate=0.0, score=0.0)
args = PPOConfig(output_dir="/tmp/trl-ppo-bench", per_device_train_batch_size=batch, gradient_accumulation_steps=1,
                 num_mini_batches=1, num_ppo_epochs=1, total_episodes=steps * batch, response_length=resp, stop_token="eos",
                 temperature=1.0, learning_rate=2e-5, kl_coef=0.0067, report_to=[], use_cpu=True, save_strategy="no",
                 num_sample_generations=0, local_rollout_forward_batch_size=batch, logging_steps=1, seed=42)
trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=ref, reward_model=rm, train_dataset=ds, value_model=value, callbacks=[T()])
t0 = time.time(); trainer.train(); total = time.time() - t0
json.dump({"step_seconds": times, "total": total, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(out, "w"))
''')

RLOP_CHILD = textwrap.dedent('''
import json, resource, sys, time
from rlop.config import build_config
from rlop.data.io import InstructionExample
from rlop.reward_functions import load_reward
from rlop.training.ppo import PPOConfig, PPOTrainer
model_dir, rm_dir, prompts_file, steps, batch, resp, out, logprobs = sys.argv[1:9]
steps, batch, resp = int(steps), int(batch), int(resp)
exs = [InstructionExample(**e) for e in json.load(open(prompts_file + ".examples"))]
cfg = build_config(PPOConfig, "cpu", overrides=dict(policy=model_dir, reward=rm_dir, steps=steps, rollout_batch_size=batch,
                   step_batch_size=batch, micro_batch_size=batch, noptepochs=1, response_len=resp, save_steps=10**6,
                   rollout_logprobs=logprobs))
times = []
tr = PPOTrainer(cfg, prompts=exs, out="/tmp/rlop-ppo-bench")
t0 = time.time()
tr.train(on_step=lambda s: times.append({"seconds": s["seconds"], "generate": s["seconds_generate"], "score": s["seconds_score"],
                                         "optimise": s["seconds_optimise"]}))
total = time.time() - t0
json.dump({"step_seconds": times, "total": total, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, open(out, "w"))
''')


def ensure_trl_venv() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "trl==1.12.0", "datasets", "accelerate"], check=True)
    return py


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    work = Path("/tmp/rlop-ppo-speed")
    model_dir, rm_dir, prompts = prepare(work, a.steps * BATCH, QUERY)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    results = {}
    from rlop.models.precision import native_bf16

    runs = [("rlop", sys.executable, RLOP_CHILD, "fp32", "recompute"), ("rlop --rollout-logprobs sampler", sys.executable, RLOP_CHILD, "fp32", "sampler"),
            ("trl-1.12", str(ensure_trl_venv()), TRL_CHILD, "fp32", "")]
    if native_bf16("cpu"):
        runs.append(("rlop-bf16", sys.executable, RLOP_CHILD, "bf16", "recompute"))
    for name, py, code, precision, logprobs in runs:
        out = work / f"{name.replace(' ', '_')}.json"
        subprocess.run([py, "-c", code, str(model_dir), str(rm_dir), str(prompts), str(a.steps), str(BATCH), str(RESP), str(out), logprobs],
                       check=True, env={**env, "RLOP_PRECISION": precision})
        results[name] = json.loads(out.read_text())
    print(f"PPO on SmolLM2-135M-Instruct, CPU ({os.cpu_count()} cores), {BATCH} rollouts/step, {RESP} new tokens, 1 epoch, {a.steps} steps (first = warm-up):")
    row = phase_table(results)
    ours, trl = row["rlop"], row["trl-1.12"]
    for name in ("rlop", "rlop --rollout-logprobs sampler"):
        print(ratio_line(f"{name} / TRL (fp32)", row[name], trl))
    if "rlop-bf16" in row:
        print(f"ratio rlop bf16 / rlop fp32: time {row['rlop-bf16']['seconds'] / ours['seconds']:.2f}x, "
              f"peak memory {row['rlop-bf16']['rss'] / ours['rss']:.2f}x")


if __name__ == "__main__":
    main()
