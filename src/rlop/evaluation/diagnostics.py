"""Reward-model diagnostics against the sandbox gold: is the RM right where the policy is?

* :func:`gold_pairs_from_samples` - pairs of distinct samples of the same instruction whose
  gold scores differ (the PPO policy's own outputs, for on-distribution accuracy);
* :func:`gold_pairs_from_preferences` - the same for a collected preference file, labelled
  with the gold verdict instead of the noisy one;
* :func:`reward_accuracy` - how often a reward ranks such pairs as the gold does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rlop.data.io import InstructionExample

GoldPair = tuple[InstructionExample, str, str, int]  # (example, a, b, gold verdict 1 | 2)


def gold_pairs_from_samples(path: str | Path) -> list[GoldPair]:
    """Consecutive distinct samples (1st vs 2nd, 3rd vs 4th, ...) with different gold scores."""
    from rlop.data.samples import load_samples
    from rlop.sandbox.gold import gold_score

    pairs = []
    for s in load_samples(path):
        spec = s.example.meta["spec"]
        distinct = list(dict.fromkeys(s.responses))
        for a, b in zip(distinct[::2], distinct[1::2]):
            sa, sb = gold_score(spec, a), gold_score(spec, b)
            if sa != sb:
                pairs.append((s.example, a, b, 1 if sa > sb else 2))
    return pairs


def gold_pairs_from_preferences(pairs: Sequence) -> list[GoldPair]:
    """Collected preference pairs (with the sandbox ``spec``) relabelled by the gold score."""
    from rlop.sandbox.gold import gold_score

    out = []
    for p in pairs:
        spec = p.meta["spec"]
        sa, sb = gold_score(spec, p.chosen), gold_score(spec, p.rejected)
        if sa != sb:
            ex = InstructionExample(p.instruction, p.input, meta=p.meta)
            out.append((ex, p.chosen, p.rejected, 1 if sa > sb else 2))
    return out


def reward_accuracy(reward, pairs: Sequence[GoldPair]) -> float | None:
    """Share of pairs where ``reward`` scores the gold-preferred response strictly higher (None without pairs)."""
    if not pairs:
        return None
    ex = [p[0] for p in pairs]
    ra, rb = reward(ex, [p[1] for p in pairs]), reward(ex, [p[2] for p in pairs])
    return sum((x > y) if v == 1 else (y > x) for x, y, (_, _, _, v) in zip(ra, rb, pairs)) / len(pairs)


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float | None, float | None]:
    """95% Wilson score interval of a proportion k / n."""
    if n == 0:
        return None, None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_with_interval(reward, pairs: Sequence[GoldPair]) -> dict[str, float | int | None]:
    acc = reward_accuracy(reward, pairs)
    lo, hi = wilson_interval(round(acc * len(pairs)), len(pairs)) if acc is not None else (None, None)
    return {"accuracy": acc, "ci_low": lo, "ci_high": hi, "pairs": len(pairs)}


def synthetic_pair_accuracy(path: str | Path) -> dict:
    """How many synthetic (SPG) pairs there are, per task family, and how often the gold agrees with them."""
    from rlop.data.io import load_preferences
    from rlop.sandbox.gold import GoldAnnotator

    path = Path(path)
    pairs = load_preferences(path) if path.exists() and path.stat().st_size > 0 else []
    gold = GoldAnnotator()
    right = [gold.prefer(p.meta["spec"], p.chosen, p.rejected) == 1 for p in pairs if "spec" in p.meta]
    families: dict[str, list[bool]] = {}
    for p, ok in zip((p for p in pairs if "spec" in p.meta), right):
        families.setdefault(str(p.meta.get("family", "?")), []).append(ok)
    lo, hi = wilson_interval(sum(right), len(right))
    return {"pairs": len(pairs), "gold_accuracy": sum(right) / len(right) if right else None, "ci_low": lo, "ci_high": hi,
            "per_family": {f: {"pairs": len(v), "gold_accuracy": sum(v) / len(v)} for f, v in sorted(families.items())}}
