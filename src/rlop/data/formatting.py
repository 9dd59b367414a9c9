"""Prompt formatting: one function used by SFT, reward models, PPO, sampling and evaluation."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def user_message(instruction: str, input: str = "") -> str:
    return f"{instruction}\n\n{input}" if input else instruction


def format_prompt(tokenizer: PreTrainedTokenizerBase, instruction: str, input: str = "") -> str:
    """Render an instruction (plus optional input) as the text the model continues.

    With a chat template the instruction becomes a user turn followed by the generation
    prompt; without one, the Alpaca template (AlpacaFarm's ``v0_inputs_noinputs``) is used.
    The returned string already holds any special tokens; tokenize it with
    ``add_special_tokens=False``.
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user_message(instruction, input)}],
            tokenize=False,
            add_generation_prompt=True,
        )
    if input:
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
    return ALPACA_NO_INPUT.format(instruction=instruction)
