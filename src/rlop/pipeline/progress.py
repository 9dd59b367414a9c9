"""The run-level progress view of ``rlop run``: which stage, how far, and when it ends.

Each stage gets an estimate before the run starts: its amount of work (examples, generated
tokens, PPO rollouts, ...) times seconds per unit measured on the reference machine (the
``cpu`` preset on 2 CPU cores: the numbers come from a default run's ``stage.json``
timings). As stages finish, the estimates are rescaled by how fast this
machine actually was, so the run's ETA corrects itself after the first stage. Cached stages
cost nothing. Inside a stage its own tqdm bar shows step-level progress and ETA.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

# Seconds per unit of work on 2 CPU cores with bf16 autocast, from the stage timings of the default
# `rlop run` (README): stage seconds / units.
SECONDS_PER_UNIT = {
    "sft": 0.35,  # per demonstration and epoch
    "collect": 0.0032,  # per generated token budget (prompts x 2 x max_new_tokens)
    "rm": 0.32,  # per preference prompt and epoch (x 1.8 with view pairs)
    "ppo": 0.0192,  # per rollout token budget (steps x rollouts x response_len)
    "samples": 0.0024,  # per sampled token budget
    "spg": 0.052,  # per sampled response (clustering with the judge)
    "bon": 0.0044,  # per sampled token budget (prompts x n x draws x max_new_tokens)
    "outputs": 0.0040,  # per token budget of the evaluation outputs
}


def ppo_seconds(steps: int, rollouts: int, response_len: int) -> float:
    """Estimated seconds of a PPO run on 2 CPU cores with SmolLM2-135M (SECONDS_PER_UNIT's rate)."""
    return SECONDS_PER_UNIT["ppo"] * steps * rollouts * response_len


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


@dataclass
class RunProgress:
    """Prints one line when a stage starts and one when it ends, with the run's ETA.

    With ``--seeds`` each seed's run gets the seconds still to come after it (``later``,
    estimated, unscaled) and the timings of the seeds before (``timings``, shared), so its
    ETA covers the whole command and learns from every stage run so far."""

    estimates: dict[str, float]  # stage -> estimated seconds, in run order
    log: Callable[..., None] = print
    t0: float = field(default_factory=time.time)
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)  # stage -> (estimate, actual) when it ran
    later: float = 0.0  # estimated seconds of the runs still to come after this one (other seeds)
    _finished: set[str] = field(default_factory=set)

    def _scale(self) -> float:
        est = sum(e for e, _ in self.timings.values())
        act = sum(a for _, a in self.timings.values())
        return act / est if est > 0 and act > 0 else 1.0

    def remaining(self) -> float:
        return self._scale() * (sum(e for s, e in self.estimates.items() if s not in self._finished) + self.later)

    def _prefix(self, name: str) -> str:
        k = list(self.estimates).index(name) + 1 if name in self.estimates else len(self._finished) + 1
        return f"[{fmt_seconds(time.time() - self.t0)}] stage {k}/{len(self.estimates)} {name}"

    def start(self, name: str) -> float:
        est = self._scale() * self.estimates.get(name, 0.0)
        self.log(f"{self._prefix(name)}: running, about {fmt_seconds(est)} · run ETA {fmt_seconds(self.remaining())}", flush=True)
        return time.time()

    def cached(self, name: str) -> None:
        self._finished.add(name)
        self.log(f"{self._prefix(name)}: cached", flush=True)

    def finish(self, name: str, started: float) -> None:
        took = time.time() - started
        if self.estimates.get(name, 0.0) > 0:
            self.timings[name] = (self.estimates[name], took)
        self._finished.add(name)
        self.log(f"{self._prefix(name)}: done in {fmt_seconds(took)} · run ETA {fmt_seconds(self.remaining())}", flush=True)
