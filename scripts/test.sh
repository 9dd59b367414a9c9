#!/usr/bin/env bash
# Install rlop with its test extras into ./.venv and run the default test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
. .venv/bin/activate
python -m pytest -q "$@"
