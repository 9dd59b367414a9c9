#!/usr/bin/env bash
# Install rlop with its test extras into ./.venv and run the test suite:
# the default (fast) tests, then the end-to-end `slow` ones (rlop run on the tiny preset,
# kill-and-rerun). Measured on 2 CPU cores, clean clones: fast 11 min, slow 20 with the iteration test (2026-12-04, second run: 17 before it); 19.5 and 24 (2026-12-03). Arguments go to the first pytest run
# and the slow run is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
. .venv/bin/activate
python -m pytest -q "$@"
if [ "$#" -eq 0 ]; then
  python -m pytest -q -m slow
fi
