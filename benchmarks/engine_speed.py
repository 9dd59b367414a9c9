"""An inference engine against rlop's transformers backend, for the offline sampling stages.

The offline stages (collection, step-4 samples, evaluation outputs, best-of-n) load a saved
model and need no weight sync, so a separate inference engine could serve them. This benchmark
converts the default model with CTranslate2 (``pip install ctranslate2``; Llama-architecture
models, CPU wheels) and samples the same instructions both ways, with the evaluation stage's settings
(temperature 0.7, top-p 0.9, 2 samples per instruction, 48 new tokens, 32 sequences a batch;
CTranslate2 draws an instruction's samples as hypotheses of one prompt, rlop side by side with a
shared prompt pass),
on the sandbox's eval instructions. Per engine: the time after a warm-up, generated tokens/s,
and the gold success of the samples. The engines draw different random numbers, so their
samples differ; whether they come from the same distribution is judged by the paired difference
in per-instruction gold success (95% bootstrap interval over instructions), which should hold 0.

    python benchmarks/engine_speed.py [--prompts 100] [--compute-types float32,int8]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path


def paired_interval(a: list[float], b: list[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of b - a and its percentile bootstrap 95% interval over the pairs."""
    d = [y - x for x, y in zip(a, b)]
    rng = random.Random(seed)
    means = sorted(sum(d[rng.randrange(len(d))] for _ in d) / len(d) for _ in range(n_boot))
    return sum(d) / len(d), means[int(0.025 * n_boot)], means[int(0.975 * n_boot) - 1]


def main() -> None:
    import torch

    from rlop.data.formatting import format_prompt
    from rlop.data.io import load_instructions
    from rlop.models.generation import HFBackend, SamplingConfig, eos_ids
    from rlop.models.loading import load_causal_lm, load_tokenizer, resolve_model
    from rlop.sandbox.gold import gold_success

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=100, help="sandbox eval instructions")
    ap.add_argument("--samples", type=int, default=2, help="samples per instruction, side by side")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--compute-types", default="float32,int8", help="CTranslate2 compute types to run")
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    a = ap.parse_args()
    try:
        import ctranslate2
        from ctranslate2.converters import TransformersConverter
    except ImportError:
        raise SystemExit("engine_speed: pip install ctranslate2 first")

    threads = torch.get_num_threads()
    tok, model = load_tokenizer(a.model), load_causal_lm(a.model).eval()
    examples = load_instructions("sandbox:eval", limit=a.prompts)
    prompts = [format_prompt(tok, e.instruction, e.input) for e in examples]
    rows = [p for p in prompts for _ in range(a.samples)]
    cfg = SamplingConfig(max_new_tokens=a.max_new_tokens, temperature=0.7, top_p=0.9, batch_size=a.batch_size)
    stop = eos_ids(model, tok)

    def success(texts: list[str]) -> list[float]:  # per instruction: the mean gold verdict of its samples
        hits = [float(gold_success(examples[i // a.samples].meta["spec"], t)) for i, t in enumerate(texts)]
        return [sum(hits[i : i + a.samples]) / a.samples for i in range(0, len(hits), a.samples)]

    results = {}
    backend = HFBackend(model, tok)
    backend.generate(rows[: a.batch_size], cfg, list(range(a.batch_size)))  # warm-up
    t0 = time.perf_counter()
    g = backend.generate(rows, cfg, list(range(len(rows))))
    results["transformers (rlop HFBackend)"] = (time.perf_counter() - t0, int(g.response_mask.sum()), success(g.texts))

    with tempfile.TemporaryDirectory() as tmp:
        ct2_dir = Path(tmp) / "ct2"
        TransformersConverter(resolve_model(a.model)).convert(str(ct2_dir), quantization=None)
        # each prompt once, its samples as hypotheses: CTranslate2's own way to share the prompt pass
        tokens = [tok.convert_ids_to_tokens(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        for compute_type in a.compute_types.split(","):
            gen = ctranslate2.Generator(str(ct2_dir), device="cpu", compute_type=compute_type, intra_threads=threads)
            kw = dict(max_length=a.max_new_tokens, sampling_topk=0, sampling_topp=cfg.top_p, sampling_temperature=cfg.temperature,
                      include_prompt_in_result=False, end_token=stop, num_hypotheses=a.samples, max_batch_size=a.batch_size // a.samples)
            ctranslate2.set_random_seed(0)
            gen.generate_batch(tokens[: a.batch_size // a.samples], **kw)  # warm-up
            t0 = time.perf_counter()
            out = gen.generate_batch(tokens, **kw)
            seconds = time.perf_counter() - t0
            ids = [x for r in out for x in r.sequences_ids]  # the samples of each prompt side by side, as in rows
            texts = [tok.decode([t for t in x if t not in stop], skip_special_tokens=True) for x in ids]
            n_tokens = sum(len(x) + (len(x) < a.max_new_tokens) for x in ids)  # counted as rlop counts: EOS included
            results[f"CTranslate2 {ctranslate2.__version__} ({compute_type})"] = (seconds, n_tokens, success(texts))

    base_seconds, _, base_success = results["transformers (rlop HFBackend)"]
    print(f"{a.model} on CPU ({threads} threads), {a.prompts} sandbox eval instructions x {a.samples} samples, "
          f"{a.max_new_tokens} new tokens, temperature 0.7, top-p 0.9, batch {a.batch_size}:")
    print("| engine | seconds | new tokens | tokens/s | time vs transformers | gold success % | difference vs transformers (95% CI, points) |")
    print("|---|---|---|---|---|---|---|")
    for name, (seconds, n_tokens, succ) in results.items():
        diff, lo, hi = paired_interval(base_success, succ)
        print(f"| {name} | {seconds:.1f} | {n_tokens} | {n_tokens / seconds:.0f} | {seconds / base_seconds:.2f}x | "
              f"{100 * sum(succ) / len(succ):.1f} | {100 * diff:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f}) |")


if __name__ == "__main__":
    main()
