"""Paired comparisons of two methods on the same eval instructions (and the same seeds).

A method's per-instruction scores come from :func:`rlop.evaluation.winrate.win_rate`
(``scores``: one value per eval instruction, ``None`` where the annotator gave no usable
verdict). The difference of two methods is taken instruction by instruction; an instruction
without a score for either method is dropped for both, so the two sets stay paired.

With several seeds (runs that differ only in their seed, on the same instructions), the
bootstrap resamples seeds, then instructions within each drawn seed: the interval then
covers both the training noise between seeds and the sampling of instructions.
"""

from __future__ import annotations

import random
from typing import Sequence

Scores = Sequence[float | None]
# minimal detectable difference: (z_0.975 + z_0.80) standard errors, the true difference that a
# two-sided 5% test detects 80% of the time with this design (same number of instructions and seeds)
MDD_FACTOR = 1.959964 + 0.841621


def paired_differences(a: Scores, b: Scores) -> list[float]:
    """``a[i] - b[i]`` for every instruction that both methods scored."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same instructions: {len(a)} vs {len(b)}")
    return [x - y for x, y in zip(a, b) if x is not None and y is not None]


def paired_bootstrap(a_runs: Sequence[Scores], b_runs: Sequence[Scores], n_boot: int = 2000, seed: int = 0,
                     alpha: float = 0.05) -> dict[str, float | int | None]:
    """Mean paired difference a - b with a percentile bootstrap interval.

    ``a_runs[s]`` and ``b_runs[s]`` are the per-instruction scores of the two methods under
    seed ``s``. Returns ``diff`` (mean over seeds of the mean difference), ``ci_low``,
    ``ci_high``, ``above_zero`` (share of resamples whose mean difference is > 0), ``n``
    (paired instructions per seed, the smallest), ``seeds``, ``se`` (bootstrap standard
    error) and ``mdd`` (minimal detectable difference at 80% power, two-sided 5%).
    """
    if len(a_runs) != len(b_runs) or not a_runs:
        raise ValueError("paired_bootstrap needs the same, non-zero number of runs for both methods")
    diffs = [paired_differences(a, b) for a, b in zip(a_runs, b_runs)]
    if any(not d for d in diffs):
        return {"diff": None, "ci_low": None, "ci_high": None, "above_zero": None, "n": 0, "seeds": len(diffs), "se": None, "mdd": None}
    point = sum(sum(d) / len(d) for d in diffs) / len(diffs)
    rng = random.Random(seed)
    means = []
    for _ in range(n_boot):
        runs = [diffs[rng.randrange(len(diffs))] for _ in diffs]
        means.append(sum(sum(d[rng.randrange(len(d))] for _ in d) / len(d) for d in runs) / len(runs))
    means.sort()
    mean = sum(means) / n_boot
    se = (sum((m - mean) ** 2 for m in means) / (n_boot - 1)) ** 0.5
    return {"diff": point, "ci_low": means[int(alpha / 2 * n_boot)], "ci_high": means[int((1 - alpha / 2) * n_boot) - 1],
            "above_zero": sum(m > 0 for m in means) / n_boot, "n": min(len(d) for d in diffs), "seeds": len(diffs),
            "se": se, "mdd": MDD_FACTOR * se}


def paired_table(scores: dict[str, Sequence[Scores]], baselines: Sequence[str] = ("ppo", "sft"), seed: int = 0) -> dict[str, dict]:
    """``{method: {"vs_ppo": stats, "vs_sft": stats}}`` for every method but the baseline itself."""
    out: dict[str, dict] = {}
    for method, runs in scores.items():
        row = {f"vs_{base}": paired_bootstrap(runs, scores[base], seed=seed) for base in baselines if base in scores and base != method}
        if row:
            out[method] = row
    return out
