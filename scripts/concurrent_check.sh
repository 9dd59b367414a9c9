#!/usr/bin/env bash
# Two copies of the multi-process tests at once, each from its own clone of this checkout's HEAD,
# as when two suites share a host: rendezvous ports, caches and output folders must not collide.
# Slow is fine (two copies on one CPU), wrong is not: the exit code is the number of copies that failed.
#   bash scripts/concurrent_check.sh [TEST_PATH...]   (default: the distributed tests; needs ./.venv)
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
. .venv/bin/activate
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/test_distributed.py tests/test_distributed_ppo.py)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pids=()
t0=$SECONDS
for i in 1 2; do
  git clone -q "$repo" "$work/c$i"
  # each copy imports its own clone's rlop (PYTHONPATH before the editable install)
  (cd "$work/c$i" && PYTHONPATH="$work/c$i/src" python -m pytest -q -p no:cacheprovider "${tests[@]}" > "$work/log$i" 2>&1) &
  pids+=($!)
done
failed=0
for i in 1 2; do
  wait "${pids[$((i - 1))]}" || failed=$((failed + 1))
  echo "copy $i: $(tail -n 1 "$work/log$i")"
done
echo "concurrent_check: 2 copies of ${tests[*]} in $((SECONDS - t0)) s, $failed failed"
[ $failed -eq 0 ] || { for i in 1 2; do echo "--- copy $i"; tail -n 40 "$work/log$i"; done; }
exit $failed
