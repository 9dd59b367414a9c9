"""Bad input stops a command before training with exit code 2 and names file, line and field."""

import json

import pytest

from rlop.cli import main
from rlop.data import DataError, format_prompt, load_instructions, load_preferences
from tests.conftest import write_jsonl

GOOD = {"instruction": "Say hi", "input": "", "output_1": "hi", "output_2": "bye", "preference": 1}


def test_alpacafarm_and_trl_preferences(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [GOOD, {**GOOD, "preference": 2}, {"prompt": "Q", "chosen": "a", "rejected": "b"}])
    p = load_preferences(f)
    assert (p[0].chosen, p[0].rejected) == ("hi", "bye")
    assert (p[1].chosen, p[1].rejected) == ("bye", "hi")
    assert (p[2].instruction, p[2].chosen, p[2].rejected) == ("Q", "a", "b")


def test_json_list_file(tmp_path):
    f = tmp_path / "i.json"
    f.write_text(json.dumps([{"instruction": "a", "output": "b"}]))
    assert load_instructions(f, require_output=True)[0].output == "b"


BAD_CASES = [
    ("malformed", [json.dumps(GOOD), '{"instruction": "x",'], 2, None, "malformed JSON"),
    ("missing", [json.dumps(GOOD), json.dumps({k: v for k, v in GOOD.items() if k != "output_2"})], 2, "output_2", "missing"),
    ("wrong_type", [json.dumps({**GOOD, "instruction": 5})], 1, "instruction", "expected a string"),
    ("bad_pref", [json.dumps(GOOD), json.dumps(GOOD), json.dumps({**GOOD, "preference": 3})], 3, "preference", "must be 1 or 2"),
    ("pref_zero", [json.dumps({**GOOD, "preference": 0})], 1, "preference", "must be 1 or 2"),
]


@pytest.mark.parametrize("name,lines,line,field,msg", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_preference_file_raises_with_location(tmp_path, name, lines, line, field, msg):
    f = write_jsonl(tmp_path / f"{name}.jsonl", lines)
    with pytest.raises(DataError) as e:
        load_preferences(f)
    assert e.value.line == line and e.value.field == field and msg in str(e.value)
    assert str(f) in str(e.value)


def test_empty_file(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        load_preferences(f)


def test_unreadable_encoding_names_line(tmp_path):
    f = tmp_path / "latin1.jsonl"
    f.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"instruction": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(DataError) as e:
        load_preferences(f)
    assert e.value.line == 2 and "UTF-8" in str(e.value)


@pytest.mark.parametrize("cmd", ["reward", "sft"])
def test_cli_bad_input_exit_2_and_no_output(tmp_path, capsys, cmd):
    bad = write_jsonl(tmp_path / "bad.jsonl", [json.dumps(GOOD), json.dumps({**GOOD, "preference": "1"})])
    if cmd == "sft":
        bad = write_jsonl(tmp_path / "bad_sft.jsonl", [json.dumps({"instruction": "a", "output": "b"}), json.dumps({"instruction": "a"})])
    out = tmp_path / "out"
    code = main([cmd, "--preset", "tiny", "--train-file", str(bad), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(bad) in err and "line 2" in err
    assert ("preference" in err) if cmd == "reward" else ("output" in err)
    assert not out.exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_format_prompt_chat_template_and_alpaca(tiny_tok):
    p = format_prompt(tiny_tok, "Add", "2 and 3")
    assert p.endswith("<|im_start|>assistant\n") and "Add\n\n2 and 3" in p

    class NoTemplate:
        chat_template = None

    assert format_prompt(NoTemplate(), "Add", "").endswith("### Instruction:\nAdd\n\n### Response:\n")
    assert "### Input:\n2 and 3" in format_prompt(NoTemplate(), "Add", "2 and 3")
