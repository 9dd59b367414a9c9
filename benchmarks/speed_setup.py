"""What the side-by-side optimiser benchmarks (ppo_speed.py, rloo_speed.py) share: the policy, a
reward model made from the same backbone, the prompts, and the per-phase table.

The policy is SmolLM2-135M-Instruct (rlop's converted built-in model); the reward model is its
backbone with a seeded random one-label head, saved once; the prompts are the first sandbox
unlabeled instructions whose chat-formatted prompt fits ``query_len`` tokens, written both as
formatted text (``prompts.json``, for TRL) and as instruction records (``prompts.json.examples``,
for rlop).
"""

from __future__ import annotations

import json
from pathlib import Path

PHASES = ("seconds", "generate", "score", "optimise")


def prepare(work: Path, n_prompts: int, query_len: int) -> tuple[str, Path, Path]:
    """(policy directory, reward-model directory, prompts file) under ``work``."""
    from rlop.data.formatting import format_prompt
    from rlop.data.io import load_instructions
    from rlop.models.loading import load_reward_model, load_tokenizer, resolve_model

    work.mkdir(exist_ok=True)
    model_dir = resolve_model("builtin:smollm2-135m-instruct")
    rm_dir = work / "rm"
    if not (rm_dir / "config.json").exists():
        import torch

        torch.manual_seed(0)
        load_reward_model(model_dir).save_pretrained(rm_dir)
        load_tokenizer(model_dir).save_pretrained(rm_dir)
    tok = load_tokenizer(model_dir)
    exs = [e for e in load_instructions("sandbox:unlabeled", limit=400)
           if len(tok(format_prompt(tok, e.instruction, e.input), add_special_tokens=False)["input_ids"]) <= query_len][:n_prompts]
    prompts = work / "prompts.json"
    prompts.write_text(json.dumps([format_prompt(tok, e.instruction, e.input) for e in exs]))
    Path(str(prompts) + ".examples").write_text(json.dumps([{"instruction": e.instruction, "input": e.input} for e in exs]))
    return model_dir, rm_dir, prompts


def phase_table(results: dict[str, dict]) -> dict[str, dict]:
    """Print one row per run (mean of its steps after the first, the warm-up) and return the rows."""
    print("| framework | s/step | generate | score | optimise | peak RSS (MB) |\n|---|---|---|---|---|---|")
    rows = {}
    for name, r in results.items():
        timed = r["step_seconds"][1:] or r["step_seconds"]
        rows[name] = {k: sum(t[k] for t in timed) / len(timed) for k in PHASES} | {"rss": r["peak_rss_mb"]}
        print(f"| {name} | " + " | ".join(f"{rows[name][k]:.1f}" for k in PHASES) + f" | {rows[name]['rss']:.0f} |")
    return rows


def ratio_line(label: str, ours: dict, theirs: dict) -> str:
    return f"ratio {label}: " + ", ".join(f"{k} {ours[k] / theirs[k]:.2f}x" for k in PHASES) + f", peak memory {ours['rss'] / theirs['rss']:.2f}x"
