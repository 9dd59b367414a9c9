"""Best-of-n baseline: sample n responses per instruction from a policy, keep the one with
the highest reward (AlpacaFarm: temperature 1.0, top_p 0.9)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from rlop.data.io import load_instructions
from rlop.models.generation import SamplingConfig
from rlop.models.loading import DEFAULT_MODEL
from rlop.rewards import Reward, load_reward
from rlop.rlp.samples import sample_responses
from rlop.utils import write_jsonl


@dataclass
class BestOfNConfig:
    policy: str = field(default=DEFAULT_MODEL, metadata={"help": "policy to sample from (the SFT model)"})
    reward: str = field(default="", metadata={"help": "reward model dir, 'gold', or python:module:function"})
    prompts_file: str = "sandbox:eval"
    max_prompts: int = 0
    n: int = 16
    draws: int = field(default=1, metadata={"help": "independent best-of-n picks per instruction (several for a less noisy evaluation)"})
    temperature: float = 1.0
    top_p: float = 0.9
    max_new_tokens: int = 300
    batch_size: int = 32
    seed: int = 42

    PRESETS: ClassVar[dict] = {
        "tiny": dict(policy="tiny", n=4, max_new_tokens=12, max_prompts=8),
        "cpu": dict(n=8, max_new_tokens=96, max_prompts=200, batch_size=32),
    }


def best_of_n(cfg: BestOfNConfig, reward: Reward | None = None, examples=None) -> list[dict]:
    examples = examples if examples is not None else load_instructions(cfg.prompts_file, limit=cfg.max_prompts or None)
    reward = reward or load_reward(cfg.reward)
    sampling = SamplingConfig(cfg.max_new_tokens, cfg.temperature, cfg.top_p, 0, True, cfg.batch_size)
    sets = sample_responses(cfg.policy, examples, cfg.n * cfg.draws, sampling, cfg.seed, desc="best-of-n")
    rows = []
    for s in sets:
        scores = reward([s.example] * len(s.responses), s.responses)
        picks = []
        for d in range(cfg.draws):  # draw d picks the best of its own n samples
            group = range(d * cfg.n, (d + 1) * cfg.n)
            k = max(group, key=lambda i: (scores[i], -i))
            picks.append((s.responses[k], scores[k]))
        row = {"instruction": s.example.instruction, "input": s.example.input, "output": picks[0][0], "reward": picks[0][1], "n": cfg.n}
        if cfg.draws > 1:
            row["outputs"] = [t for t, _ in picks]
        rows.append({**row, **s.example.meta})
    return rows


def run_best_of_n(cfg: BestOfNConfig, out: str | Path, reward: Reward | None = None) -> Path:
    rows = best_of_n(cfg, reward)
    path = Path(out) / "outputs.jsonl"
    write_jsonl(path, rows)
    return path
