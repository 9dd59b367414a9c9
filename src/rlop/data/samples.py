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
