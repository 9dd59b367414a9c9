"""``rlop report RUN_DIR``: Markdown report with PNG plots from a run directory."""

from __future__ import annotations

import json
from pathlib import Path

from rlop.rlp.variants import VARIANTS


def _plots(run: Path, methods: dict, overopt: dict | None = None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    names = list(methods)
    wr = [methods[m]["win_rate"] * 100 for m in names]
    err = [[(methods[m]["win_rate"] - methods[m]["ci_low"]) * 100 for m in names], [(methods[m]["ci_high"] - methods[m]["win_rate"]) * 100 for m in names]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(names, wr, yerr=err, capsize=4, color="#4c72b0")
    ax.axhline(50, color="grey", lw=0.8, ls="--")
    ax.set_ylabel("win-rate vs reference (%)")
    ax.set_title("Win-rate per method (95% bootstrap CI)")
    fig.tight_layout()
    fig.savefig(run / "winrate.png", dpi=120)
    plt.close(fig)
    made.append("winrate.png")
    ppo_dirs = [d for d in ("ppo", *sorted(v.ppo_stage for v in VARIANTS.values())) if (run / d / "metrics.jsonl").exists()]
    if ppo_dirs:
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
        for d in ppo_dirs:
            rows = [json.loads(l) for l in open(run / d / "metrics.jsonl")]
            steps = [r["step"] for r in rows]
            for ax, key in zip(axes, ("reward_mean", "gold_reward_mean", "kl", "response_length")):
                if key in rows[0]:
                    ax.plot(steps, [r[key] for r in rows], label=d)
                    ax.set_title(key)
                    ax.set_xlabel("PPO step")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(run / "ppo_curves.png", dpi=120)
        plt.close(fig)
        made.append("ppo_curves.png")
    curves = {d: [json.loads(line) for line in open(run / d / "metrics.jsonl")] for d in ppo_dirs}
    if any(rows and "gold_reward_mean" in rows[0] for rows in curves.values()):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for d, rows in curves.items():
            if rows and "gold_reward_mean" in rows[0]:
                kl = [r["kl"] for r in rows]
                axes[0].plot(kl, [r["reward_mean"] for r in rows], marker=".", label=d)
                axes[1].plot(kl, [r["gold_reward_mean"] for r in rows], marker=".", label=d)
        for ax, title in zip(axes, ("proxy reward (the RM PPO optimises)", "gold score")):
            ax.set_xlabel("KL to the SFT policy (per response)")
            ax.set_title(title)
        axes[0].legend()
        fig.suptitle("PPO's own rollout batches (other prompts at every step; the fixed-prompt curve is overopt.png)")
        fig.tight_layout()
        fig.savefig(run / "gold_vs_proxy.png", dpi=120)
        plt.close(fig)
        made.append("gold_vs_proxy.png")
    if overopt:
        from rlop.evaluation.overopt import plot_curves

        plot_curves(overopt, run / "overopt.png")
        made.append("overopt.png")
    stats = run / "spg" / "spg_stats.json"
    if stats.exists():
        s = json.loads(stats.read_text())
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(s["confidences"], bins=10, range=(0, 1), color="#55a868")
        ax.set_xlabel("SPG confidence (largest cluster / n)")
        ax.set_title(f"acceptance rate {s['acceptance_rate']:.2f}")
        fig.tight_layout()
        fig.savefig(run / "spg_confidence.png", dpi=120)
        plt.close(fig)
        made.append("spg_confidence.png")
    return made


def _ci(st: dict) -> str:
    if not st or st.get("diff") is None:
        return "n/a"
    return f"{st['diff']:+.3f} ({st['ci_low']:+.3f} to {st['ci_high']:+.3f})"


def null_lines(diag: dict) -> list[str]:
    """Each retrained RM against its null arm (the placebo under the same protocol) on the same gold-labelled pairs."""
    table = diag.get("vs_null") or {}
    if not table:
        return []
    lines = ["", "## Retrained reward models against their null arm (same pairs; accuracy difference, 95% bootstrap CI over pairs)", "",
             "The null arm gets a placebo of the variant's size under the same protocol: what remains is what the variant's selection or loss added.", "",
             "| samples | reward model | null arm | difference (points) | 95% CI | pairs |", "|---|---|---|---|---|---|"]
    for where, rows in table.items():
        for name, st in rows.items():
            if st.get("diff") is not None:
                lines.append(f"| {where} | {name} | {st['null']} | {st['diff'] * 100:+.1f} | {st['ci_low'] * 100:+.1f} to {st['ci_high'] * 100:+.1f} | {st['n']} |")
    return lines


def overopt_lines(curves: dict) -> list[str]:
    """The over-optimisation table: gold's peak on the fixed held-out prompts and the drop after it, per PPO run."""
    if not curves:
        return []
    c0 = next(iter(curves.values()))
    lines = ["", f"## Over-optimisation (every kept PPO policy on the same {c0['prompts']} held-out prompts x {c0['samples']} samples)", "",
             "Gold drop = gold at its peak minus gold at the last kept policy (95% paired bootstrap CI over prompts); the "
             "second figure chooses the peak on the even-indexed prompts and measures the drop on the odd ones, free of the "
             "selection that flatters the first. KL: nats per response to SFT.", "",
             "| PPO run | kept policies | gold peak: step | KL | gold | last: step | KL | gold | gold drop | drop, peak chosen on other half | proxy change after peak |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, c in curves.items():
        s = c["summary"]
        lines.append(f"| {name} | {len(c['points']) - 1} | {s['peak_step']} | {s['peak_kl']:.2f} | {s['peak_gold']:.3f} | {s['last_step']} | "
                     f"{s['last_kl']:.2f} | {s['last_gold']:.3f} | {_ci(s['drop'])} | {_ci(s['drop_heldout'])} | {s['proxy_change']:+.3f} |")
    return lines


def table(methods: dict) -> str:
    lines = ["| method | win-rate % | 95% CI | gold success % | n | mean length (chars) |", "|---|---|---|---|---|---|"]
    for m, r in methods.items():
        gold = "n/a" if r.get("gold_success") is None else f"{r['gold_success'] * 100:.1f}"
        lines.append(f"| {m} | {r['win_rate'] * 100:.1f} | {r['ci_low'] * 100:.1f}-{r['ci_high'] * 100:.1f} | {gold} | {r['n']} | {r['mean_length']:.0f} |")
    return "\n".join(lines)


def optimiser_line(run: Path) -> list[str]:
    """Which policy optimiser steps 3 and 5 ran (``--advantage-estimator``), from the PPO stage's saved config."""
    f = run / "ppo" / "policy" / "rlop_config.json"
    if not f.exists():
        return []
    c = json.loads(f.read_text())
    est = c.get("advantage_estimator", "gae")
    what = "PPO with GAE and a value model" if est == "gae" else f"{est}, critic-free"
    k = c.get("samples_per_prompt", 1)
    return [f"Policy optimiser of steps 3 and 5: {what}; {k} sample{'s' if k > 1 else ''} per prompt; KL to the SFT policy in the "
            f"{c.get('kl_penalty', 'reward')} (coefficient {c.get('kl_coef')}); {c.get('steps')} steps of {c.get('rollout_batch_size')} rollouts.", ""]


def write_report(run: str | Path) -> Path:
    run = Path(run)
    res = json.loads((run / "results.json").read_text())
    methods, diag = res["methods"], res.get("diagnostics", {})
    plots = _plots(run, methods, res.get("overopt"))
    parts = ["# rlop run report", "", f"Run directory: `{run}`", "", f"## Win-rate against the reference outputs ({res.get('eval_annotator', 'gold')} annotator)", "", table(methods), ""]
    parts += optimiser_line(run)
    if res.get("rlp_iterations", 1) > 1:
        start = "SFT, with the KL to SFT" if res.get("rlp_iterate_from") == "sft" else "the last iteration's policy, with the KL to it"
        parts += [f"RLP's steps 4-5 ran {res['rlp_iterations']} times per variant (`--rlp-iterations`), each PPO from {start}; a variant's row "
                  "is its last iteration's policy (folders `*-itK`); the reward-model diagnostics are iteration 1's.", ""]
    k = res.get("eval_samples", 1)
    parts += [f"n counts instructions; each has {k} sampled output{'s' if k > 1 else ''} (temperature 0.7, top-p 0.9)"
              + (", and its score is their mean" if k > 1 else "") + ". Intervals: percentile bootstrap over instructions."
              + (f" Compute precision: {res['precision']}." if "precision" in res else ""), ""]
    parts += ["Per-kind win-rate:", ""]
    for m, r in methods.items():
        parts.append(f"- {m}: " + ", ".join(f"{k} {v['win_rate'] * 100:.1f}% (n={v['n']})" for k, v in r["per_subset"].items()))
    if res.get("paired"):
        parts += ["", "## Paired differences (same instructions; percentile bootstrap over instructions, and over seeds when there are several)", "",
                  "| method | vs | difference (points) | 95% CI | share of resamples > 0 | detectable (80% power) | n |", "|---|---|---|---|---|---|---|"]
        for m, row in res["paired"].items():
            for vs, st in row.items():
                if st["diff"] is not None:
                    parts.append(f"| {m} | {vs[3:]} | {st['diff'] * 100:+.1f} | {st['ci_low'] * 100:+.1f} to {st['ci_high'] * 100:+.1f} | "
                                 f"{st['above_zero']:.2f} | {st['mdd'] * 100 if st.get('mdd') is not None else float('nan'):.1f} | {st['n']} |")
    if "left_out" in diag:
        parts += ["", f"Reward-model diagnostics left out: {diag['left_out']}."]
    elif diag:
        parts += ["", "## Reward-model accuracy where the policy is (gold-labelled pairs of samples, 95% Wilson CI)", "",
                  "held-out: val prompts that no stage trained on; step-4: the unlabeled prompts whose samples rm-spg and rm-uml were trained on.", "",
                  "| samples | reward model | accuracy % | 95% CI | pairs |", "|---|---|---|---|---|"]
        for where, by_rm in diag.items():  # a variant's own entries (no per-RM accuracy) are its report lines below
            for name, st in by_rm.items():
                if isinstance(st, dict) and st.get("accuracy") is not None:
                    parts.append(f"| {where} | {name} | {st['accuracy'] * 100:.1f} | {st['ci_low'] * 100:.1f}-{st['ci_high'] * 100:.1f} | {st['pairs']} |")
    parts += null_lines(diag)
    parts += overopt_lines(res.get("overopt") or {})
    for v in sorted(VARIANTS.values(), key=lambda v: v.reward_stage):  # each variant's own lines (SPG's pairs, UML's loss terms)
        parts += v.report_lines(diag)
    stages = json.loads((run / "stages.json").read_text()) if (run / "stages.json").exists() else {}
    if stages:
        cuda = any(st.get("peak_cuda_mb") is not None for st in stages.values())
        parts += ["", "## Stages (time and the process's peak resident memory while each was computed)", "",
                  "| stage | minutes | peak RSS (MB) |" + (" peak CUDA (MB) |" if cuda else ""), "|---|---|---|" + ("---|" if cuda else "")]
        for name, st in stages.items():
            rss = "n/a" if st.get("peak_rss_mb") is None else f"{st['peak_rss_mb']:.0f}"
            if st.get("peak_rss_window") == "process" and rss != "n/a":
                rss = f"≤ {rss} (the system kept the process's peak)"
            minutes = "n/a" if st.get("seconds") is None else f"{st['seconds'] / 60:.1f}"
            gpu = "" if not cuda else (" n/a |" if st.get("peak_cuda_mb") is None else f" {st['peak_cuda_mb']:.0f} |")
            parts.append(f"| {name}{' (shared)' if st.get('shared') else ''} | {minutes} | {rss} |{gpu}")
    parts += [""] + [f"![{p}]({p})" for p in plots] + [""]
    path = run / "report.md"
    path.write_text("\n".join(parts))
    return path
