"""Pairwise win-rate against reference outputs (AlpacaFarm's head-to-head protocol).

For each instruction the annotator compares the reference (output_1) with the model output
(output_2): 2 means the model wins (1.0), 1 a loss (0.0), 0 a tie (0.5; only identical
outputs tie); unparseable verdicts (None) are dropped from the count, as AlpacaFarm does.
An instruction may have several sampled outputs: its score is their mean, which removes
most of the sampling noise from a comparison of methods on the same instructions.
Intervals are percentile bootstrap 95% over instructions (seeded).
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Sequence

from tqdm.auto import tqdm

from rlop.evaluation.api_config import APIConfig
from rlop.config import ConfigError, StageConfig, opt, require
from rlop.data.io import DataError, InstructionExample, load_instructions
from rlop.evaluation.annotators import AnnotatorError, make_annotator
from rlop.outputs import staged
from rlop.sandbox.gold import check_spec, gold_success
from rlop.models import precision as precision_


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float | None, float | None]:
    """Percentile interval of the mean; (None, None) without values (JSON has no NaN)."""
    if not values:
        return None, None
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    return means[int(alpha / 2 * n_boot)], means[int((1 - alpha / 2) * n_boot) - 1]


def postfix(stats: dict[str, Any]) -> dict[str, str]:
    """An API annotator's counts for a progress bar: requests, cache hits, tokens, estimated cost."""
    return {"requests": str(stats.get("requests", 0)), "cached": str(stats.get("cache_hits", 0)),
            "tokens": str(stats.get("prompt_tokens", 0) + stats.get("completion_tokens", 0)), "cost": f"${stats.get('cost_usd', 0.0):.4f}"}


def win_rate(
    prefer: Callable[[InstructionExample, str, str], int | None],
    examples: Sequence[InstructionExample],
    outputs: Sequence[str] | Sequence[Sequence[str]],
    subset_key: str = "dataset",
    seed: int = 0,
    stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``outputs[i]`` is the output for ``examples[i]``, or a list of sampled outputs for it.
    ``stats``: an API annotator's running counts, shown with a progress bar."""
    scores: list[float] = []
    per_instruction: list[float | None] = []  # in the order of ``examples``; None: no usable verdict
    subsets: dict[str, list[float]] = {}
    dropped = 0
    lengths: list[int] = []
    bar = tqdm(total=len(examples), desc="eval", unit="instruction", disable=stats is None)
    for ex, outs in zip(examples, outputs):
        bar.update(1)
        if stats is not None:
            bar.set_postfix(postfix(stats), refresh=False)
        outs = [outs] if isinstance(outs, str) else list(outs)
        lengths += [len(o) for o in outs]
        verdicts = [prefer(ex, ex.output or "", o) for o in outs]
        kept = [{2: 1.0, 1: 0.0, 0: 0.5}[v] for v in verdicts if v is not None]
        dropped += len(verdicts) - len(kept)
        if not kept:
            per_instruction.append(None)
            continue
        s = sum(kept) / len(kept)
        scores.append(s)
        per_instruction.append(s)
        subsets.setdefault(str(ex.meta.get(subset_key, "all")), []).append(s)
    bar.close()
    lo, hi = bootstrap_ci(scores, seed=seed)
    return {
        "win_rate": sum(scores) / len(scores) if scores else None,
        "ci_low": lo,
        "ci_high": hi,
        "n": len(scores),
        "dropped": dropped,
        "mean_length": sum(lengths) / max(len(lengths), 1),
        "per_subset": {k: {"win_rate": sum(v) / len(v), "n": len(v)} for k, v in sorted(subsets.items())},
        "scores": per_instruction,
    }


def gold_success_rate(examples: Sequence[InstructionExample], outputs: Sequence[str] | Sequence[Sequence[str]]) -> float:
    """Share of outputs that solve their task (all samples of all instructions)."""
    hits = [gold_success(e.meta["spec"], o) for e, outs in zip(examples, outputs) for o in ([outs] if isinstance(outs, str) else outs)]
    return sum(hits) / max(len(hits), 1)


@dataclass
class EvalConfig(StageConfig):
    outputs: str = opt("", "model outputs JSONL/JSON (instruction, input, output); an empty output is allowed and loses")
    eval_file: str = opt("sandbox:eval", "eval set with reference outputs (AlpacaEval format: instruction, input, output, dataset)")
    annotator: Literal["gold", "reward", "api"] = opt("gold", "who judges: gold (sandbox) | reward (a reward model) | api (OpenAI-compatible endpoint)")
    reward_model: str = opt("", "reward model directory for --annotator reward")
    subset_key: str = opt("dataset", "record field whose values get their own win-rate")
    max_prompts: int = opt(0, "evaluate at most this many eval instructions (0: all)", ge=0)
    api: APIConfig = dataclasses.field(default_factory=APIConfig, metadata={"help": "API annotator options (rlop.evaluation.api_config.APIConfig)"})
    seed: int = opt(0, "seed of the presentation order (api) and of the bootstrap")
    precision: precision_.Precision = opt("auto", precision_.HELP)

    PRESETS: ClassVar[dict] = {"tiny": dict(max_prompts=8), "cpu": dict(), "gpu": dict()}

    def check(self) -> None:
        if self.annotator == "reward" and self.outputs and not self.reward_model:
            raise ConfigError("--annotator reward needs --reward-model DIR")


def run_eval(cfg: EvalConfig, out: str | Path | None = None) -> dict[str, Any]:
    """Win-rate of ``cfg.outputs`` against the references; written to ``out/winrate.json`` when given."""
    require(cfg, "outputs", "the model outputs to evaluate")
    refs = load_instructions(cfg.eval_file, require_output=True, limit=cfg.max_prompts or None)
    outs = {(o.instruction, o.input): o.output or "" for o in load_instructions(cfg.outputs, require_output=True, allow_empty_output=True)}
    missing = [r for r in refs if (r.instruction, r.input) not in outs]
    if missing:
        raise DataError(cfg.outputs, None, "instruction", f"no output for {len(missing)} eval instructions, e.g. {missing[0].instruction[:60]!r}")
    if cfg.annotator == "gold":

        for n, r in enumerate(refs, start=1):
            problem = "missing: the gold annotator needs sandbox tasks" if "spec" not in r.meta else check_spec(r.meta["spec"])
            if problem:
                raise DataError(cfg.eval_file, f"record {n}", "spec", problem)
    api = cfg.api.annotator_options(cfg.seed)
    ann = make_annotator(cfg.annotator, cfg.reward_model or None, precision=cfg.precision, **(api if cfg.annotator == "api" else {}))
    if hasattr(ann, "prefetch"):  # api: concurrent requests up front; reward: batched scores
        ann.prefetch([(r, r.output or "", outs[(r.instruction, r.input)]) for r in refs])
    res = win_rate(ann.prefer, refs, [outs[(r.instruction, r.input)] for r in refs], subset_key=cfg.subset_key, seed=cfg.seed,
                   stats=getattr(ann, "stats", None))
    if hasattr(ann, "stats"):
        res["annotator_stats"] = dict(ann.stats)
    if res["n"] == 0:
        raise AnnotatorError(f"no usable verdict for any of the {len(refs)} instructions (annotator {cfg.annotator}: "
                             f"{res.get('annotator_stats', {})}); nothing written")
    if out is not None:

        with staged(out, "eval") as tmp:
            (tmp / "winrate.json").write_text(json.dumps(res, indent=2, allow_nan=False))
    return res
