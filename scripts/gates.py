"""Small, committable figures of the RLP experiment's gates from a run folder (README, "The RLP gates").

    python scripts/gates.py a RUN --out results/gate-a   # the over-optimisation curve of step 3's PPO
    python scripts/gates.py b RUN --out results/gate-b   # retrained RMs against their null arm, over the seeds

RUN is the folder of ``rlop run --preset overopt --seeds ... --shared-stages ...`` (its ``shared/``
and ``seed-S/`` folders). Each writes a JSON of the numbers and a PNG beside it; nothing else.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def gate_a(run: Path, out: Path) -> dict:
    curve_dir = run / "shared" / "overopt-ppo" if (run / "shared" / "overopt-ppo").exists() else run / "overopt-ppo"
    curve = json.loads((curve_dir / "curve.json").read_text())
    stage = json.loads((curve_dir.parent / "ppo" / "stage.json").read_text())
    metrics = [json.loads(line) for line in open(curve_dir.parent / "ppo" / "metrics.jsonl")]
    res = {"prompts": curve["prompts"], "samples": curve["samples"], "summary": curve["summary"],
           "points": [{k: v for k, v in p.items() if k != "example_texts"} for p in curve["points"]],
           "ppo": {k: stage["config"][k] for k in ("steps", "rollout_batch_size", "response_len", "kl_coef", "learning_rate", "snapshot_steps")},
           "precision": stage.get("precision"), "ppo_minutes": stage["seconds"] / 60,
           "ppo_batches": [{k: m.get(k) for k in ("step", "reward_mean", "gold_reward_mean", "kl", "response_length")} for m in metrics]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gate-a.json").write_text(json.dumps(res, indent=1))
    shutil.copy(curve_dir / "overopt.png", out / "gate-a.png")
    return res


def gate_b(run: Path, out: Path) -> dict:
    from rlop.evaluation.compare import compare

    seeds = sorted(d for d in run.glob("seed-*") if (d / "results.json").exists())
    res = compare(seeds)
    diags = [json.loads((d / "results.json").read_text())["diagnostics"] for d in seeds]
    table = {where: {name: {k: st[k] for k in ("diff", "ci_low", "ci_high", "pairs")} | {
        "vs_null": {k: st["vs_null"].get(k) for k in ("diff", "ci_low", "ci_high", "above_zero", "mdd", "null")} if "vs_null" in st else None}
        for name, st in rows.items()} for where, rows in res["reward_models"].items()}
    summary = {"seeds": [d.name for d in seeds], "reward_models": table, "spg_pairs": res.get("spg_pairs"),
               "uml_terms": [d.get("uml_terms") for d in diags], "ocrm_weights": [d.get("ocrm_weights") for d in diags]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gate-b.json").write_text(json.dumps(summary, indent=1))
    _forest(table.get("heldout_ppo_samples", {}), out / "gate-b.png", len(seeds))
    return summary


def _forest(rows: dict, path: Path, n_seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(n, st["vs_null"]) for n, st in rows.items() if st.get("vs_null") and st["vs_null"]["diff"] is not None]
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.5 * max(1, len(items))))
    for i, (name, st) in enumerate(items):
        ax.errorbar([st["diff"] * 100], [i], xerr=[[(st["diff"] - st["ci_low"]) * 100], [(st["ci_high"] - st["diff"]) * 100]], fmt="o", capsize=4)
    ax.set_yticks(range(len(items)), [f"{n} - {st['null'] if isinstance(st['null'], str) else '/'.join(st['null'])}" for n, st in items])
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("accuracy difference (points), gold-labelled pairs\nof the PPO policy's held-out samples")
    ax.set_title(f"Retrained RM minus its null arm ({n_seeds} replicate{'s' if n_seeds != 1 else ''}, 95% bootstrap CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gate", choices=["a", "b"])
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    res = (gate_a if a.gate == "a" else gate_b)(a.run, a.out)
    print(json.dumps(res["summary"] if a.gate == "a" else res["reward_models"].get("heldout_ppo_samples"), indent=1))


if __name__ == "__main__":
    main()
