"""``rlop compare RUN_DIR...``: several ``rlop run`` folders (e.g. seeds) in one table.

Every run must have evaluated the same instructions (same eval set and size). Each method's
win-rate and its paired differences against PPO and SFT are bootstrapped over runs, then
over instructions (:mod:`rlop.evaluation.paired`). Writes ``compare.json``, ``compare.md``
and ``compare_forest.png`` (the differences with their intervals) into ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlop.evaluation.paired import paired_bootstrap, paired_table
from rlop.outputs import OutputError, read_marker, staged


def load_runs(run_dirs: list[str | Path]) -> tuple[dict[str, list[list[float | None]]], list[dict[str, Any]]]:
    """Per-method score lists (one per run) of the methods every run has, and each run's config."""
    results, configs = [], []
    for d in map(Path, run_dirs):
        marker = read_marker(d) if d.is_dir() else None
        if marker is None or marker.get("kind") != "run" or not (d / "results.json").exists():
            raise OutputError(f"{d}: not a finished rlop run folder (no results.json written by rlop run)")
        res = json.loads((d / "results.json").read_text())
        if any("scores" not in r for r in res["methods"].values()):
            raise OutputError(f"{d}: results.json has no per-instruction scores (written by an older rlop); rerun rlop run there")
        results.append(res)
        configs.append(json.loads((d / "run_config.json").read_text()) if (d / "run_config.json").exists() else {})
    methods = [m for m in results[0]["methods"] if all(m in r["methods"] for r in results)]
    sizes = {len(r["methods"][m]["scores"]) for r in results for m in methods}
    if len(sizes) != 1:
        raise OutputError(f"the runs evaluated different numbers of instructions ({sorted(sizes)}); compare runs of one eval set")
    return {m: [r["methods"][m]["scores"] for r in results] for m in methods}, configs


def compare(run_dirs: list[str | Path], seed: int = 0) -> dict[str, Any]:
    scores, configs = load_runs(run_dirs)
    win_rates = {m: paired_bootstrap(runs, [[0.0] * len(s) for s in runs], seed=seed) for m, runs in scores.items()}
    return {"runs": [str(d) for d in run_dirs], "seeds": [c.get("seed") for c in configs], "win_rate": win_rates,
            "paired": paired_table(scores, seed=seed)}


def markdown(res: dict[str, Any]) -> str:
    pct = lambda v: "n/a" if v is None else f"{v * 100:.1f}"  # noqa: E731
    lines = [f"# rlop compare: {len(res['runs'])} runs (seeds {res['seeds']})", "",
             "Win-rate per method, bootstrapped over runs, then instructions:", "",
             "| method | win-rate % | 95% CI | instructions |", "|---|---|---|---|"]
    lines += [f"| {m} | {pct(r['diff'])} | {pct(r['ci_low'])}-{pct(r['ci_high'])} | {r['n']} |" for m, r in res["win_rate"].items()]
    lines += ["", "Paired differences (same instructions and seeds):", "",
              "| method | vs | difference (points) | 95% CI | share of resamples > 0 | detectable (80% power) |", "|---|---|---|---|---|---|"]
    for m, row in res["paired"].items():
        for vs, st in row.items():
            if st["diff"] is not None:
                lines.append(f"| {m} | {vs[3:]} | {st['diff'] * 100:+.1f} | {st['ci_low'] * 100:+.1f} to {st['ci_high'] * 100:+.1f} | {st['above_zero']:.2f} | {st['mdd'] * 100:.1f} |")
    return "\n".join(lines) + "\n"


def forest_plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{m} vs {vs[3:]}", st) for m, row in res["paired"].items() for vs, st in row.items() if st["diff"] is not None]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(rows) + 1.2))
    for i, (label, st) in enumerate(rows):
        ax.errorbar(st["diff"] * 100, i, xerr=[[(st["diff"] - st["ci_low"]) * 100], [(st["ci_high"] - st["diff"]) * 100]], fmt="o", color="#4c72b0", capsize=3)
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.set_xlabel("paired win-rate difference (points), 95% CI")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_compare(run_dirs: list[str | Path], out: str | Path, seed: int = 0) -> dict[str, Any]:
    res = compare(run_dirs, seed)
    with staged(out, "compare") as tmp:
        (tmp / "compare.json").write_text(json.dumps(res, indent=2, allow_nan=False))
        (tmp / "compare.md").write_text(markdown(res))
        forest_plot(res, tmp / "compare_forest.png")
    return res
