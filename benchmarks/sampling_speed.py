"""What rlop's sampling shortcuts buy, side by side: time, decoded rows and sameness.

``HFBackend`` runs the prompt pass once per distinct prompt of a batch and repeats its KV cache
rows for each sample (best-of-n, step 4, collection and evaluation draw several samples per
instruction, side by side), and drops a row from the batch and its KV cache once it has produced
EOS (when a quarter of the batch has finished, so the cache is not copied at every step), and
sorts the rows by prompt length before batching (less left padding; only where there is more
than one batch). This benchmark samples the same rows with the same seeds four ways: none of
them (rlop before them), the shared prompt pass, that and dropped rows, and all three (the default), with the default model and the
shapes of rlop's sampling stages (batch 32, 48 new tokens, temperature 1, EOS on), alternating
the settings over ``--repeats`` rounds after a warm-up round. Per setting: the best time,
generated tokens/s, the rows run through the prompt pass and through the decode steps, and the
share of samples identical to those of the first setting. A fifth setting runs the default with the
all-done check and the row pruning every 8 tokens instead of every token (``check_every``, the
schedule an accelerator gets: no device-to-host copy per token; on a CPU it can only cost the passes
run after every row has finished).

    python benchmarks/sampling_speed.py [--prompts 16] [--samples 4] [--repeats 2] [--file sandbox:unlabeled]
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    from rlop.data.formatting import format_prompt
    from rlop.data.io import load_instructions
    from rlop.models.generation import HFBackend, SamplingConfig
    from rlop.models.loading import load_causal_lm, load_tokenizer
    from rlop.models.precision import resolve

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4, help="samples per prompt, side by side (rows = prompts x samples)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--file", default="sandbox:unlabeled", help="instructions to sample (any file rlop reads)")
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    a = ap.parse_args()
    tok, model = load_tokenizer(a.model), load_causal_lm(a.model).eval()
    prompts = [format_prompt(tok, e.instruction, e.input) for e in load_instructions(a.file, limit=a.prompts)]
    rows = [p for p in prompts for _ in range(a.samples)]
    seeds = list(range(len(rows)))
    cfg = SamplingConfig(max_new_tokens=a.max_new_tokens, batch_size=a.batch_size)
    passes = {"prompt": 0, "decode": 0}

    def count(module, args, kwargs, out):  # rows through the prompt pass, and through the one-token decode steps
        passes["decode" if kwargs["input_ids"].shape[1] == 1 else "prompt"] += kwargs["input_ids"].shape[0]

    model.register_forward_hook(count, with_kwargs=True)
    settings = {"neither": dict(share_prompts=False, prune_finished=False, sort_prompts=False),
                "shared prompt pass": dict(prune_finished=False, sort_prompts=False),
                "shared + finished rows dropped": dict(sort_prompts=False),
                "shared + dropped + sorted by prompt length (default)": dict(),
                "default, host checks every 8 tokens (the accelerator schedule)": dict(check_every=8)}
    best, rowcount, outs = {}, {}, {}
    for r in range(a.repeats + 1):  # round 0 warms up
        for name, kw in settings.items():
            backend = HFBackend(model, tok, **kw)
            passes.update(prompt=0, decode=0)
            t0 = time.perf_counter()
            outs[name] = backend.generate(rows, cfg, seeds)
            dt = time.perf_counter() - t0
            if r:
                best[name] = min(best.get(name, dt), dt)
            rowcount[name] = dict(passes)
    first = outs["neither"]
    tokens = int(first.response_mask.sum())
    print(f"{a.model}, precision {resolve()}, {torch.get_num_threads()} threads, {len(rows)} rows ({a.prompts} prompts of {a.file} x "
          f"{a.samples}), batch {a.batch_size}, {a.max_new_tokens} new tokens, mean response {tokens / len(rows):.1f} tokens, best of {a.repeats}\n")
    print("| setting | seconds | generated tok/s | time vs neither | prompt-pass rows | decode row-steps | samples identical to neither |")
    print("|---|---|---|---|---|---|---|")
    for name in settings:
        same = sum(x == y for x, y in zip(first.texts, outs[name].texts)) / len(rows)
        n_tok = int(outs[name].response_mask.sum())
        print(f"| {name} | {best[name]:.1f} | {n_tok / best[name]:.0f} | {best[name] / best['neither']:.2f}x | {rowcount[name]['prompt']} "
              f"| {rowcount[name]['decode']} | {same:.1%} |")


if __name__ == "__main__":
    main()
