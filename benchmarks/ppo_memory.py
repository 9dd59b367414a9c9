"""One PPO step of rlop on randomly initialised Llama models of 1B and 8B parameters: seconds and
peak GPU memory, with the memory options that make them fit (LoRA on policy and value model,
gradient checkpointing, bf16 frozen reference and reward model).

The models are random (no weights can be fetched on the check machine), saved once in bf16 to a
scratch folder; their shapes are those of Llama-3.2-1B and Llama-3.1-8B. The reward is a Python
function, so the step measures the policy, reference and value models. Needs one CUDA GPU.

    python benchmarks/ppo_memory.py [--sizes 1b,8b] [--scratch /tmp/rlop-mem]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

SHAPES = {  # hidden, layers, heads, kv heads, intermediate
    "1b": (2048, 16, 32, 8, 8192),
    "8b": (4096, 32, 32, 8, 14336),
}


def make_model(size: str, folder: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlop.models.loading import load_tokenizer

    if (folder / "config.json").exists():
        return folder
    tok = load_tokenizer("builtin:smollm2-135m-instruct")
    h, n, heads, kv, inter = SHAPES[size]
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=h, num_hidden_layers=n, num_attention_heads=heads, num_key_value_heads=kv,
                      intermediate_size=inter, max_position_embeddings=2048, tie_word_embeddings=False,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    del model
    torch.cuda.empty_cache()
    return folder


def one_step(size: str, model_dir: Path) -> dict:
    import torch

    from rlop.config import build_config
    from rlop.reward_functions import CallableReward
    from rlop.training.ppo import PPOConfig, PPOTrainer

    torch.cuda.reset_peak_memory_stats()
    cfg = build_config(PPOConfig, "cpu", overrides={
        "policy": str(model_dir), "steps": 2, "rollout_batch_size": 8, "step_batch_size": 8, "micro_batch_size": 4, "response_len": 32,
        "generation_batch_size": 8, "lora_r": 16, "value_lora_r": 16, "gradient_checkpointing": True, "frozen_dtype": "bf16", "save_steps": 100})
    t0 = time.time()
    with tempfile.TemporaryDirectory() as out:
        tr = PPOTrainer(cfg, reward=CallableReward(lambda i, x, r: float(len(r) % 7)), out=out)
        load = time.time() - t0
        times = []
        tr.train(on_step=lambda s: times.append(s["seconds"]))
    params = sum(p.numel() for p in tr.actor_critic.policy.parameters())
    return {"size": size, "policy_parameters_b": round(params / 1e9, 2), "load_s": round(load, 1), "step_s": [round(t, 1) for t in times],
            "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1b,8b")
    ap.add_argument("--scratch", default=str(Path(tempfile.gettempdir()) / "rlop-mem"))
    args = ap.parse_args()
    rows = []
    for size in args.sizes.split(","):
        d = make_model(size, Path(args.scratch) / size)
        rows.append(one_step(size, d))
        print(json.dumps(rows[-1]), flush=True)
    print("| model | parameters (B) | load (s) | step seconds | peak GPU memory (GB) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| random Llama {r['size']} | {r['policy_parameters_b']} | {r['load_s']} | {r['step_s']} | {r['peak_gb']} |")


if __name__ == "__main__":
    main()
