"""Step 1 of Algorithm 1: two policy responses per preference instruction, labelled by an
annotator, as AlpacaFarm JSONL (instruction, input, output_1, output_2, preference).

Annotators: the sandbox's simulated humans (noisy: AlpacaFarm's p_label_flip 0.25; gold), which
need sandbox tasks; or, on any instructions, a reward model (``reward``) or an OpenAI-compatible
endpoint (``api``, with retries, the annotation cache and token/cost counts, see
:mod:`rlop.evaluation.annotators`). Pairs without a verdict (identical outputs, an API item that
failed or could not be parsed) are left out and counted in ``collect_stats.json``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from rlop.distributed import is_main_process
from rlop.evaluation.api_config import APIConfig
from rlop.config import StageConfig, opt
from rlop.data.io import DataError, load_instructions
from rlop.models.generation import SamplingConfig
from rlop.models.loading import DEFAULT_MODEL
from rlop.outputs import staged
from rlop.models.sampling import sample_responses
from rlop.sandbox.gold import GoldAnnotator, NoisyAnnotator, check_spec
from rlop.utils import write_jsonl
from rlop.models import precision as precision_


PAIR_FIELDS = ("output_1", "output_2", "preference", "chosen", "rejected")


@dataclass
class CollectConfig(StageConfig):
    policy: str = opt(DEFAULT_MODEL, "policy that writes the two responses (the SFT model)")
    prompts_file: str = opt("sandbox:preference", "instructions: sandbox:preference (or an exported split) for the simulated annotators; "
                            "any instruction file for reward and api")
    annotator: Literal["noisy", "gold", "reward", "api"] = opt("noisy", "who labels: noisy (simulated human: gold with p_label_flip flips) | gold "
                                                               "(sandbox) | reward (a reward model) | api (OpenAI-compatible endpoint)")
    reward_model: str = opt("", "reward model directory for --annotator reward")
    api: APIConfig = dataclasses.field(default_factory=APIConfig, metadata={"help": "API annotator options (rlop.evaluation.api_config.APIConfig)"})
    p_label_flip: float = opt(0.25, "label-flip probability of the noisy annotator (AlpacaFarm: 0.25; 0.5 is a coin)", ge=0, le=0.5)
    max_prompts: int = opt(0, "use at most this many instructions (0: all)", ge=0)
    max_new_tokens: int = opt(96, "new tokens per response", ge=1)
    seed: int = opt(0, "random seed (sampling and label flips)")
    precision: precision_.Precision = opt("auto", precision_.HELP)

    PRESETS: ClassVar[dict] = {"tiny": dict(policy="tiny", max_prompts=16, max_new_tokens=12), "cpu": dict(max_new_tokens=48), "gpu": dict()}


def collect(policy: str, prompts_file: str, out: str | Path, annotator: str = "noisy", max_prompts: int = 0,
            max_new_tokens: int = 96, seed: int = 0, p_label_flip: float = 0.25, cfg: CollectConfig | None = None) -> Path:
    examples = load_instructions(prompts_file, limit=max_prompts or None)
    if annotator in ("noisy", "gold"):
        for n, e in enumerate(examples, start=1):  # before sampling anything
            spec = e.meta.get("spec")
            if spec is None:
                raise DataError(prompts_file, f"record {n}", "spec", "missing: simulated annotators need sandbox tasks "
                                "(use sandbox:preference or a split from rlop sandbox export, or --annotator reward or api)")
            problem = check_spec(spec)
            if problem:
                raise DataError(prompts_file, f"record {n}", "spec", problem)
        ann = NoisyAnnotator(p_label_flip, seed) if annotator == "noisy" else GoldAnnotator()
    c = cfg or CollectConfig()
    if annotator not in ("noisy", "gold"):
        from rlop.evaluation.annotators import make_annotator

        api = c.api.annotator_options(seed)
        ann = make_annotator(annotator, c.reward_model or None, precision=c.precision, **(api if annotator == "api" else {}))
    with staged(out, "collect", main=is_main_process()) as tmp:
        sets = sample_responses(policy, examples, 2, SamplingConfig(max_new_tokens=max_new_tokens, temperature=1.0, top_p=0.9, top_k=0, do_sample=True, batch_size=32), seed, desc="collect",
                                  precision=c.precision)
        if hasattr(ann, "prefetch"):  # api: concurrent requests up front; reward: batched scores
            ann.prefetch([(s.example, *s.responses) for s in sets])
        rows, left_out = [], {"identical": 0, "no_verdict": 0}
        for s in sets:
            a, b = s.responses
            pref = ann.prefer(s.example, a, b) if a != b else 0
            if pref in (0, None):  # identical outputs carry no preference (AlpacaFarm drops them); a failed item has none
                left_out["identical" if pref == 0 else "no_verdict"] += 1
                continue
            # the prompt's own metadata first: a prompt file that already holds a pair (sandbox:preference does)
            # must not overwrite the policy's samples and their label
            meta = {k: v for k, v in s.example.meta.items() if k not in PAIR_FIELDS}
            rows.append({**meta, "instruction": s.example.instruction, "input": s.example.input, "output_1": a, "output_2": b,
                         "preference": pref})
        if not rows:
            from rlop.evaluation.annotators import AnnotatorError

            raise AnnotatorError(f"no labelled pair out of {len(sets)} instructions ({left_out}); nothing written")
        write_jsonl(tmp / "preferences.jsonl", rows)
        stats = {"instructions": len(sets), "pairs": len(rows), "left_out": left_out, "annotator": annotator,
                 **({"annotator_stats": dict(ann.stats)} if hasattr(ann, "stats") else {})}
        (tmp / "collect_stats.json").write_text(json.dumps(stats, indent=2, allow_nan=False))
    return Path(out) / "preferences.jsonl"


def run_collect(cfg: CollectConfig, out: str | Path) -> Path:
    return collect(cfg.policy, cfg.prompts_file, out, cfg.annotator, cfg.max_prompts, cfg.max_new_tokens, cfg.seed, cfg.p_label_flip, cfg)
