"""Best-of-n baseline: sample n responses per instruction from a policy, keep the one with
the highest reward (AlpacaFarm: temperature 1.0, top_p 0.9)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rlop.distributed import is_main_process
from rlop.config import opt, require
from rlop.data.io import load_instructions
from rlop.models.loading import DEFAULT_MODEL
from rlop.reward_functions import Reward, load_reward
from rlop.models.sampling import SamplingOptions, sample_responses
from rlop.outputs import staged
from rlop.utils import write_jsonl


@dataclass
class BestOfNConfig(SamplingOptions):
    policy: str = opt(DEFAULT_MODEL, "policy to sample from (the SFT model)")
    reward: str = opt("", "reward: a reward model directory, 'gold' (sandbox), or python:module:function")
    prompts_file: str = opt("sandbox:eval", "instructions: JSONL/JSON, hf:NAME[:SPLIT], or sandbox:eval")
    max_prompts: int = opt(0, "use at most this many instructions (0: all)", ge=0)
    n: int = opt(16, "samples per pick", ge=1)
    draws: int = opt(1, "independent best-of-n picks per instruction (several for a less noisy evaluation)", ge=1)
    top_p: float = opt(0.9, "nucleus sampling (AlpacaFarm: 0.9)", gt=0, le=1)
    seed: int = opt(42, "random seed of the samples")

    PRESETS: ClassVar[dict] = {
        "tiny": dict(policy="tiny", n=4, max_new_tokens=12, max_prompts=8),
        "cpu": dict(n=8, max_new_tokens=96, max_prompts=200, batch_size=32),
        "gpu": dict(batch_size=128),
    }


def best_of_n(cfg: BestOfNConfig, reward: Reward | None = None, examples=None) -> list[dict]:
    examples = examples if examples is not None else load_instructions(cfg.prompts_file, limit=cfg.max_prompts or None)
    reward = reward or load_reward(cfg.reward, precision=cfg.precision)
    sampling = cfg.sampling()
    sets = sample_responses(cfg.policy, examples, cfg.n * cfg.draws, sampling, cfg.seed, desc="best-of-n", precision=cfg.precision)
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
    """Write ``out/outputs.jsonl`` (published only when complete)."""
    if reward is None:
        require(cfg, "reward", "a reward model directory, 'gold', or python:module:function")
    with staged(out, "bon", main=is_main_process()) as tmp:
        write_jsonl(tmp / "outputs.jsonl", best_of_n(cfg, reward))
    return Path(out) / "outputs.jsonl"
