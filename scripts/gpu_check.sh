#!/usr/bin/env bash
# The GPU check (one CUDA GPU, under 10 minutes), from a fresh clone:
#   1. the tiny PPO and backend tests with CUDA visible (models go to the GPU);
#   2. one cpu-preset PPO step of SmolLM2-135M in bf16 (its own SFT policy, a Python reward);
#   3. one PPO step on random 1B and 8B Llama models with LoRA and gradient checkpointing
#      (benchmarks/ppo_memory.py): seconds and peak GPU memory.
# Each part prints its own timing; the script stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || bash scripts/install.sh dev
. .venv/bin/activate
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0))"
t0=$SECONDS
python -m pytest -q -x tests/test_ppo.py tests/test_backend_contract.py  # the multi-process tests are CPU (gloo) tests: CI runs them
echo "gpu_check: tiny tests $((SECONDS - t0)) s"
t0=$SECONDS
out=$(mktemp -d)
python -m rlop.cli ppo --preset cpu --precision bf16 --policy builtin:smollm2-135m-instruct \
  --reward python:tests.helpers_rewards:letter_e --steps 1 --out "$out/ppo"
echo "gpu_check: cpu-preset PPO step in bf16 $((SECONDS - t0)) s"
t0=$SECONDS
python benchmarks/ppo_memory.py --sizes 1b,8b --scratch "$out/models"
echo "gpu_check: 1B and 8B PPO steps $((SECONDS - t0)) s"
rm -rf "$out"
