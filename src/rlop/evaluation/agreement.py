"""``rlop agreement``: how far an annotator can be trusted, on pairs someone already labelled.

Each pair is shown twice, as labelled (output_1 first) and swapped. Reported, with 95%
bootstrap intervals over pairs:

* ``agreement``: the share of pairs where the annotator picks the labelled winner (as
  presented first-as-labelled; a tie counts half). Pairs labelled a draw are left out of it
  and counted;
* ``agreement_swapped``: the same with the pair swapped;
* ``consistency``: the share of pairs where the annotator picks the same output in both orders;
* ``first_position_rate``: how often it picks whichever output is shown first, over both
  orders (0.5: no position bias).

A pair without a usable verdict in either order is dropped from everything and counted.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from tqdm.auto import tqdm

from rlop.evaluation.api_config import APIConfig
from rlop.config import ConfigError, StageConfig, opt, require
from rlop.data.io import load_labelled_pairs
from rlop.evaluation.annotators import AnnotatorError, make_annotator
from rlop.evaluation.winrate import bootstrap_ci
from rlop.outputs import staged
from rlop.models import precision as precision_


@dataclass
class AgreementConfig(StageConfig):
    pairs_file: str = opt("", "labelled pairs: JSONL/JSON with instruction, input, output_1, output_2, preference (1, 2; 0 or 1.5: draw)")
    annotator: Literal["gold", "reward", "api"] = opt("reward", "the annotator to measure: reward (a reward model) | api | gold (sandbox)")
    reward_model: str = opt("", "reward model directory for --annotator reward")
    max_pairs: int = opt(0, "use at most this many pairs with a verdict (0: all)", ge=0)
    api: APIConfig = dataclasses.field(default_factory=APIConfig, metadata={"help": "API annotator options (rlop.evaluation.api_config.APIConfig)"})
    seed: int = opt(0, "seed of the bootstrap")
    precision: precision_.Precision = opt("auto", precision_.HELP)

    PRESETS: ClassVar[dict] = {"tiny": dict(max_pairs=8), "cpu": dict(), "gpu": dict()}

    def check(self) -> None:
        if self.annotator == "reward" and self.pairs_file and not self.reward_model:
            raise ConfigError("--annotator reward needs --reward-model DIR")


def _ci(values: list[float], seed: int) -> dict[str, Any]:
    lo, hi = bootstrap_ci(values, seed=seed)
    return {"value": sum(values) / len(values) if values else None, "ci": [lo, hi], "n": len(values)}


def agreement_stats(rows: list[tuple[float, int | None, int | None]], seed: int = 0) -> dict[str, Any]:
    """``rows``: (label, verdict as labelled, verdict on the swapped pair, in the swapped pair's own positions)."""
    agree, agree_sw, consistent, first = [], [], [], []
    dropped = draws = 0
    for label, v, w in rows:
        if v is None or w is None:
            dropped += 1
            continue
        w_back = {1: 2, 2: 1, 0: 0}[w]  # the swapped verdict in the labelled order
        consistent.append(1.0 if v == w_back else 0.0)
        first.extend(0.5 if x == 0 else float(x == 1) for x in (v, w))
        if label == 1.5:
            draws += 1
            continue
        agree.append(0.5 if v == 0 else float(v == label))
        agree_sw.append(0.5 if w_back == 0 else float(w_back == label))
    return {"agreement": _ci(agree, seed), "agreement_swapped": _ci(agree_sw, seed), "consistency": _ci(consistent, seed),
            "first_position_rate": _ci(first, seed), "pairs": len(consistent), "draws": draws, "dropped_no_verdict": dropped}


def run_agreement(cfg: AgreementConfig, out: str | Path | None = None) -> dict[str, Any]:
    """Measure ``cfg.annotator`` on ``cfg.pairs_file``; ``out/agreement.json`` when ``out`` is given."""
    require(cfg, "pairs_file", "a file of labelled pairs")
    pairs, counts = load_labelled_pairs(cfg.pairs_file, limit=cfg.max_pairs or None)
    api = cfg.api.annotator_options(cfg.seed, randomize_order=False)
    ann = make_annotator(cfg.annotator, cfg.reward_model or None, precision=cfg.precision, **(api if cfg.annotator == "api" else {}))
    if hasattr(ann, "prefetch"):  # api: concurrent requests up front; reward: batched scores
        ann.prefetch([t for ex, o1, o2, _ in pairs for t in ((ex, o1, o2), (ex, o2, o1))])
    rows = [(label, ann.prefer(ex, o1, o2), ann.prefer(ex, o2, o1)) for ex, o1, o2, label in tqdm(pairs, desc="agreement", unit="pair")]
    res = {**agreement_stats(rows, cfg.seed), "skipped_no_label": counts["no_verdict"], "annotator": cfg.annotator,
           "pairs_file": str(cfg.pairs_file)}
    if hasattr(ann, "stats"):
        res["annotator_stats"] = dict(ann.stats)
    if res["pairs"] == 0:
        raise AnnotatorError(f"no usable verdict for any of the {len(pairs)} pairs; nothing written")
    if out is not None:
        with staged(out, "agreement") as tmp:
            (tmp / "agreement.json").write_text(json.dumps(res, indent=2, allow_nan=False))
    return res


def summary(res: dict[str, Any]) -> str:
    def pct(k):
        d = res[k]
        lo, hi = d["ci"]
        return f"{100 * d['value']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] (n={d['n']})" if d["value"] is not None else "n/a"

    return (f"agreement {pct('agreement')}; swapped {pct('agreement_swapped')}; consistency {pct('consistency')}; "
            f"first-position rate {pct('first_position_rate')}; draws {res['draws']}, no verdict {res['dropped_no_verdict']}")
