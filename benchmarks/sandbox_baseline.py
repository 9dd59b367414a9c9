"""How hard is the sandbox for SmolLM2-135M-Instruct? Gold success and self-consistency.

Samples ``--samples`` responses (temperature 0.7, top_p 0.9) per eval instruction from the
base model, then prints per family and overall the gold success rate over all samples
(with counts), and per kind the fraction of instructions whose largest answer cluster holds
at least half of the samples (``answer`` judge for definite tasks, ``embedding`` judge for
open tasks): the self-consistency signal RLP-SPG relies on.

    python benchmarks/sandbox_baseline.py [--per-family 5] [--samples 10] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from rlop.data.io import load_instructions
from rlop.models.generation import SamplingConfig
from rlop.rlp.judges import make_judge
from rlop.models.sampling import sample_responses
from rlop.rlp.spg import cluster
from rlop.sandbox.gold import gold_success


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--per-family", type=int, default=5)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    a = ap.parse_args()
    exs = load_instructions("sandbox:eval")
    by_fam: dict[str, list] = defaultdict(list)
    for e in exs:
        if len(by_fam[e.meta["family"]]) < a.per_family:
            by_fam[e.meta["family"]].append(e)
    chosen = [e for f in sorted(by_fam) for e in by_fam[f]]
    t0 = time.time()
    sets = sample_responses(a.model, chosen, a.samples, SamplingConfig(a.max_new_tokens, 0.7, 0.9, 0, True, 40), seed=0)
    gen_s = time.time() - t0
    judges = {"answer": make_judge("answer"), "open": make_judge("embedding")}
    fam_ok: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    kind_cons: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in sets:
        fam, kind, spec = s.example.meta["family"], s.example.meta["kind"], s.example.meta["spec"]
        ok = sum(gold_success(spec, r) for r in s.responses)
        fam_ok[fam][0] += ok
        fam_ok[fam][1] += len(s.responses)
        top = max(len(c) for c in cluster(s.example.instruction, s.responses, judges[kind]))
        kind_cons[kind][0] += top * 2 >= len(s.responses)
        kind_cons[kind][1] += 1
    print(f"SmolLM2-135M-Instruct on the sandbox eval split: {len(sets)} instructions x {a.samples} samples, "
          f"temperature 0.7, top_p 0.9, {a.max_new_tokens} new tokens ({gen_s:.0f} s sampling)")
    print("| family | kind | gold success | count |\n|---|---|---|---|")
    tot = [0, 0]
    for fam in sorted(fam_ok):
        k, n = fam_ok[fam]
        tot[0] += k
        tot[1] += n
        print(f"| {fam} | {by_fam[fam][0].meta['kind']} | {k / n:.1%} | {k}/{n} |")
    print(f"| **overall** | | **{tot[0] / tot[1]:.1%}** | {tot[0]}/{tot[1]} |")
    for kind, (k, n) in sorted(kind_cons.items()):
        print(f"self-consistency ({kind}): largest cluster >= half of the samples for {k}/{n} instructions = {k / n:.1%}")


if __name__ == "__main__":
    main()
