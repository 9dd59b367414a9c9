"""TRL's conversational and prompt/completion records, read by every rlop data reader."""

import pytest

from rlop.data.io import DataError, load_instructions, load_preferences
from tests.conftest import write_jsonl


def U(t):
    return {"role": "user", "content": t}


def A(t):
    return {"role": "assistant", "content": t}


def test_preferences_explicit_and_implicit_prompt(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": [U("Name a colour.")], "chosen": [A("Blue.")], "rejected": [A("Seven.")]},
        {"chosen": [U("Add 2 and 2."), A("4")], "rejected": [U("Add 2 and 2."), A("5")]},
    ])
    a, b = load_preferences(f)
    assert (a.instruction, a.input, a.chosen, a.rejected) == ("Name a colour.", "", "Blue.", "Seven.")
    assert (b.instruction, b.chosen, b.rejected) == ("Add 2 and 2.", "4", "5")


def test_instructions_from_messages_and_prompt_completion(tmp_path):
    f = write_jsonl(tmp_path / "i.jsonl", [
        {"messages": [U("Say hi."), A("Hi!")]},
        {"prompt": [U("Count to 3.")], "completion": [A("1 2 3")]},
        {"prompt": "Spell cat.", "completion": "c-a-t"},
        {"prompt": [U("Only a prompt.")]},
    ])
    rows = load_instructions(f)
    assert [(r.instruction, r.output) for r in rows] == [("Say hi.", "Hi!"), ("Count to 3.", "1 2 3"), ("Spell cat.", "c-a-t"),
                                                         ("Only a prompt.", None)]
    with pytest.raises(DataError, match="line 4.*demonstrations need a reply"):
        load_instructions(f, require_output=True)


@pytest.mark.parametrize("rec, field, message", [
    ({"prompt": [U("a"), A("b"), U("c")], "chosen": [A("x")], "rejected": [A("y")]}, "prompt", "multi-turn prompts are not supported"),
    ({"prompt": [{"role": "system", "content": "s"}, U("a")], "chosen": [A("x")], "rejected": [A("y")]}, "prompt", "system messages"),
    ({"prompt": [U("a")], "chosen": [A("x"), A("z")], "rejected": [A("y")]}, "chosen", "one assistant message"),
    ({"prompt": [U("a")], "chosen": "x", "rejected": [A("y")]}, "chosen", "list of messages"),
    ({"prompt": [{"role": "robot", "content": "a"}], "chosen": [A("x")], "rejected": [A("y")]}, "prompt", "message 1"),
    ({"chosen": [A("x")], "rejected": [A("y")]}, "chosen", "share no prompt"),
])
def test_malformed_conversations_name_line_and_field(tmp_path, rec, field, message):
    f = write_jsonl(tmp_path / "p.jsonl", [rec])
    with pytest.raises(DataError, match=message) as e:
        load_preferences(f)
    assert e.value.line == 1 and e.value.field == field
