"""Deliberate breaks of the implementation, each run against the tests that should catch it.

    python scripts/mutants.py [--only NAME ...] [--json results/mutants.json]

Each mutant replaces one exact piece of source text, runs the named tests, and puts the file
back byte for byte (also on Ctrl-C). A mutant the tests do not catch is reported as SURVIVED (ERROR when
the tests could not run at all) and the script exits 1. The tests run with the repository's own interpreter; run it alone on the
machine (each mutant is one pytest process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "rlop"

# name: (file under src/rlop, exact text, replacement, tests that must fail)
MUTANTS = {
    "kl_sign_flipped": ("training/losses.py", "    d = logp - ref_logp\n", "    d = ref_logp - logp\n", ["tests/test_losses.py"]),
    "advantages_whitened_without_mean_shift": (
        "training/losses.py", '"advantages": whiten(adv, mask, shift_mean=True', '"advantages": whiten(adv, mask, shift_mean=False',
        ["tests/test_losses.py"]),
    "rewards_whitened_with_mean_shift": (
        "training/losses.py", "rewards = whiten(rewards, mask, shift_mean=False", "rewards = whiten(rewards, mask, shift_mean=True",
        ["tests/test_losses.py"]),
    "optimistic_clip": ("training/losses.py", "loss = masked_mean(torch.maximum(loss1, loss2), mask)",
                        "loss = masked_mean(torch.minimum(loss1, loss2), mask)", ["tests/test_losses.py"]),
    "mib_positives_and_negatives_swapped": (
        "training/losses.py", "return (-F.softplus(-t_pos)).mean() - F.softplus(t_neg).mean()",
        "return (-F.softplus(-t_neg)).mean() - F.softplus(t_pos).mean()", ["tests/test_losses.py"]),
    "bradley_terry_ignores_weights": (
        "training/losses.py", "else (loss * weights.to(loss.dtype)).mean()", "else loss.mean()", ["tests/test_losses.py", "tests/test_gates.py"]),
    "ocrm_plain_ratio_despite_alpha": ("rlp/ocrm.py", "    if alpha <= 0:\n        return logp_policy - logp_ref\n",
                                       "    if True:\n        return logp_policy - logp_ref\n", ["tests/test_gates.py"]),
    "matched_order_reshuffles_d": ("training/reward_data.py", "base = epoch_order(n_human, max(int(n_human * epochs), global_bs) // global_bs * global_bs, seed)",
                                   "base = epoch_order(n_human, max(int(n_human * epochs), global_bs) // global_bs * global_bs, seed + n_extra)",
                                   ["tests/test_gates.py"]),
    "placebo_on_other_instructions": ("rlp/spg.py", "        s = by_prompt[(k[\"instruction\"], k.get(\"input\", \"\"))]\n",
                                      "        s = sets[n % len(sets)]\n", ["tests/test_gates.py"]),
    "resume_restarts_from_step_0": ("training/ppo.py", "if resume and (ck := self.latest_checkpoint()) is not None:",
                                    "if False and (ck := self.latest_checkpoint()) is not None:",
                                    ["tests/test_ppo.py::test_kill_and_resume_matches_uninterrupted"]),
}


def run_one(name: str) -> dict:
    rel, old, new, tests = MUTANTS[name]
    path = SRC / rel
    original = path.read_bytes()
    text = original.decode()
    if text.count(old) != 1:
        return {"mutant": name, "status": "STALE", "why": f"the text to break occurs {text.count(old)} times in {rel}"}
    t0 = time.time()
    try:
        path.write_text(text.replace(old, new))
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                           cwd=REPO, capture_output=True, text=True)
    finally:
        path.write_bytes(original)
    failed = [ln.split(" ")[1] for ln in r.stdout.splitlines() if ln.startswith("FAILED ")]
    # CAUGHT only by a test that ran and failed: a collection or import error proves nothing
    return {"mutant": name, "file": rel, "tests": tests, "status": "CAUGHT" if r.returncode == 1 and failed else "SURVIVED" if r.returncode == 0 else "ERROR",
            "failed": failed, "seconds": round(time.time() - t0, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=sorted(MUTANTS), help="run only these mutants")
    p.add_argument("--json", type=Path, help="write the results here")
    a = p.parse_args()
    results = []
    for name in a.only or MUTANTS:
        res = run_one(name)
        results.append(res)
        print(f"{res['status']:9} {name}: {', '.join(res.get('failed') or [res.get('why', '')])}", flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if all(r["status"] == "CAUGHT" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
