"""How close rlop's sampling comes to the forward-pass throughput of this machine, and what stops it.

For SmolLM2-135M-Instruct in the precision rlop uses here (``auto``), on sandbox prompts, per batch size B:

* ``forward (full)``: one forward pass over B prompts plus 48 tokens each, in tokens/s (compute-bound:
  what scoring and training passes run at);
* ``decode step``: one KV-cached one-token step after the prompts, B tokens per step;
* ``model loop``: the least any KV-cached sampler has to run: the prompt pass (LM head on the last
  position only) and then 48 cached one-token steps with a greedy pick, nothing else, in generated
  tokens/s;
* ``rlop sampling``: ``HFBackend.generate`` with 48 new tokens per row (EOS ignored, so every row
  decodes 48 tokens), generated tokens/s.

``sampling / forward`` is the issue's ratio; ``model loop / forward`` is the ceiling the KV-cached
decode of this model leaves any sampler on this machine, and ``sampling / model loop`` is the share
that rlop's own per-step work (per-row seeded draws, masks, bookkeeping) leaves of it. The PPO phases
are timed by ``benchmarks/ppo_speed.py``, not here.

Every figure is the best of ``--repeats`` runs after a warm-up.

    python benchmarks/roofline.py [--batch-sizes 1,8,16,32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

NEW = 48


def best(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    from rlop.data.formatting import format_prompt
    from rlop.data.io import load_instructions
    from rlop.models.generation import HFBackend, SamplingConfig, cache_kwarg, cache_of, encode_prompts
    from rlop.models.loading import load_causal_lm, load_tokenizer
    from rlop.models.precision import autocast, resolve
    from rlop.models.reward_model import position_ids_from_mask

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="1,8,16,32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    a = ap.parse_args()
    torch.manual_seed(0)
    tok, model = load_tokenizer(a.model), load_causal_lm(a.model).eval()
    model.generation_config.eos_token_id = []  # every row decodes NEW tokens
    prompts = [format_prompt(tok, e.instruction, e.input) for e in load_instructions("sandbox:unlabeled", limit=64)]
    kw = cache_kwarg(model)
    rows = []
    for B in [int(x) for x in a.batch_sizes.split(",")]:
        enc, _ = encode_prompts(tok, prompts[:B], None)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        full_ids = torch.cat([ids, torch.randint(100, 1000, (B, NEW))], 1)
        full_mask = torch.cat([mask, torch.ones(B, NEW, dtype=mask.dtype)], 1)

        @torch.no_grad()
        def full():
            with autocast("cpu"):
                model(input_ids=full_ids, attention_mask=full_mask, position_ids=position_ids_from_mask(full_mask), use_cache=False)

        with torch.no_grad(), autocast("cpu"):
            out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=True)
        past = cache_of(out)
        step_ids, step_mask = torch.randint(100, 1000, (B, 1)), torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype)], 1)
        pos = position_ids_from_mask(mask)[:, -1:] + 1

        @torch.no_grad()
        def decode_step():
            with autocast("cpu"):
                model(input_ids=step_ids, attention_mask=step_mask, position_ids=pos, use_cache=True, **{kw: past})
            past.crop(-1)  # drop the step's token: the next repeat starts from the prompts alone

        @torch.no_grad()
        def model_loop():
            with autocast("cpu"):
                o = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=True, logits_to_keep=1)
                cache, m, p = cache_of(o), mask, position_ids_from_mask(mask)[:, -1:]
                for _ in range(NEW):
                    nxt = o.logits[:, -1].argmax(-1, keepdim=True)
                    m, p = torch.cat([m, torch.ones_like(nxt)], 1), p + 1
                    o = model(input_ids=nxt, attention_mask=m, position_ids=p, use_cache=True, **{kw: cache})
                    cache = cache_of(o)

        backend = HFBackend(model, tok, all_done=lambda done: False)
        cfg = SamplingConfig(NEW, 1.0, 1.0, 0, True, B)

        def sample():
            backend.generate(prompts[:B], cfg, list(range(B)))

        t_full, t_step = best(full, a.repeats), best(decode_step, a.repeats)
        t_loop, t_sample = best(model_loop, a.repeats), best(sample, a.repeats)
        r = {"batch": B, "forward_full_tok_s": B * full_ids.shape[1] / t_full, "decode_step_tok_s": B / t_step,
             "model_loop_tok_s": B * NEW / t_loop, "sampling_tok_s": B * NEW / t_sample}
        r["sampling_vs_forward"] = r["sampling_tok_s"] / r["forward_full_tok_s"]
        r["model_loop_vs_forward"] = r["model_loop_tok_s"] / r["forward_full_tok_s"]
        r["sampling_vs_model_loop"] = r["sampling_tok_s"] / r["model_loop_tok_s"]
        rows.append(r)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    print(f"\nprecision: {resolve()}, threads: {torch.get_num_threads()}, {NEW} new tokens, prompts of the sandbox unlabeled split\n")
    print("| batch | forward, full (tok/s) | decode step (tok/s) | model loop (tok/s) | rlop sampling (tok/s) "
          "| sampling / forward | model loop / forward | sampling / model loop |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['forward_full_tok_s']:.0f} | {r['decode_step_tok_s']:.0f} | {r['model_loop_tok_s']:.0f} "
              f"| {r['sampling_tok_s']:.0f} | {r['sampling_vs_forward']:.2f} | {r['model_loop_vs_forward']:.2f} | {r['sampling_vs_model_loop']:.2f} |")

if __name__ == "__main__":
    main()
