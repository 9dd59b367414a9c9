"""One method of two rlop run folders, compared on the same eval instructions: win-rates and the
paired difference B - A with its bootstrap 95% CI and minimal detectable difference.

For runs that differ in one setting (e.g. steps 3 and 5 with ``gae`` and with ``rloo`` from the
same SFT and reward model), where ``rlop compare`` would pool them as seeds of one method:

    python scripts/paired_runs.py runs/gae runs/rloo --method ppo --labels gae,rloo [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlop.errors import UserError
from rlop.evaluation.compare import load_runs
from rlop.evaluation.paired import paired_bootstrap


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--method", default="ppo")
    ap.add_argument("--labels", default="A,B", help="names of the two runs, comma-separated")
    ap.add_argument("--json")
    a = ap.parse_args()
    la, lb = a.labels.split(",")
    try:
        scores = [load_runs([d])[0] for d in (a.run_a, a.run_b)]
    except UserError as e:
        print(f"paired_runs: error: {e}", file=sys.stderr)
        return 2
    if any(a.method not in s for s in scores):
        print(f"paired_runs: error: method {a.method!r} is not in both runs", file=sys.stderr)
        return 2
    sa, sb = scores[0][a.method][0], scores[1][a.method][0]
    if len(sa) != len(sb):
        print(f"paired_runs: error: the runs evaluated different numbers of instructions ({len(sa)}, {len(sb)})", file=sys.stderr)
        return 2
    rate = {lab: 100 * sum(x for x in s if x is not None) / sum(x is not None for x in s) for lab, s in ((la, sa), (lb, sb))}
    d = {k: (100 * v if isinstance(v, float) and k not in ("above_zero",) else v) for k, v in paired_bootstrap([sb], [sa]).items()}
    res = {"method": a.method, "runs": {la: a.run_a, lb: a.run_b}, "win_rate": rate, f"{lb} - {la}": d}
    print(f"{a.method} win-rate: {la} {rate[la]:.1f}%, {lb} {rate[lb]:.1f}% (n = {d['n']})")
    print(f"{lb} - {la}: {d['diff']:+.1f} points, 95% CI {d['ci_low']:+.1f} to {d['ci_high']:+.1f}, "
          f"share of resamples > 0 {d['above_zero']:.2f}, detectable (80% power) {d['mdd']:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
