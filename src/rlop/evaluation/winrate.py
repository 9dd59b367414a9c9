"""Pairwise win-rate against reference outputs (AlpacaFarm's head-to-head protocol).

For each instruction the annotator compares the reference (output_1) with the model output
(output_2): 2 means the model wins (1.0), 1 a loss (0.0), 0 a tie (0.5; only identical
outputs tie); unparseable verdicts (None) are dropped from the count, as AlpacaFarm does.
An instruction may have several sampled outputs: its score is their mean, which removes
most of the sampling noise from a comparison of methods on the same instructions.
Intervals are percentile bootstrap 95% over instructions (seeded).
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from rlop.data.io import InstructionExample


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    return means[int(alpha / 2 * n_boot)], means[int((1 - alpha / 2) * n_boot) - 1]


def win_rate(
    prefer: Callable[[InstructionExample, str, str], int | None],
    examples: Sequence[InstructionExample],
    outputs: Sequence[str] | Sequence[Sequence[str]],
    subset_key: str = "dataset",
    seed: int = 0,
) -> dict[str, Any]:
    """``outputs[i]`` is the output for ``examples[i]``, or a list of sampled outputs for it."""
    scores: list[float] = []
    subsets: dict[str, list[float]] = {}
    dropped = 0
    lengths: list[int] = []
    for ex, outs in zip(examples, outputs):
        outs = [outs] if isinstance(outs, str) else list(outs)
        lengths += [len(o) for o in outs]
        verdicts = [prefer(ex, ex.output or "", o) for o in outs]
        kept = [{2: 1.0, 1: 0.0, 0: 0.5}[v] for v in verdicts if v is not None]
        dropped += len(verdicts) - len(kept)
        if not kept:
            continue
        s = sum(kept) / len(kept)
        scores.append(s)
        subsets.setdefault(str(ex.meta.get(subset_key, "all")), []).append(s)
    lo, hi = bootstrap_ci(scores, seed=seed)
    return {
        "win_rate": sum(scores) / len(scores) if scores else float("nan"),
        "ci_low": lo,
        "ci_high": hi,
        "n": len(scores),
        "dropped": dropped,
        "mean_length": sum(lengths) / max(len(lengths), 1),
        "per_subset": {k: {"win_rate": sum(v) / len(v), "n": len(v)} for k, v in sorted(subsets.items())},
    }


def gold_prefer(ex: InstructionExample, reference: str, output: str) -> int:
    from rlop.sandbox.gold import GoldAnnotator

    return GoldAnnotator().prefer(ex.meta["spec"], reference, output)


def gold_success_rate(examples: Sequence[InstructionExample], outputs: Sequence[str] | Sequence[Sequence[str]]) -> float:
    """Share of outputs that solve their task (all samples of all instructions)."""
    from rlop.sandbox.gold import gold_success

    hits = [gold_success(e.meta["spec"], o) for e, outs in zip(examples, outputs) for o in ([outs] if isinstance(outs, str) else outs)]
    return sum(hits) / max(len(hits), 1)
