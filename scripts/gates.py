"""Small, committable figures of the RLP experiment's gates from a run folder (README, "The RLP gates").

    python scripts/gates.py a RUN --out results/gate-a   # the over-optimisation curve of step 3's PPO
    python scripts/gates.py b RUN [RUN ...] --out results/gate-b   # retrained RMs against their null arm, over the seeds
    python scripts/gates.py uml RUN [RUN ...] --out results/gate-b  # how rm-uml's training differed from its null arm's

Gate B's replicates may come from several runs (each arm's retraining on a different day): a
replicate's diagnostics are merged across them, and they must agree on every RM both scored.

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


RECORDS = ("results.json", "diagnostics.json", "report.md", "stages.json", "spg_confidence.png", "winrate.png")


def replicates(sources: list[Path]) -> dict[str, list[Path]]:
    """Each replicate's folders (``seed-N``, with its results.json) from run folders or from seed folders themselves:
    one replicate may come from several runs (say, SPG's arms on one day and OCRM's on another)."""
    found: dict[str, list[Path]] = {}
    for src in sources:
        dirs = [src] if (src / "results.json").exists() else sorted(d for d in src.glob("seed-*") if (d / "results.json").exists())
        if not dirs:
            raise SystemExit(f"gates.py: error: {src} holds no finished replicate (no results.json in it or in its seed-* folders)")
        for d in dirs:
            found.setdefault(d.name, []).append(d)
    return dict(sorted(found.items()))


def merged_diagnostics(dirs: list[Path]) -> dict:
    """One replicate's diagnostics from several runs. A reward model two runs both scored (the step-2 rm,
    a shared null) must have scored every pair alike, which holds only when the runs regenerated the same
    stages: otherwise the runs are not one replicate and this stops."""
    merged: dict = {}
    for d in dirs:
        diag = json.loads((d / "results.json").read_text())["diagnostics"]
        for key, value in diag.items():
            if key == "vs_null":
                for where, rows in value.items():
                    merged.setdefault("vs_null", {}).setdefault(where, {}).update(rows)
            elif isinstance(value, dict) and value and all(isinstance(v, dict) and "outcomes" in v for v in value.values()):
                rows = merged.setdefault(key, {})
                for name, st in value.items():
                    if name in rows and rows[name]["outcomes"] != st["outcomes"]:
                        raise SystemExit(f"gates.py: error: {d}: {name} scored the {key} pairs differently from {dirs[0]}; "
                                         "the two runs are not the same replicate")
                    rows[name] = st
            elif value is not None:
                merged.setdefault(key, value)
    return merged


def gate_b(sources: list[Path], out: Path, records: str = "") -> dict:
    from rlop.evaluation.compare import reward_model_table, spg_pairs_total

    reps = replicates(sources)
    diags = [merged_diagnostics(dirs) for dirs in reps.values()]
    rm_table = reward_model_table(diags)
    keep = ("diff", "ci_low", "ci_high", "pairs", "runs")
    stats = ("diff", "ci_low", "ci_high", "above_zero", "mdd", "null")
    table = {where: {name: {k: st.get(k) for k in keep} | {
        vs: {k: st[vs].get(k) for k in stats} if vs in st else None for vs in ("vs_rm", "vs_null")}
        for name, st in rows.items()} for where, rows in rm_table.items()}
    summary = {"replicates": list(reps), "sources": {seed: [str(d) for d in dirs] for seed, dirs in reps.items()},
               "reward_models": table, "spg_pairs": spg_pairs_total(diags),
               "uml_terms": [d.get("uml_terms") for d in diags], "ocrm_weights": [d.get("ocrm_weights") for d in diags]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gate-b.json").write_text(json.dumps(summary, indent=1))
    _forest(table.get("heldout_ppo_samples", {}), out / "gate-b.png", len(reps))
    if records:
        for (seed, dirs), diag in zip(reps.items(), diags):
            _keep_record(dirs, diag, out / records / seed)
    return summary


def _keep_record(dirs: list[Path], diag: dict, dest: Path) -> None:
    """One replicate's small files, to commit beside the summary. From several runs, results.json carries
    the merged diagnostics, stages.json and diagnostics.json's scorings the union of the runs' (the last run's
    other fields); report.md and the plots are the last run's. So a record read again as a source keeps
    every arm, also when a later run of the replicate had other methods."""
    merged: dict[str, dict] = {}
    for d in dirs:
        for name in ("results.json", "stages.json", "diagnostics.json"):
            if (d / name).exists():
                data = json.loads((d / name).read_text())
                if name == "diagnostics.json":
                    data["scored"] = merged.get(name, {}).get("scored", {}) | data.get("scored", {})
                merged[name] = merged.get(name, {}) | data
    if "results.json" in merged:
        merged["results.json"]["diagnostics"] = diag
    dest.mkdir(parents=True, exist_ok=True)
    for d in dirs:
        if d.resolve() == dest.resolve():
            continue
        for name in RECORDS:
            if (d / name).exists() and name not in merged:
                shutil.copy(d / name, dest / name)
    for name, data in merged.items():
        (dest / name).write_text(json.dumps(data, indent=1))


UML_TERMS = ("beta", "grad_norm", "bt_loss", "rep_loss", "mi_jsd", "skl", "train_accuracy")


def uml_training(sources: list[Path], out: Path, windows: int = 4) -> dict:
    """rm-uml's training beside rm-uml-null's, replicate by replicate, from their ``metrics.jsonl``.

    Both arms see the same pairs in the same order and compute the same views; the null's λ is 0, so its
    gradient norm is the ranking loss's alone. ``grad_norm`` is the norm before clipping of the reward
    model's and the UML heads' gradients together (the trainer clips them jointly to ``max_grad_norm``).
    Per window of steps (``windows`` equal parts): the mean of each term in UML_TERMS for both arms, the
    share of steps that were clipped, and UML's gradient norm over the null's."""
    found = {}
    for src in sources:
        for seed_dir in sorted(src.glob("seed-*")):
            arms = {arm: seed_dir / arm / "metrics.jsonl" for arm in ("rm-uml", "rm-uml-null")}
            if all(p.exists() for p in arms.values()):
                found[seed_dir.name] = arms
    if not found:
        raise SystemExit(f"gates.py: error: no seed-*/rm-uml and rm-uml-null metrics under {', '.join(map(str, sources))}")
    res: dict = {"windows": windows, "replicates": {}}
    series: dict = {}
    for seed, arms in found.items():
        rep = res["replicates"][seed] = {}
        for arm, path in arms.items():
            rows = [r for r in map(json.loads, path.read_text().splitlines()) if "grad_norm" in r and "bt_loss" in r]
            cfg = json.loads((path.parent / "rlop_config.json").read_text()) if (path.parent / "rlop_config.json").exists() else {}
            clip = cfg.get("max_grad_norm")
            bounds = [round(i * len(rows) / windows) for i in range(windows + 1)]
            parts = [rows[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
            rep[arm] = {"steps": len(rows), "max_grad_norm": clip, "windows": [
                {"steps": [part[0]["step"], part[-1]["step"]]}
                | {t: sum(r[t] for r in part) / len(part) for t in UML_TERMS if t in part[0]}
                | ({"clipped_share": sum(r["grad_norm"] > clip for r in part) / len(part)} if clip else {})
                for part in parts]}
            series.setdefault(arm, {})[seed] = [(r["step"], r["grad_norm"], r.get("beta")) for r in rows]
        rep["grad_norm_ratio"] = [u["grad_norm"] / n["grad_norm"] for u, n in zip(rep["rm-uml"]["windows"], rep["rm-uml-null"]["windows"])]
    out.mkdir(parents=True, exist_ok=True)
    (out / "uml-training.json").write_text(json.dumps(res, indent=1))
    _uml_plot(series, out / "uml-training.png")
    return res


def _uml_plot(series: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    beta_ax = ax.twinx()
    for arm, style in (("rm-uml", "-"), ("rm-uml-null", ":")):
        for i, (seed, rows) in enumerate(sorted(series.get(arm, {}).items())):
            ax.plot([r[0] for r in rows], [r[1] for r in rows], style, color=f"C{i}", label=f"{arm} {seed}")
    rows = next(iter(series.get("rm-uml", {}).values()), [])
    if rows and rows[0][2] is not None:
        beta_ax.plot([r[0] for r in rows], [r[2] for r in rows], color="grey", lw=0.8, ls="--", label="beta")
        beta_ax.set_ylabel("beta (dashed grey)")
    ax.set_yscale("log")
    ax.set_xlabel("reward-model training step")
    ax.set_ylabel("gradient norm before clipping\n(reward model and UML heads)")
    ax.set_title("rm-uml (solid) and its null arm, lambda = 0 (dotted)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _forest(rows: dict, path: Path, n_seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(n, st["vs_null"]) for n, st in rows.items() if st.get("vs_null") and st["vs_null"]["diff"] is not None]
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.5 * max(1, len(items))))
    for i, (name, st) in enumerate(items):
        ax.errorbar([st["diff"] * 100], [i], xerr=[[(st["diff"] - st["ci_low"]) * 100], [(st["ci_high"] - st["diff"]) * 100]], fmt="o", capsize=4)
    ax.set_yticks(range(len(items)), [f"{n} - {st['null'] if isinstance(st['null'], str) else '/'.join(st['null'])}"
                                      f" ({rows[n].get('runs') or n_seeds})" for n, st in items])
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("accuracy difference (points), gold-labelled pairs\nof the PPO policy's held-out samples")
    ax.set_title("Retrained RM minus its null arm (replicates in brackets)\n95% bootstrap CI over replicates, then pairs", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gate", choices=["a", "b", "uml"])
    p.add_argument("runs", type=Path, nargs="+", help="gate a: the run folder; gate b: run folders or replicate (seed-N) folders")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--records", default="", help="gate b: also copy each replicate's small files into OUT/RECORDS/seed-N")
    a = p.parse_args()
    if a.gate == "a":
        print(json.dumps(gate_a(a.runs[0], a.out)["summary"], indent=1))
    elif a.gate == "uml":
        res = uml_training(a.runs, a.out)
        print(json.dumps({seed: rep["grad_norm_ratio"] for seed, rep in res["replicates"].items()}, indent=1))
    else:
        print(json.dumps(gate_b(a.runs, a.out, a.records)["reward_models"].get("heldout_ppo_samples"), indent=1))


if __name__ == "__main__":
    main()
