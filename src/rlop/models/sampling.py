"""Sampling from a saved policy: ``sample_responses`` (used by collection, best-of-n, step 4 and
evaluation) and the ``rlop sample`` stage (``SampleConfig`` + ``run_sample``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from tqdm.auto import tqdm

from rlop.config import StageConfig, opt
from rlop.data.formatting import format_prompt
from rlop.data.io import load_instructions
from rlop.data.samples import SampleSet
from rlop.distributed import gather_objects, process_index, world_size, is_main_process
from rlop.models.generation import SamplingConfig, make_backend
from rlop.models.loading import DEFAULT_MODEL, load_causal_lm, load_tokenizer
from rlop.outputs import staged
from rlop.utils import derive_seed, write_jsonl
from rlop.models import precision as precision_


@dataclass
class SamplingOptions(StageConfig):
    """How a stage that samples from a saved policy decodes (``rlop sample``, best-of-n): declared once here."""
    temperature: float = opt(1.0, "sampling temperature (paper: 1.0 at training time)", gt=0)
    top_p: float = opt(1.0, "nucleus sampling", gt=0, le=1)
    top_k: int = opt(0, "top-k sampling (0: off)", ge=0)
    max_new_tokens: int = opt(300, "new tokens per response", ge=1)
    batch_size: int = opt(32, "sequences per generation batch", ge=1)
    precision: precision_.Precision = opt("auto", precision_.HELP)

    def sampling(self) -> SamplingConfig:
        """These options as the generation backend takes them."""
        return SamplingConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                              do_sample=True, batch_size=self.batch_size)


@dataclass
class SampleConfig(SamplingOptions):
    policy: str = opt(DEFAULT_MODEL, "policy to sample from (a model directory, builtin:NAME, tiny or a Hugging Face id)")
    prompts_file: str = opt("sandbox:unlabeled", "instructions: JSONL/JSON, hf:NAME[:SPLIT], or sandbox:SPLIT")
    max_prompts: int = opt(0, "use at most this many instructions (0: all)", ge=0)
    n: int = opt(10, "responses per instruction (paper: 10)", ge=1)
    seed: int = opt(0, "random seed; each (instruction, k) draws from its own derived seed")

    PRESETS: ClassVar[dict] = {
        "tiny": dict(policy="tiny", n=4, max_new_tokens=12, max_prompts=8),
        "cpu": dict(n=10, max_new_tokens=96, max_prompts=200),
        "gpu": dict(batch_size=128),
    }


def sample_responses(
    policy: str,
    examples,
    n: int,
    sampling,
    seed: int = 0,
    trust_remote_code: bool = False,
    desc: str = "sample",
    precision: str = "auto",
) -> list[SampleSet]:
    """n responses per instruction from a saved policy; each (instruction, k) has its own seed.

    Under several processes (``accelerate launch``) the generation batches are dealt out to the
    processes in turn and the texts gathered, so every process returns all samples; a batch is
    the same whichever process decodes it."""
    tok = load_tokenizer(policy, trust_remote_code)
    model = load_causal_lm(policy, trust_remote_code=trust_remote_code)
    model.to(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    backend = make_backend(model, tok, precision=precision)
    prompts = [format_prompt(tok, e.instruction, e.input) for e in examples]
    flat = [(i, k) for i in range(len(examples)) for k in range(n)]
    step = max(1, sampling.batch_size)
    starts = list(range(0, len(flat), step))
    mine: dict[int, list[str]] = {}
    for s in tqdm(starts[process_index()::world_size()], desc=desc, unit="batch", disable=process_index() > 0):
        chunk = flat[s : s + step]
        mine[s] = backend.generate([prompts[i] for i, _ in chunk], sampling, [derive_seed(seed, i, k) for i, k in chunk]).texts
    batches = {s: t for part in gather_objects(mine) for s, t in part.items()}
    texts = [t for s in starts for t in batches[s]]
    return [SampleSet(e, texts[i * n : (i + 1) * n]) for i, e in enumerate(examples)]


def run_sample(cfg: SampleConfig, out: str | Path) -> Path:
    """``out/samples.jsonl``: ``cfg.n`` responses per instruction (published only when complete)."""
    examples = load_instructions(cfg.prompts_file, limit=cfg.max_prompts or None)
    sampling = cfg.sampling()
    with staged(out, "sample", main=is_main_process()) as tmp:
        sets = sample_responses(cfg.policy, examples, cfg.n, sampling, cfg.seed, precision=cfg.precision)
        write_jsonl(tmp / "samples.jsonl", [s.to_record() for s in sets])
    return Path(out) / "samples.jsonl"
