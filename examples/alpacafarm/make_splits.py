"""Write the AlpacaFarm-style recipe's data files from the public files under ../shared/data.

Nothing is copied into the repository: the splits go to OUT (default examples/alpacafarm/data,
which git ignores). Alpaca instructions are split in the paper's Table 1 proportions
(SFT 10k : preference 10k : unlabeled 20k : validation 2k, i.e. 5 : 5 : 10 : 1) after a seeded
shuffle; AlpacaEval's 805 instructions with the text-davinci-003 references are the eval set.

    python examples/alpacafarm/make_splits.py [--shared ../shared/data] [--out examples/alpacafarm/data]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROPORTIONS = {"sft": 5, "preference": 5, "unlabeled": 10, "val": 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(HERE.parents[2] / "shared" / "data"))
    ap.add_argument("--out", default=str(HERE / "data"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    shared, out = Path(a.shared), Path(a.out)
    rows = [json.loads(l) for l in (shared / "alpaca" / "alpaca_5000.jsonl").read_text().splitlines() if l.strip()]
    random.Random(a.seed).shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    total, start = sum(PROPORTIONS.values()), 0
    for i, (name, share) in enumerate(PROPORTIONS.items()):
        n = len(rows) - start if i == len(PROPORTIONS) - 1 else len(rows) * share // total
        keep = ("instruction", "input", "output") if name == "sft" else ("instruction", "input")
        (out / f"{name}.jsonl").write_text("".join(json.dumps({k: r[k] for k in keep}) + "\n" for r in rows[start : start + n]))
        print(f"{name}: {n} instructions")
        start += n
    ev = [json.loads(l) for l in (shared / "alpaca_eval" / "alpaca_eval_805.jsonl").read_text().splitlines() if l.strip()]
    (out / "eval.jsonl").write_text("".join(json.dumps({"instruction": r["alpacafarm_instruction"], "input": r["alpacafarm_input"],
                                                         "output": r["reference_output"], "dataset": r["dataset"]}) + "\n" for r in ev))
    print(f"eval: {len(ev)} instructions with text-davinci-003 references")


if __name__ == "__main__":
    main()
