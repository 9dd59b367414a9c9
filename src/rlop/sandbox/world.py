"""Splits of the sandbox world, deterministic per seed, mirroring the paper's Table 1.

Default sizes are the paper's divided by 10 (sft 1000, preference 1000, unlabeled 2000,
val 200), with 200 eval instructions (the paper's 805 is 8% of SFT; 200 gives tighter
intervals at sandbox scale). No two splits share an instruction; the eval split uses
templates and topics that no other split uses.

* ``sft``: demonstrations written by the rule-based solver (they satisfy the gold);
* ``preference``: ready-made pairs (a solver answer and a degraded one, in seeded order)
  labelled by the noisy annotator, for running ``rlop reward`` standalone; ``rlop run``
  instead collects pairs from the SFT policy (algorithm step 1);
* ``unlabeled``, ``val``: instructions only;
* ``eval``: instructions with fixed reference outputs. The reference writer is the same
  rule-based solver, but for a seeded half of the tasks it answers wrong (definite tasks:
  off by one or two, the other option, a misspelt reversal, a swapped order) or breaks one
  constraint (open tasks). The reference is therefore a fixed, mediocre yardstick, the
  sandbox's text-davinci-003.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rlop.config import StageConfig, opt
from rlop.data.examples import DataError, InstructionExample
from rlop.outputs import staged
from rlop.sandbox.gold import NoisyAnnotator
from rlop.sandbox.tasks import FAMILIES, write_answer, write_open
from rlop.utils import derive_seed

SPLITS = ("sft", "preference", "unlabeled", "val", "eval")


@dataclass
class SandboxConfig(StageConfig):
    seed: int = opt(0, "world seed: the same seed gives byte-identical splits")
    sft: int = opt(1000, "demonstrations in the sft split", ge=1)
    preference: int = opt(1000, "instructions in the preference split", ge=1)
    unlabeled: int = opt(2000, "instructions in the unlabeled split", ge=1)
    val: int = opt(200, "instructions in the val split", ge=1)
    eval: int = opt(200, "instructions (with reference outputs) in the eval split", ge=1)
    p_label_flip: float = opt(0.25, "label-flip rate of the noisy annotator on the preference split", ge=0, le=0.5)
    reference_quality: float = opt(0.5, "share of eval references that the reference writer gets right", ge=0, le=1)

    PRESETS: ClassVar[dict] = {}


@dataclass
class Task:
    id: str
    instruction: str
    input: str
    family: str
    kind: str
    spec: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {"id": self.id, "family": self.family, "kind": self.kind, "spec": self.spec}

    def example(self, output: str | None = None) -> InstructionExample:
        return InstructionExample(self.instruction, self.input, output, {**self.meta(), "dataset": self.family})


def solve(task: Task, rng: random.Random, correct: bool = True) -> str:
    if task.kind == "answer":
        return write_answer(rng, task.family, task.spec, correct)
    return write_open(rng, task.spec, satisfy=correct)


def build_world(cfg: SandboxConfig | None = None) -> dict[str, list[Task]]:
    cfg = cfg or SandboxConfig()
    seen: set[tuple[str, str]] = set()
    names = sorted(FAMILIES)
    world: dict[str, list[Task]] = {}
    for si, split in enumerate(SPLITS):
        rng = random.Random(derive_seed(cfg.seed, si))
        tasks: list[Task] = []
        n = getattr(cfg, split)
        attempts = 0
        while len(tasks) < n:
            fam = names[len(tasks) % len(names)]
            kind, make = FAMILIES[fam]
            t = make(rng, "eval" if split == "eval" else "train")
            key = (t["instruction"], t["input"])
            attempts += 1
            if key in seen:
                if attempts > 50 * n + 1000:
                    raise RuntimeError(f"sandbox: cannot make {n} distinct {split} tasks")
                continue
            seen.add(key)
            tasks.append(Task(f"{split}-{len(tasks)}", t["instruction"], t["input"], fam, kind, t["spec"]))
        world[split] = tasks
    return world


def sft_examples(world, cfg: SandboxConfig) -> list[InstructionExample]:
    rng = random.Random(derive_seed(cfg.seed, 101))
    return [t.example(solve(t, rng)) for t in world["sft"]]


def preference_examples(world, cfg: SandboxConfig) -> list[dict[str, Any]]:
    rng = random.Random(derive_seed(cfg.seed, 102))
    ann = NoisyAnnotator(cfg.p_label_flip, cfg.seed)
    rows = []
    for t in world["preference"]:
        a, b = solve(t, rng, True), solve(t, rng, rng.random() < 0.3)
        if rng.random() < 0.5:
            a, b = b, a
        pref = ann.prefer(t.spec, a, b)
        if pref == 0:
            continue
        rows.append({"instruction": t.instruction, "input": t.input, "output_1": a, "output_2": b, "preference": pref, **t.meta()})
    return rows


def reference_outputs(world, cfg: SandboxConfig) -> list[InstructionExample]:
    rng = random.Random(derive_seed(cfg.seed, 103))
    return [t.example(solve(t, rng, rng.random() < cfg.reference_quality)) for t in world["eval"]]


def split_records(split: str, cfg: SandboxConfig | None = None) -> list[dict[str, Any]]:
    cfg = cfg or SandboxConfig()
    world = build_world(cfg)
    if split == "sft":
        exs = sft_examples(world, cfg)
    elif split == "preference":
        return preference_examples(world, cfg)
    elif split == "eval":
        exs = reference_outputs(world, cfg)
    elif split in SPLITS:
        exs = [t.example() for t in world[split]]
    else:
        raise DataError(f"sandbox:{split}", None, None, f"unknown sandbox split; choose from {', '.join(SPLITS)}")
    rows = []
    for e in exs:
        r = {"instruction": e.instruction, "input": e.input}
        if e.output is not None:
            r["output"] = e.output
        r.update(e.meta)
        rows.append(r)
    return rows


def load_split(split: str, cfg: SandboxConfig | None = None) -> list[dict[str, Any]]:
    return split_records(split, cfg)


def export(out: str | Path, cfg: SandboxConfig | None = None) -> Path:
    """Write every split as JSONL into ``out`` (published only when complete)."""
    cfg = cfg or SandboxConfig()
    with staged(out, "sandbox") as tmp:
        for split in SPLITS:
            rows = split_records(split, cfg)
            with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
        (tmp / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True) + "\n")
    return Path(out)


