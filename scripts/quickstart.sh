#!/usr/bin/env bash
# Install rlop into ./.venv and run the main job (rlop run on the embedded default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
rlop run "$@"
