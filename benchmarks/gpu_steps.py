"""One sampling call and one PPO step of rlop on randomly initialised models of SmolLM2-135M's,
Llama-3.2-1B's and Llama-3.1-8B's shapes, on the machine's device (CUDA when there is one):
seconds, generated tokens per second and peak memory, one line per part.

No weights can be fetched on the GPU check machine, so the models are random: SmolLM2-135M's
shape is the built-in model's own ``config.json``, the Llama shapes are written below. Each is
built in bf16 with the SmolLM2 tokenizer and saved once to a scratch folder. The reward is a
Python function, so a PPO step measures the policy, reference and value models. A random model
rarely samples EOS, so every row decodes the whole budget: tokens per second are a full load.

    python benchmarks/gpu_steps.py [--sizes 135m,1b] [--preset gpu] [--small]   # scripts/gpu_check.sh
    python benchmarks/gpu_steps.py --sizes 8b --lora                              # 8B: LoRA on policy and value, checkpointing

``--small`` shrinks every shape (2 decoder layers, 8 rows, 16 tokens) so that the same code runs in
a CPU's memory and minutes: the dry run of ``scripts/gpu_check.sh``. Its figures say only that the
path works.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

LLAMA_SHAPES = {  # hidden, layers, heads, kv heads, intermediate (Llama-3.2-1B, Llama-3.1-8B)
    "1b": (2048, 16, 32, 8, 8192),
    "8b": (4096, 32, 32, 8, 14336),
}
BUILTIN = "builtin:smollm2-135m-instruct"


def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def peak_mb() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else None


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def make_model(size: str, folder: Path, layers: int | None = None) -> Path:
    """A random bf16 model of the named shape with the SmolLM2 tokenizer, saved in ``folder`` (once);
    ``layers`` keeps only that many decoder layers (the CPU dry run's smaller shapes)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    from rlop.models.loading import load_tokenizer, resolve_model

    if (folder / "config.json").exists():
        return folder
    tok = load_tokenizer(BUILTIN)
    if size == "135m":
        cfg = AutoConfig.from_pretrained(resolve_model(BUILTIN))  # only the config: no weights are read
    else:
        h, n, heads, kv, inter = LLAMA_SHAPES[size]
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=h, num_hidden_layers=n, num_attention_heads=heads, num_key_value_heads=kv,
                          intermediate_size=inter, max_position_embeddings=2048, tie_word_embeddings=False,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if layers:
        cfg.num_hidden_layers = layers
    torch.manual_seed(0)
    with device():
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    del model
    reset_peak()
    return folder


def sample_once(size: str, model_dir: Path, rows: int, new_tokens: int, batch: int) -> dict:
    """One sampling call: ``rows`` rows (16 sandbox prompts, side by side), bf16 autocast."""
    import torch

    from rlop.data.formatting import format_prompt
    from rlop.data.io import load_instructions
    from rlop.models.generation import HFBackend, SamplingConfig
    from rlop.models.loading import load_causal_lm, load_tokenizer

    reset_peak()
    tok = load_tokenizer(str(model_dir))
    model = load_causal_lm(str(model_dir), dtype=torch.bfloat16).to(device()).eval()
    prompts = [format_prompt(tok, e.instruction, e.input) for e in load_instructions("sandbox:unlabeled", limit=16)]
    rows_ = [prompts[i % len(prompts)] for i in range(rows)]
    cfg = SamplingConfig(max_new_tokens=new_tokens, batch_size=batch)
    backend = HFBackend(model, tok, precision="bf16")
    backend.generate(rows_[:batch], SamplingConfig(max_new_tokens=4, batch_size=batch), list(range(batch)))  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    gen = backend.generate(rows_, cfg, list(range(rows)))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    tokens = int(gen.response_mask.sum())
    return {"part": "sample", "size": size, "rows": rows, "new_tokens": new_tokens, "batch": batch, "seconds": round(dt, 2),
            "tokens": tokens, "tokens_per_s": round(tokens / dt), "peak_cuda_mb": peak_mb()}


def ppo_step(size: str, model_dir: Path, preset: str, small: bool, lora: bool) -> dict:
    """One PPO step at ``preset``'s shapes (or tiny ones with ``small``); its time includes the first step's warm-up."""
    from rlop.config import build_config
    from rlop.reward_functions import CallableReward
    from rlop.training.ppo import PPOConfig, PPOTrainer

    reset_peak()
    over = {"policy": str(model_dir), "steps": 1, "save_steps": 100, "precision": "bf16", "frozen_dtype": "bf16"}
    if small:
        over.update(rollout_batch_size=8, step_batch_size=8, micro_batch_size=4, generation_batch_size=8, response_len=16)
    if lora:
        over.update(lora_r=16, value_lora_r=16, gradient_checkpointing=True)
    cfg = build_config(PPOConfig, preset, overrides=over)
    t0 = time.time()
    steps = []
    with tempfile.TemporaryDirectory() as out:
        tr = PPOTrainer(cfg, reward=CallableReward(lambda i, x, r: float(len(r) % 7)), out=out)
        load = time.time() - t0
        tr.train(on_step=lambda s: steps.append(s))
    last = steps[-1]
    tokens = cfg.rollout_batch_size * cfg.response_len
    params = sum(p.numel() for p in tr.actor_critic.policy.parameters())
    return {"part": "ppo", "size": size, "preset": preset, "lora": lora, "parameters_b": round(params / 1e9, 3),
            "rollouts": cfg.rollout_batch_size, "response_len": cfg.response_len, "load_s": round(load, 1),
            "step_s": round(last["seconds"], 2), "generate_s": round(last["seconds_generate"], 2),
            "score_s": round(last["seconds_score"], 2), "optimise_s": round(last["seconds_optimise"], 2),
            "rollout_tokens_per_s": round(tokens / last["seconds_generate"]), "peak_cuda_mb": peak_mb()}


def line(r: dict) -> str:
    mem = f", peak {r['peak_cuda_mb']} MiB CUDA" if r["peak_cuda_mb"] is not None else ""
    if r["part"] == "sample":
        return (f"gpu_steps: sample {r['size']} bf16: {r['rows']} rows x {r['new_tokens']} tokens (batch {r['batch']}) in "
                f"{r['seconds']} s, {r['tokens_per_s']} tok/s{mem}")
    return (f"gpu_steps: ppo {r['size']} {r['preset']}{' lora' if r['lora'] else ''}: {r['rollouts']} rollouts x {r['response_len']} "
            f"tokens, step {r['step_s']} s (generate {r['generate_s']}, score {r['score_s']}, optimise {r['optimise_s']}), "
            f"{r['rollout_tokens_per_s']} rollout tok/s, load {r['load_s']} s{mem}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="135m,1b", help="comma-separated: 135m, 1b, 8b")
    ap.add_argument("--preset", default="gpu", help="the PPO preset whose shapes the step uses (default gpu)")
    ap.add_argument("--small", action="store_true", help="tiny shapes, for the CPU dry run")
    ap.add_argument("--lora", action="store_true", help="LoRA r=16 on policy and value, gradient checkpointing (for 8B)")
    ap.add_argument("--parts", default="sample,ppo")
    ap.add_argument("--scratch", default=str(Path(tempfile.gettempdir()) / "rlop-gpu-steps"))
    ap.add_argument("--json", help="also write every record to this file")
    a = ap.parse_args()
    rows = []
    for size in a.sizes.split(","):
        if size != "135m" and size not in LLAMA_SHAPES:
            ap.error(f"unknown size {size!r}; choose from 135m, {', '.join(LLAMA_SHAPES)}")
        d = make_model(size, Path(a.scratch) / size, layers=2 if a.small else None)
        if "sample" in a.parts:
            rows.append(sample_once(size, d, *((8, 16, 8) if a.small else (256, 256, 128))))
            print(line(rows[-1]), flush=True)
        if "ppo" in a.parts:
            rows.append(ppo_step(size, d, a.preset, a.small, a.lora))
            print(line(rows[-1]), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
