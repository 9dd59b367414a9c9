"""Pairwise annotators for evaluation: ``prefer(example, output_1, output_2) -> 1 | 2 | 0 | None``.

1: output_1 better; 2: output_2 better; 0: tie (identical outputs only); None: no usable
verdict (dropped from the win-rate, as AlpacaFarm does).

* ``gold``: the sandbox gold annotator (needs sandbox tasks);
* ``reward``: a reward model as judge (higher score wins);
* ``api``: any OpenAI-compatible chat-completions endpoint. Base URL from ``RLOP_API_BASE``
  (or ``OPENAI_BASE_URL``), key from ``RLOP_API_KEY`` (or ``OPENAI_API_KEY``), model from
  ``RLOP_API_MODEL``. The pair is shown in a seeded random order and un-swapped after
  parsing; HTTP errors and timeouts are retried with exponential backoff; answers that name
  neither output are counted in ``unparseable`` and dropped.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import urllib.error
import urllib.request
from typing import Any

from rlop.data.io import InstructionExample
from rlop.utils import derive_seed

PAIRWISE_PROMPT = """You are comparing two responses to the same instruction. Pick the response that follows the instruction better and is more helpful and correct.

# Instruction
{instruction}

# Output (a)
{a}

# Output (b)
{b}

Answer with exactly "Output (a)" or "Output (b)"."""

VERDICT_RE = re.compile(r"output\s*\(?\s*([ab])\s*\)?", re.I)


class GoldJudge:
    name = "gold"

    def prefer(self, ex: InstructionExample, o1: str, o2: str) -> int | None:
        from rlop.sandbox.gold import GoldAnnotator

        spec = ex.meta.get("spec")
        if spec is None:
            raise ValueError("the gold annotator needs sandbox tasks (a 'spec' field)")
        return GoldAnnotator().prefer(spec, o1, o2)


class RewardJudge:
    name = "reward"

    def __init__(self, path: str):
        from rlop.rewards import RewardModelReward

        self.reward = RewardModelReward(path)

    def prefer(self, ex, o1, o2):
        if o1 == o2:
            return 0
        a, b = self.reward([ex, ex], [o1, o2])
        return 1 if a >= b else 2


class APIJudge:
    name = "api"

    def __init__(self, base_url: str | None = None, api_key: str | None = None, model: str | None = None,
                 retries: int = 4, backoff: float = 1.0, timeout: float = 60.0, seed: int = 0):
        self.base_url = (base_url or os.environ.get("RLOP_API_BASE") or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/")
        if not self.base_url:
            raise ValueError("the api annotator needs a base URL: set RLOP_API_BASE (an OpenAI-compatible endpoint, e.g. http://host:8000/v1)")
        self.api_key = api_key or os.environ.get("RLOP_API_KEY") or os.environ.get("OPENAI_API_KEY") or ""
        self.model = model or os.environ.get("RLOP_API_MODEL", "gpt-4o-mini")
        self.retries, self.backoff, self.timeout, self.seed = retries, backoff, timeout, seed
        self.stats = {"requests": 0, "retries": 0, "unparseable": 0, "failed": 0}

    def _post(self, prompt: str) -> str:
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 16}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            self.stats["requests"] += 1
            try:
                req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers)
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    data: dict[str, Any] = json.loads(r.read().decode())
                return data["choices"][0]["message"]["content"] or ""
            except (urllib.error.URLError, TimeoutError, KeyError, json.JSONDecodeError) as e:
                last = e
                if attempt < self.retries:
                    self.stats["retries"] += 1
                    time.sleep(self.backoff * 2**attempt)
        self.stats["failed"] += 1
        raise RuntimeError(f"api annotator: {self.base_url} failed after {self.retries + 1} attempts: {last}")

    @staticmethod
    def parse(text: str) -> str | None:
        found = {m.group(1).lower() for m in VERDICT_RE.finditer(text)}
        return found.pop() if len(found) == 1 else None

    def prefer(self, ex, o1, o2):
        if o1 == o2:
            return 0
        swap = random.Random(derive_seed(self.seed, len(ex.instruction), sum(map(ord, ex.instruction + o1 + o2)))).random() < 0.5
        a, b = (o2, o1) if swap else (o1, o2)
        instr = ex.instruction + (f"\n\n{ex.input}" if ex.input else "")
        try:
            verdict = self.parse(self._post(PAIRWISE_PROMPT.format(instruction=instr, a=a, b=b)))
        except RuntimeError:
            return None
        if verdict is None:
            self.stats["unparseable"] += 1
            return None
        first_wins = verdict == "a"
        if swap:
            first_wins = not first_wins
        return 1 if first_wins else 2


def make_annotator(name: str, reward_model: str | None = None):
    if name == "gold":
        return GoldJudge()
    if name == "reward":
        if not reward_model:
            raise ValueError("--annotator reward needs --reward-model DIR")
        return RewardJudge(reward_model)
    if name == "api":
        return APIJudge()
    raise ValueError(f"unknown annotator {name!r}: gold | reward | api")
