"""The reward trainer's data: reading and validating D, the hold-out split, how synthetic pairs
join D (a shuffled union, or the matched order of the RLP experiment) and RLP-UML's view pairs."""

from __future__ import annotations

import logging
import random

from rlop.data import PreferenceExample, load_preferences
from rlop.utils import derive_seed

log = logging.getLogger(__name__)


def epoch_order(n: int, total: int, seed: int) -> list[int]:
    """``total`` indices of ``range(n)``: one seeded shuffle per epoch, concatenated."""
    order: list[int] = []
    epoch = 0
    while len(order) < total:
        perm = list(range(n))
        random.Random(derive_seed(seed, epoch)).shuffle(perm)
        order.extend(perm)
        epoch += 1
    return order[:total]


def matched_order(n_human: int, n_extra: int, epochs: float, global_bs: int, seed: int) -> list[int]:
    """D's pairs (indices 0..n_human-1) in exactly the order a run on D alone takes, with the extra
    pairs (n_human..) inserted at positions drawn from (seed, n_extra, len): two runs that add the
    same number of pairs (a variant and its placebo) put them in the same slots, and with none the
    order is that of the run on D alone. Ends at the last full global batch."""
    base = epoch_order(n_human, max(int(n_human * epochs), global_bs) // global_bs * global_bs, seed)
    k = int(round(n_extra * epochs))
    rng = random.Random(derive_seed(seed, 5, n_extra, len(base)))
    slots = set(rng.sample(range(len(base) + k), k))
    extra = [n_human + i for i in epoch_order(n_extra, k, derive_seed(seed, 6))]
    merged, it_base, it_extra = [], iter(base), iter(extra)
    for pos in range(len(base) + k):
        merged.append(next(it_extra) if pos in slots else next(it_base))
    return merged[: len(merged) // global_bs * global_bs]


def split_holdout(pairs: list, n_eval: int, seed: int) -> tuple[list, list]:
    idx = list(range(len(pairs)))
    random.Random(seed).shuffle(idx)
    n_eval = min(n_eval, len(pairs) // 5)
    ev = set(idx[:n_eval])
    return [p for i, p in enumerate(pairs) if i not in ev], [pairs[i] for i in sorted(ev)]


def mix_synthetic(human: list, synthetic: list, ratio: float, seed: int) -> list:
    if ratio <= 0 or not synthetic:
        return human + synthetic
    k = int(round(ratio * len(human)))
    rng = random.Random(seed)
    chosen = rng.sample(synthetic, k) if k <= len(synthetic) else [rng.choice(synthetic) for _ in range(k)]
    return human + chosen


def load_view_pairs(path: str, n_pairs: int, seed: int) -> list[tuple[PreferenceExample, str, str]]:
    """(instruction, response_a, response_b) triples from a samples file (``rlop sample`` output)."""
    from rlop.data.samples import load_samples

    rng = random.Random(seed)
    out = []
    for rec in load_samples(path):
        distinct = list(dict.fromkeys(rec.responses))
        if len(distinct) < 2:
            continue
        all_pairs = [(i, j) for i in range(len(distinct)) for j in range(i + 1, len(distinct))]
        for i, j in rng.sample(all_pairs, min(n_pairs, len(all_pairs))):
            out.append((rec.example, distinct[i], distinct[j]))
    return out


def dedupe_pairs(pairs: list[PreferenceExample], seen: set | None = None) -> tuple[list[PreferenceExample], int]:
    """Drop exact repeats (same instruction, input, chosen and rejected) and pairs already in ``seen``."""
    seen = set() if seen is None else seen
    out = []
    for p in pairs:
        key = (p.instruction, p.input, p.chosen, p.rejected)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out, len(pairs) - len(out)


def apply_pair_weights(pairs: list[PreferenceExample], path: str) -> list[PreferenceExample]:
    """The pairs with ``meta['weight']`` from a weights file (rlop ocrm's weights.jsonl); pairs it does not list weigh 1."""
    import dataclasses

    from rlop.utils import read_jsonl_plain

    weights = {(r["instruction"], r.get("input", ""), r["chosen"], r["rejected"]): float(r["weight"]) for r in read_jsonl_plain(path)}
    found = sum(1 for p in pairs if (p.instruction, p.input, p.chosen, p.rejected) in weights)
    if pairs and not found:
        log.warning("%s: weights none of the %d training pairs (all weigh 1)", path, len(pairs))
    return [dataclasses.replace(p, meta={**p.meta, "weight": weights.get((p.instruction, p.input, p.chosen, p.rejected), 1.0)}) for p in pairs]


def load_reward_data(cfg):
    """Read and validate everything before any training starts (``cfg``: a ``RewardConfig``).

    Repeated pairs are dropped (and counted) before the hold-out split, so held-out accuracy
    is never measured on copies of training pairs.
    """
    pairs, dup = dedupe_pairs(load_preferences(cfg.train_file))
    if dup:
        log.warning("%s: dropped %d repeated preference pairs", cfg.train_file, dup)
    if cfg.eval_file:
        ev, leak = dedupe_pairs(load_preferences(cfg.eval_file), {(p.instruction, p.input, p.chosen, p.rejected) for p in pairs})
        if leak:
            log.warning("%s: dropped %d held-out pairs that repeat a pair of %s", cfg.eval_file, leak, cfg.train_file)
        train = pairs
    else:
        train, ev = split_holdout(pairs, cfg.eval_holdout, cfg.seed)
    if cfg.max_train_pairs:
        train = train[: cfg.max_train_pairs]
    if cfg.pair_weights_file:
        train = apply_pair_weights(train, cfg.pair_weights_file)
    synthetic = load_preferences(cfg.synthetic_file) if cfg.synthetic_file else []
    human = len(train)
    train = mix_synthetic(train, synthetic, cfg.synthetic_ratio, cfg.seed)
    views = load_view_pairs(cfg.uml.views_file, cfg.uml.view_pairs_per_instruction, cfg.seed) if cfg.uml.views_file else None
    return train, ev, views, len(synthetic), len(train) - human
