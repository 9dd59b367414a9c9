"""Property: every data reader, fed random malformed input, either succeeds or raises DataError
(exit 2 from the CLI): never another exception, never a hang."""

import json
import random

import pytest

from rlop.data.io import DataError, load_instructions, load_preferences
from rlop.data.samples import load_samples

GOOD = [
    {"instruction": "Say hi", "input": "", "output": "hi"},
    {"instruction": "Q", "input": "x", "output_1": "a", "output_2": "b", "preference": 1},
    {"prompt": "Q", "chosen": "a", "rejected": "b"},
    {"instruction": "Q", "input": "", "responses": ["a", "b"], "meta": {}},
]
ODD_VALUES = [None, True, 0, -1, 2, 3.5, float("inf"), "", " ", "x" * 200_000, [], ["a", 1], {}, {"a": {"b": []}}, "\u2028\x00\ud7ff", 10**40]
KEYS = ["instruction", "input", "output", "output_1", "output_2", "preference", "prompt", "chosen", "rejected", "responses", "meta", "spec"]


def mutate(rng: random.Random) -> bytes:
    """One malformed (or sometimes valid) JSONL/JSON document."""
    kind = rng.randrange(9)
    if kind == 0:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    if kind == 1:  # a truncated line
        line = json.dumps(rng.choice(GOOD))
        return (line + "\n" + line[: rng.randrange(1, len(line))]).encode()
    if kind == 2:  # deep nesting
        return ("[" * rng.choice([10, 5000, 100_000])).encode()
    if kind == 3:  # a huge integer literal
        return ('{"instruction": "q", "preference": ' + "9" * 6000 + "}").encode()
    if kind == 4:  # a JSON document that is not a list of records
        return json.dumps(rng.choice([{"instruction": "q"}, 3, "text", [1, 2], [[{}]], None])).encode()
    if kind == 5:  # non-UTF-8 inside an otherwise fine line
        return json.dumps(rng.choice(GOOD)).encode()[:-2] + b'\xff\xfe"}'
    recs = []
    for _ in range(rng.randrange(1, 5)):  # records with wrong types, missing and odd fields
        rec = dict(rng.choice(GOOD))
        for _ in range(rng.randrange(0, 4)):
            k = rng.choice(KEYS)
            if rng.random() < 0.3:
                rec.pop(k, None)
            else:
                rec[k] = rng.choice(ODD_VALUES)
        recs.append(rec)
    if kind == 6:
        return json.dumps(recs).encode()
    text = "\n".join(json.dumps(r) if rng.random() < 0.9 else "NaN" for r in recs)
    return ("\ufeff" if kind == 7 else "").encode() + text.encode("utf-8", "surrogatepass")


READERS = {
    "instructions": lambda p: load_instructions(p),
    "demonstrations": lambda p: load_instructions(p, require_output=True),
    "preferences": load_preferences,
    "samples": load_samples,
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("reader", list(READERS))
def test_random_malformed_input_gives_data_error_or_records(tmp_path, reader):
    rng = random.Random(list(READERS).index(reader))
    outcomes = {"ok": 0, "data_error": 0}
    for i in range(150):
        f = tmp_path / (f"case{i}.json" if i % 5 == 0 else f"case{i}.jsonl")
        f.write_bytes(mutate(rng))
        try:
            READERS[reader](f)
            outcomes["ok"] += 1
        except DataError as e:
            assert str(f) in str(e)
            outcomes["data_error"] += 1
    assert outcomes["data_error"] > 50  # the generator does produce bad input


@pytest.mark.timeout(300)
def test_malformed_file_through_the_cli_exits_2(tmp_path, capsys):
    from rlop.cli import main

    rng = random.Random(7)
    for i in range(8):
        f = tmp_path / f"bad{i}.jsonl"
        f.write_bytes(mutate(rng) if i else b"[" * 100_000)
        code = main(["reward", "--preset", "tiny", "--train-file", str(f), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        if code != 0:
            assert code == 2 and "rlop: error:" in err and "Traceback" not in err, err
        assert not (tmp_path / "o").exists() or code == 0
