"""Step 1 of Algorithm 1: two policy responses per preference instruction, labelled by a
simulated annotator (noisy: AlpacaFarm's p_label_flip 0.25; or gold), as AlpacaFarm JSONL."""

from __future__ import annotations

from pathlib import Path

from rlop.data.io import load_instructions
from rlop.models.generation import SamplingConfig
from rlop.rlp.samples import sample_responses
from rlop.sandbox.gold import GoldAnnotator, NoisyAnnotator
from rlop.utils import write_jsonl


def collect(policy: str, prompts_file: str, out: str | Path, annotator: str = "noisy", max_prompts: int = 0,
            max_new_tokens: int = 96, seed: int = 0, p_label_flip: float = 0.25) -> Path:
    examples = load_instructions(prompts_file, limit=max_prompts or None)
    ann = NoisyAnnotator(p_label_flip, seed) if annotator == "noisy" else GoldAnnotator()
    sets = sample_responses(policy, examples, 2, SamplingConfig(max_new_tokens, 1.0, 0.9, 0, True, 32), seed, desc="collect")
    rows = []
    for s in sets:
        spec = s.example.meta.get("spec")
        if spec is None:
            raise ValueError(f"{prompts_file}: simulated annotators need sandbox tasks (a 'spec' field)")
        a, b = s.responses
        pref = ann.prefer(spec, a, b)
        if pref == 0:  # identical outputs carry no preference (AlpacaFarm drops them)
            continue
        rows.append({"instruction": s.example.instruction, "input": s.example.input, "output_1": a, "output_2": b,
                     "preference": pref, **s.example.meta})
    path = Path(out) / "preferences.jsonl"
    write_jsonl(path, rows)
    return path
