"""``rlop compare RUN_DIR...``: several ``rlop run`` folders (e.g. seeds) in one table.

Every run must have evaluated the same instructions (same eval set and size). Each method's
win-rate and its paired differences against PPO and SFT are bootstrapped over runs, then
over instructions (:mod:`rlop.evaluation.paired`). Writes ``compare.json``, ``compare.md``
and ``compare_forest.png`` (the differences with their intervals) into ``--out``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rlop.evaluation.paired import paired_bootstrap, paired_table
from rlop.outputs import OutputError, read_marker, staged
from rlop.utils import atomic_write_text


COMPARE_ENTRIES = ("compare.json", "compare.md", "compare_forest.png")


def load_runs(run_dirs: list[str | Path]) -> tuple[dict[str, list[list[float | None]]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-method score lists (one per run) of the methods every run has, each run's config, and each run's diagnostics."""
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
    return {m: [r["methods"][m]["scores"] for r in results] for m in methods}, configs, [r.get("diagnostics", {}) for r in results]


def _mean_of(runs: list[list[float | None]], seed: int) -> dict:
    """A mean over runs and items, bootstrapped over runs then items (a paired comparison with zero)."""
    return paired_bootstrap(runs, [[0.0] * len(r) for r in runs], seed=seed)


def reward_model_table(diags: list[dict[str, Any]], seed: int = 0) -> dict[str, dict]:
    """Reward-model accuracy on gold-labelled sample pairs over several runs.

    For each set of samples (``heldout_ppo_samples`` ...) and reward model: the accuracy
    bootstrapped over the runs that scored that model, then pairs; and, for each retrained model,
    its paired difference from the step-2 ``rm`` and from its null arm on the same pairs of the
    same runs (RLP's premise: right more often where the policy is). Runs of one replicate may
    hold different retrained models (``runs`` says how many pooled each row)."""
    out: dict[str, dict] = {}
    for where in diags[0] if diags and all(diags) else ():
        if where in ("spg_pairs", "left_out", "uml_terms", "ocrm_weights", "vs_null") or not all(where in d for d in diags):
            continue
        names = list(dict.fromkeys(n for d in diags for n, st in d[where].items() if "outcomes" in st))
        row = {}
        for n in names:
            have = [d for d in diags if "outcomes" in d[where].get(n, {})]
            runs = [d[where][n]["outcomes"] for d in have]
            row[n] = {**_mean_of(runs, seed), "pairs": sum(len(x) for x in runs), "runs": len(runs)}
            if n != "rm" and all("outcomes" in d[where].get("rm", {}) for d in have):
                row[n]["vs_rm"] = paired_bootstrap(runs, [d[where]["rm"]["outcomes"] for d in have], seed=seed)
            nulls = [d.get("vs_null", {}).get(where, {}).get(n, {}).get("null") for d in have]  # each run's own null arm
            if all(nulls) and all("outcomes" in d[where].get(null, {}) for d, null in zip(have, nulls)):
                row[n]["vs_null"] = {**paired_bootstrap(runs, [d[where][null]["outcomes"] for d, null in zip(have, nulls)], seed=seed),
                                     "null": sorted(set(nulls))}
        out[where] = row
    return out


def spg_pairs_total(diags: list[dict[str, Any]]) -> dict[str, Any] | None:
    """SPG's kept pairs summed over runs, with the pooled gold accuracy (Wilson interval)."""
    from rlop.evaluation.diagnostics import wilson_interval

    found = [d["spg_pairs"] for d in diags if d.get("spg_pairs")]
    if not found:
        return None
    right, judged = sum(s["gold_right"] for s in found), sum(s["gold_judged"] for s in found)
    lo, hi = wilson_interval(right, judged)
    return {"pairs": sum(s["pairs"] for s in found), "per_run": [s["pairs"] for s in found], "gold_accuracy": right / judged if judged else None,
            "ci_low": lo, "ci_high": hi}


def compare(run_dirs: list[str | Path], seed: int = 0) -> dict[str, Any]:
    scores, configs, diags = load_runs(run_dirs)
    win_rates = {m: _mean_of(runs, seed) for m, runs in scores.items()}
    return {"runs": [str(d) for d in run_dirs], "seeds": [c.get("seed") for c in configs], "win_rate": win_rates,
            "paired": paired_table(scores, seed=seed), "reward_models": reward_model_table(diags, seed), "spg_pairs": spg_pairs_total(diags)}


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
    if res.get("reward_models"):
        lines += ["", "Reward-model accuracy on gold-labelled pairs of policy samples, bootstrapped over runs, then pairs "
                  "(heldout: val prompts no stage trained on; step4: the samples rm-spg and rm-uml were trained on):", "",
                  "| samples | reward model | accuracy % | 95% CI | pairs | vs rm (points) | 95% CI | vs its null arm (points) | 95% CI |",
                  "|---|---|---|---|---|---|---|---|---|"]
        cell = lambda vs: (f"{vs['diff'] * 100:+.1f} | {vs['ci_low'] * 100:+.1f} to {vs['ci_high'] * 100:+.1f}"  # noqa: E731
                           if vs and vs["diff"] is not None else " | ")
        for where, row in res["reward_models"].items():
            for name, st in row.items():
                lines.append(f"| {where.replace('_samples', '')} | {name} | {pct(st['diff'])} | {pct(st['ci_low'])}-{pct(st['ci_high'])} | {st['pairs']} | "
                             f"{cell(st.get('vs_rm'))} | {cell(st.get('vs_null'))} |")
    spg = res.get("spg_pairs")
    if spg:
        agree = "" if spg["gold_accuracy"] is None else (f"; the gold agrees with {pct(spg['gold_accuracy'])}% of them "
                                                         f"({pct(spg['ci_low'])}-{pct(spg['ci_high'])}, Wilson)")
        lines += ["", f"SPG kept {spg['pairs']} synthetic pairs over the runs ({', '.join(map(str, spg['per_run']))}){agree}."]
    if res.get("shared_stages"):
        lines += ["", f"Shared by every seed (computed once, with the first seed): {', '.join(res['shared_stages'])}."]
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


def write_compare(res: dict[str, Any], folder: Path) -> None:
    """``compare.json``, ``compare.md`` and ``compare_forest.png`` into ``folder``, each written atomically."""
    atomic_write_text(folder / "compare.json", json.dumps(res, indent=2, allow_nan=False))
    atomic_write_text(folder / "compare.md", markdown(res))
    forest_plot(res, folder / "compare_forest.tmp.png")
    os.replace(folder / "compare_forest.tmp.png", folder / "compare_forest.png")


def run_compare(run_dirs: list[str | Path], out: str | Path, seed: int = 0) -> dict[str, Any]:
    res = compare(run_dirs, seed)
    with staged(out, "compare") as tmp:
        write_compare(res, tmp)
    return res
