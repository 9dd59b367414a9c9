"""Reading instruction and preference data with errors that name file, line and field.

Formats (JSONL, or a JSON list):

* instructions (Alpaca): ``instruction`` (str), optional ``input`` (str), ``output`` (str,
  required only where demonstrations are needed);
* preferences (AlpacaFarm): ``instruction``, ``input``, ``output_1``, ``output_2``,
  ``preference`` (1 or 2); or (TRL) ``prompt``, ``chosen``, ``rejected``;
* TRL's formats: ``prompt`` (+ ``completion``) records, and conversational records whose
  fields are lists of messages (``messages``, ``prompt``/``chosen``/``rejected``, implicit
  prompt): see :mod:`rlop.data.conversational`.

A ``hf:NAME[:SPLIT]`` path loads a Hugging Face dataset (when a hub is reachable).
Any problem raises :class:`DataError` before training starts; the CLI turns it into
exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from rlop.data.conversational import instruction as conversational_instruction, preference as conversational_preference
from rlop.data.examples import DataError, InstructionExample, PreferenceExample  # noqa: F401 (re-exported)


def _records(path: str | Path) -> Iterator[tuple[int | str | None, Any]]:
    """Yield (line number, parsed record) from a JSONL or JSON file or a hub dataset."""
    spath = str(path)
    if spath.startswith("sandbox:"):
        from rlop.sandbox.world import load_split

        for i, rec in enumerate(load_split(spath.split(":", 1)[1])):
            yield i + 1, rec
        return
    if spath.startswith("hf:"):
        yield from _hub_records(spath[3:])
        return
    p = Path(path)
    if not p.exists():
        raise DataError(p, None, None, "file not found")
    if p.is_dir():
        raise DataError(p, None, None, "is a directory; give a JSONL or JSON file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(p, None, None, f"cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(p, line, None, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise DataError(p, None, None, "file is empty")
    if p.suffix == ".json" or text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(p, e.lineno, None, f"malformed JSON: {e.msg}") from None
        except (ValueError, RecursionError) as e:  # over-long integer literal, nesting deeper than Python's stack
            raise DataError(p, None, None, f"malformed JSON: {type(e).__name__}") from None
        if not isinstance(data, list):
            raise DataError(p, 1, None, "a .json file must hold a list of records")
        for i, rec in enumerate(data):
            yield f"record {i + 1}", rec
        return
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON strings may hold U+2028 and friends
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(p, n, None, f"malformed JSON: {e.msg} (column {e.colno})") from None
        except (ValueError, RecursionError) as e:
            raise DataError(p, n, None, f"malformed JSON: {type(e).__name__}") from None
        yield n, rec


def _hub_records(name: str) -> Iterator[tuple[int | None, Any]]:
    import datasets

    repo, _, split = name.partition(":")
    parts = repo.split("/")
    config = parts[2] if len(parts) > 2 else None
    try:
        ds = datasets.load_dataset("/".join(parts[:2]), config, split=split or "train")
    except Exception as e:  # datasets raises many types (hub, network, split, format); all are the user's to fix
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"hf:{name}", None, None, f"cannot load the dataset: {first}") from None
    for i, rec in enumerate(ds):
        yield i + 1, rec


def _str_field(path, line, rec: dict, name: str, required: bool = True, allow_empty: bool = False) -> str:
    if name not in rec or rec[name] is None:
        if required:
            raise DataError(path, line, name, "missing")
        return ""
    v = rec[name]
    if not isinstance(v, str):
        raise DataError(path, line, name, f"expected a string, got {type(v).__name__}")
    if required and not allow_empty and not v.strip():
        raise DataError(path, line, name, "empty")
    return v


def _check_record(path, line, rec) -> dict:
    if not isinstance(rec, dict):
        raise DataError(path, line, None, f"expected a JSON object, got {type(rec).__name__}")
    return rec


def load_instructions(path: str | Path, require_output: bool = False, limit: int | None = None,
                      allow_empty_output: bool = False) -> list[InstructionExample]:
    """Instruction records; ``allow_empty_output`` accepts ``"output": ""`` (a model output may be empty)."""
    out = []
    for line, rec in _records(path):
        rec = _check_record(path, line, rec)
        if "instruction" not in rec and ("messages" in rec or "prompt" in rec):  # TRL: conversational or prompt/completion
            text, output = conversational_instruction(path, line, rec)
            if output is None and require_output:
                raise DataError(path, line, "messages" if "messages" in rec else "completion", "missing: demonstrations need a reply")
            out.append(InstructionExample(text, "", output, {k: v for k, v in rec.items() if k not in ("messages", "prompt", "completion")}))
            if limit and len(out) >= limit:
                break
            continue
        ex = InstructionExample(
            instruction=_str_field(path, line, rec, "instruction"),
            input=_str_field(path, line, rec, "input", required=False),
            output=_str_field(path, line, rec, "output", required=require_output, allow_empty=allow_empty_output)
            if (require_output or "output" in rec) else None,
            meta={k: v for k, v in rec.items() if k not in ("instruction", "input", "output")},
        )
        out.append(ex)
        if limit and len(out) >= limit:
            break
    if not out:
        raise DataError(path, None, None, "no records")
    return out


def load_preferences(path: str | Path, limit: int | None = None) -> list[PreferenceExample]:
    out = []
    for line, rec in _records(path):
        rec = _check_record(path, line, rec)
        if isinstance(rec.get("chosen"), list) or isinstance(rec.get("prompt"), list):  # TRL conversational
            instr, chosen, rejected = conversational_preference(path, line, rec)
            ex = PreferenceExample(instruction=instr, input="", chosen=chosen, rejected=rejected)
        elif "chosen" in rec or "prompt" in rec:
            prompt = _str_field(path, line, rec, "prompt")
            ex = PreferenceExample(
                instruction=prompt,
                input="",
                chosen=_str_field(path, line, rec, "chosen", allow_empty=True),
                rejected=_str_field(path, line, rec, "rejected", allow_empty=True),
            )
        else:
            pref = rec.get("preference")
            if "preference" not in rec:
                raise DataError(path, line, "preference", "missing")
            if isinstance(pref, bool) or pref not in (1, 2):
                raise DataError(path, line, "preference", f"must be 1 or 2, got {pref!r}")
            o1 = _str_field(path, line, rec, "output_1", allow_empty=True)
            o2 = _str_field(path, line, rec, "output_2", allow_empty=True)
            ex = PreferenceExample(
                instruction=_str_field(path, line, rec, "instruction"),
                input=_str_field(path, line, rec, "input", required=False),
                chosen=o1 if pref == 1 else o2,
                rejected=o2 if pref == 1 else o1,
                meta={k: v for k, v in rec.items() if k not in ("instruction", "input", "output_1", "output_2", "preference")},
            )
        out.append(ex)
        if limit and len(out) >= limit:
            break
    if not out:
        raise DataError(path, None, None, "no records")
    return out




DRAWS = (0, 1.5)  # AlpacaEval writes a draw as 0 or 1.5


def load_labelled_pairs(path: str | Path, limit: int | None = None) -> tuple[list[tuple[InstructionExample, str, str, float]], dict[str, int]]:
    """Pairs with a verdict, for measuring an annotator: ``(example, output_1, output_2, label)``.

    ``label`` is 1 or 2 (that output won) or 1.5 (a draw; AlpacaEval's 0 is read as 1.5).
    Records without a verdict (``preference`` missing or null) are skipped and counted."""
    out, skipped = [], 0
    for line, rec in _records(path):
        rec = _check_record(path, line, rec)
        pref = rec.get("preference")
        if pref is None:
            skipped += 1
            continue
        if isinstance(pref, bool) or pref not in (1, 2, *DRAWS):
            raise DataError(path, line, "preference", f"must be 1, 2, or a draw (0 or 1.5), got {pref!r}")
        ex = InstructionExample(_str_field(path, line, rec, "instruction"), _str_field(path, line, rec, "input", required=False),
                                meta={k: v for k, v in rec.items() if k not in ("instruction", "input", "output_1", "output_2", "preference")})
        o1 = _str_field(path, line, rec, "output_1", allow_empty=True)
        o2 = _str_field(path, line, rec, "output_2", allow_empty=True)
        out.append((ex, o1, o2, 1.5 if pref in DRAWS else float(pref)))
        if limit and len(out) >= limit:
            break
    if not out:
        raise DataError(path, None, None, "no record with a verdict (preference 1, 2, 0 or 1.5)")
    return out, {"no_verdict": skipped}
