"""The reward interface: (instruction examples, responses) in, one float per response out.

PPO, best-of-n and SPG take any :class:`Reward`:

* :class:`RewardModelReward` - a saved reward model, scored with its own tokenizer and
  prompt format (so the policy and the RM may use different tokenizers);
* :class:`CallableReward` - any Python function ``f(instruction, input, response) -> float``;
* ``gold`` - :class:`rlop.sandbox.gold.GoldAnnotator`, the sandbox gold score (needs the task spec in ``example.meta``).

``load_reward("DIR" | "gold" | "python:pkg.module:function")`` builds one from a string.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Protocol, Sequence

from rlop.data.io import InstructionExample


class Reward(Protocol):
    def __call__(self, examples: Sequence[InstructionExample], responses: Sequence[str]) -> list[float]: ...


class RewardModelReward:
    def __init__(self, path: str | Path, max_length: int | None = None, batch_size: int = 16, device: str | None = None,
                 precision: str = "auto", **model_kwargs):
        from rlop.models.reward_model import RewardModelScorer

        self.path = str(path)
        self.scorer = RewardModelScorer(path, max_length=max_length, batch_size=batch_size, device=device, precision=precision, **model_kwargs)

    def __call__(self, examples, responses):
        return self.scorer.score([e.instruction for e in examples], [e.input for e in examples], responses)


class CallableReward:
    def __init__(self, fn: Callable[[str, str, str], float]):
        self.fn = fn

    def __call__(self, examples, responses):
        return [float(self.fn(e.instruction, e.input, r)) for e, r in zip(examples, responses)]


def load_reward(spec: str, precision: str = "auto", **kw) -> Reward:
    """``precision``: of a reward model's forward passes (the gold and Python rewards run none)."""
    if spec == "gold":
        from rlop.sandbox.gold import GoldAnnotator

        return GoldAnnotator()
    if spec.startswith("python:"):
        mod, _, fn = spec[len("python:"):].rpartition(":")
        return CallableReward(getattr(importlib.import_module(mod), fn))
    return RewardModelReward(spec, precision=precision, **kw)
