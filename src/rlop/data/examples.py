"""The example types every stage passes around, and the error for bad input data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlop.errors import UserError


class DataError(UserError, ValueError):
    def __init__(self, path: str | Path, line: int | str | None, field: str | None, message: str):
        self.path, self.line, self.field = str(path), line, field
        loc = f"line {line}" if isinstance(line, int) else line
        where = str(path) + (f", {loc}" if loc else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")


@dataclass
class InstructionExample:
    instruction: str
    input: str = ""
    output: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreferenceExample:
    instruction: str
    input: str
    chosen: str
    rejected: str
    meta: dict[str, Any] = field(default_factory=dict)
