"""TRL's conversational records (lists of ``{"role", "content"}`` messages) read as rlop examples.

Accepted: a prompt that is one user message; a reply that is one assistant message;
``messages`` = [user, assistant] (SFT); ``prompt`` + ``chosen`` / ``rejected`` (explicit prompt)
or ``chosen`` / ``rejected`` whole conversations that share the prompt (implicit prompt).
Multi-turn prompts and system messages are refused with a :class:`DataError` (rlop formats an
instruction and an optional input with the model's chat template; silently dropping turns
would train on a different task)."""

from __future__ import annotations

from typing import Any

from rlop.data.examples import DataError

ROLES = ("system", "user", "assistant")


def messages(path, line, field: str, value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise DataError(path, line, field, "expected a non-empty list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise DataError(path, line, field, f"message {i + 1}: expected {{\"role\": one of {', '.join(ROLES)}, \"content\": a string}}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def user_turn(path, line, field: str, msgs: list[dict[str, str]]) -> str:
    """The instruction of a prompt that is one user message."""
    if msgs[0]["role"] == "system":
        raise DataError(path, line, field, "system messages are not supported (rlop formats the instruction with the model's chat template)")
    if len(msgs) != 1 or msgs[0]["role"] != "user":
        raise DataError(path, line, field, f"a prompt must be one user message; got roles {[m['role'] for m in msgs]} (multi-turn prompts are not supported)")
    if not msgs[0]["content"].strip():
        raise DataError(path, line, field, "empty user message")
    return msgs[0]["content"]


def assistant_turn(path, line, field: str, msgs: list[dict[str, str]]) -> str:
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        raise DataError(path, line, field, f"a reply must be one assistant message; got roles {[m['role'] for m in msgs]}")
    return msgs[0]["content"]


def preference(path, line, rec: dict) -> tuple[str, str, str]:
    """(instruction, chosen, rejected) of a conversational preference record."""
    chosen = messages(path, line, "chosen", rec.get("chosen"))
    rejected = messages(path, line, "rejected", rec.get("rejected"))
    if rec.get("prompt") is not None:
        prompt = messages(path, line, "prompt", rec["prompt"])
    else:  # implicit prompt: the messages both conversations start with
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
        if not prompt:
            raise DataError(path, line, "chosen", "chosen and rejected share no prompt messages; give a prompt field")
    return user_turn(path, line, "prompt", prompt), assistant_turn(path, line, "chosen", chosen), assistant_turn(path, line, "rejected", rejected)


def instruction(path, line, rec: dict) -> tuple[str, str | None]:
    """(instruction, output or None) of ``messages`` = [user, assistant] or a ``prompt`` (+ ``completion``) record."""
    if "messages" in rec:
        msgs = messages(path, line, "messages", rec["messages"])
        return user_turn(path, line, "messages", msgs[:-1] or msgs), assistant_turn(path, line, "messages", msgs[-1:]) if len(msgs) > 1 else None
    prompt = rec.get("prompt")
    text = user_turn(path, line, "prompt", messages(path, line, "prompt", prompt)) if isinstance(prompt, list) else prompt
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, line, "prompt", "expected a non-empty string or a list of messages")
    completion = rec.get("completion")
    if isinstance(completion, list):
        completion = assistant_turn(path, line, "completion", messages(path, line, "completion", completion))
    elif completion is not None and not isinstance(completion, str):
        raise DataError(path, line, "completion", f"expected a string or a list of messages, got {type(completion).__name__}")
    return text, completion
