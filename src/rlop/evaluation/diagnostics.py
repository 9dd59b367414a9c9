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


def pair_outcomes(reward, pairs: Sequence[GoldPair]) -> list[int]:
    """Per pair, 1 where ``reward`` scores the gold-preferred response strictly higher, else 0."""
    if not pairs:
        return []
    ex = [p[0] for p in pairs]
    ra, rb = reward(ex, [p[1] for p in pairs]), reward(ex, [p[2] for p in pairs])
    return [int((x > y) if v == 1 else (y > x)) for x, y, (_, _, _, v) in zip(ra, rb, pairs)]


def reward_accuracy(reward, pairs: Sequence[GoldPair]) -> float | None:
    """Share of pairs where ``reward`` scores the gold-preferred response strictly higher (None without pairs)."""
    outcomes = pair_outcomes(reward, pairs)
    return sum(outcomes) / len(outcomes) if outcomes else None


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float | None, float | None]:
    """95% Wilson score interval of a proportion k / n."""
    if n == 0:
        return None, None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_with_interval(reward, pairs: Sequence[GoldPair]) -> dict:
    """Accuracy with its 95% Wilson interval, and the per-pair ``outcomes`` (for paired comparisons of reward models)."""
    outcomes = pair_outcomes(reward, pairs)
    lo, hi = wilson_interval(sum(outcomes), len(outcomes))
    return {"accuracy": sum(outcomes) / len(outcomes) if outcomes else None, "ci_low": lo, "ci_high": hi, "pairs": len(pairs),
            "outcomes": outcomes}


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
    return {"pairs": len(pairs), "gold_judged": len(right), "gold_right": sum(right), "gold_accuracy": sum(right) / len(right) if right else None,
            "ci_low": lo, "ci_high": hi,
            "per_family": {f: {"pairs": len(v), "gold_accuracy": sum(v) / len(v)} for f, v in sorted(families.items())}}


AUX_TERMS = ("bt_loss", "rep_loss", "mi_jsd", "skl", "beta")


def aux_loss_terms(metrics_path: str | Path) -> dict | None:
    """The representation-loss terms of a reward model's training (``metrics.jsonl``), averaged over
    the first and the last tenth of its steps, so a collapsed bottleneck (skl and mi near 0) is visible."""
    import json

    path = Path(metrics_path)
    if not path.exists():
        return None
    rows = [r for r in map(json.loads, path.read_text().splitlines()) if "rep_loss" in r]
    if not rows:
        return None
    k = max(1, len(rows) // 10)
    mean = lambda part, key: sum(r[key] for r in part) / len(part)  # noqa: E731
    keys = [t for t in AUX_TERMS if t in rows[0]]
    return {"steps": len(rows), "first": {t: mean(rows[:k], t) for t in keys}, "last": {t: mean(rows[-k:], t) for t in keys}}
