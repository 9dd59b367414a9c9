"""Policy-sample files: n responses per instruction (``rlop sample`` writes them).

One JSON object per line: ``instruction``, ``input``, ``responses`` (list of str), plus any
metadata of the instruction (kept under ``meta``). RLP-UML draws view pairs from them and
RLP-SPG clusters them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlop.data.io import DataError, InstructionExample, _records, _str_field


@dataclass
class SampleSet:
    example: InstructionExample
    responses: list[str]

    def to_record(self) -> dict[str, Any]:
        return {"instruction": self.example.instruction, "input": self.example.input, "responses": self.responses, "meta": self.example.meta}


def load_samples(path: str | Path) -> list[SampleSet]:
    out = []
    for line, rec in _records(path):
        if not isinstance(rec, dict):
            raise DataError(path, line, None, "expected a JSON object")
        resp = rec.get("responses")
        if not isinstance(resp, list) or not resp:
            raise DataError(path, line, "responses", "expected a non-empty list of strings")
        for r in resp:
            if not isinstance(r, str):
                raise DataError(path, line, "responses", f"expected strings, got {type(r).__name__}")
        meta = rec.get("meta") or {}
        if not isinstance(meta, dict):
            raise DataError(path, line, "meta", "expected an object")
        ex = InstructionExample(_str_field(path, line, rec, "instruction"), _str_field(path, line, rec, "input", required=False), None, meta)
        out.append(SampleSet(ex, list(resp)))
    if not out:
        raise DataError(path, None, None, "no records")
    return out


def sample_responses(
    policy: str,
    examples,
    n: int,
    sampling,
    seed: int = 0,
    trust_remote_code: bool = False,
    desc: str = "sample",
) -> list[SampleSet]:
    """n responses per instruction from a saved policy; each (instruction, k) has its own seed."""
    import torch
    from tqdm.auto import tqdm

    from rlop.data.formatting import format_prompt
    from rlop.models.generation import make_backend
    from rlop.models.loading import load_causal_lm, load_tokenizer
    from rlop.utils import derive_seed

    tok = load_tokenizer(policy, trust_remote_code)
    model = load_causal_lm(policy, trust_remote_code=trust_remote_code)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    backend = make_backend(model, tok)
    prompts = [format_prompt(tok, e.instruction, e.input) for e in examples]
    flat = [(i, k) for i in range(len(examples)) for k in range(n)]
    texts: list[str] = []
    step = max(1, sampling.batch_size)
    for s in tqdm(range(0, len(flat), step), desc=desc, unit="batch"):
        chunk = flat[s : s + step]
        g = backend.generate([prompts[i] for i, _ in chunk], sampling, [derive_seed(seed, i, k) for i, k in chunk])
        texts.extend(g.texts)
    return [SampleSet(e, texts[i * n : (i + 1) * n]) for i, e in enumerate(examples)]
