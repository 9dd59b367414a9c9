"""Step 0: supervised fine-tuning on demonstrations with TRL's SFTTrainer.

The loss covers response tokens only (TRL's ``completion_only_loss``); prompts are
rendered by :func:`rlop.data.format_prompt`, so SFT sees exactly what later stages send.
With ``lora_r > 0`` training goes through peft and the adapter is merged before saving,
so the output directory is a plain transformers model (also loadable by vLLM).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from rlop.config import LRScheduler as Scheduler, StageConfig, opt, stage_record
from rlop.data import format_prompt, load_instructions
from rlop.data.io import DataError
from rlop.models.loading import DEFAULT_MODEL, load_causal_lm, load_tokenizer
from rlop.models.precision import resolve as resolve_precision
from rlop.outputs import staged
from rlop.training import tracking
from rlop.distributed import is_main_process, trainer_scope
from rlop.models import precision as precision_

log = logging.getLogger(__name__)




@dataclass
class SFTConfig(StageConfig):
    model: str = opt(DEFAULT_MODEL, "model spec: builtin:NAME, tiny, a Hugging Face id or a local directory")
    train_file: str = opt("sandbox:sft", "demonstrations: instruction JSONL/JSON with outputs, hf:NAME[:SPLIT], or sandbox:sft")
    max_examples: int = opt(0, "use at most this many demonstrations (0: all)", ge=0)
    max_length: int = opt(512, "tokens per example (prompt + response); longer examples are dropped and counted", ge=8)
    epochs: float = opt(3.0, "passes over the demonstrations", gt=0)
    learning_rate: float = opt(2e-5, "peak learning rate", gt=0)
    per_device_batch_size: int = opt(4, "examples per device per micro-batch", ge=1)
    gradient_accumulation_steps: int = opt(4, "micro-batches per optimizer step", ge=1)
    warmup_ratio: float = opt(0.03, "share of the steps spent warming up the learning rate", ge=0, le=0.999)
    lr_scheduler: Scheduler = opt("cosine", "learning-rate schedule (transformers names)")
    weight_decay: float = opt(0.0, "AdamW weight decay", ge=0)
    lora_r: int = opt(0, "LoRA rank (0: full fine-tuning); the adapter is merged before saving", ge=0)
    lora_alpha: int = opt(32, "LoRA alpha", ge=1)
    lora_dropout: float = opt(0.05, "LoRA dropout", ge=0, le=0.999)
    seed: int = opt(42, "random seed (data order, dropout, LoRA init)")
    precision: precision_.Precision = opt("auto", precision_.HELP)
    gradient_checkpointing: bool = opt(False, "recompute activations in the backward pass (less memory, about 30% more time; "
                                              "TRL's SFTConfig turns it on by default, rlop only on request)")
    report_to: tracking.ReportTo = opt("none", tracking.HELP)
    trust_remote_code: bool = opt(False, "allow model code from the model's repository (only for models you trust)")

    PRESETS: ClassVar[dict] = {
        "tiny": dict(model="tiny", max_examples=32, max_length=128, epochs=1, learning_rate=1e-3, per_device_batch_size=8, gradient_accumulation_steps=1),
        # 1 epoch on a few hundred demonstrations: a higher lr than AlpacaFarm's 3 epochs at 2e-5 on 10k
        "cpu": dict(max_examples=512, max_length=256, epochs=1, learning_rate=5e-5, per_device_batch_size=8, gradient_accumulation_steps=2),
        "gpu": dict(per_device_batch_size=16, gradient_accumulation_steps=1),  # AlpacaFarm's 3 epochs at 2e-5 (untested on GPU)
    }


def build_sft_dataset(tokenizer, examples, max_length: int | None = None, source: str = "demonstrations"):
    """Prompt/completion rows; with ``max_length``, demonstrations longer than it are left out.

    A cut demonstration would teach a response without its end (and, with the loss on the
    completion only, a cut prompt teaches nothing), so rlop drops them and says how many.
    """
    from datasets import Dataset

    rows = [{"prompt": format_prompt(tokenizer, e.instruction, e.input), "completion": e.output} for e in examples]
    if max_length is None:
        return Dataset.from_list(rows)
    eos = tokenizer.eos_token or ""
    kept = [r for r in rows if len(tokenizer(r["prompt"] + r["completion"] + eos, add_special_tokens=False)["input_ids"]) <= max_length]
    if not kept:
        raise DataError(source, None, None, f"all {len(rows)} examples are longer than max_length = {max_length} tokens; "
                        "raise --max-length or shorten them")
    if len(kept) < len(rows):
        log.warning("SFT: left out %d of %d demonstrations longer than max_length = %d tokens", len(rows) - len(kept), len(rows), max_length)
    return Dataset.from_list(kept)


def run_sft(cfg: SFTConfig, out: str | Path) -> Path:
    """Train and save the SFT model to ``out`` (published only when complete). Returns the path."""
    import trl
    from transformers import TrainerCallback

    examples = load_instructions(cfg.train_file, require_output=True, limit=cfg.max_examples or None)
    out = Path(out)
    with staged(out, "sft", main=is_main_process()) as tmp:
        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
        tokenizer.padding_side = "right"
        dataset = build_sft_dataset(tokenizer, examples, cfg.max_length, cfg.train_file)
        model = load_causal_lm(cfg.model, trust_remote_code=cfg.trust_remote_code, seed=cfg.seed)
        peft_config = None
        if cfg.lora_r > 0:
            from peft import LoraConfig

            peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules="all-linear", task_type="CAUSAL_LM")
        metrics_path = tmp / "metrics.jsonl"

        class JsonlMetrics(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kw):
                if state.is_world_process_zero and logs:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

        # transformers 5 reads the TensorBoard folder from the environment; keep it out of trainer/
        env = {"TENSORBOARD_LOGGING_DIR": str(tmp / tracking.DIR)} if cfg.report_to == "tensorboard" else {}
        with trainer_scope(env):
            _train(trl, cfg, tmp, model, tokenizer, dataset, peft_config, [JsonlMetrics()])
    return out


def _train(trl, cfg: SFTConfig, tmp: Path, model, tokenizer, dataset, peft_config, callbacks) -> None:
    """TRL's SFTTrainer on ``dataset``; the main process saves the float32 (merged) model to ``tmp``."""
    args = trl.SFTConfig(
        output_dir=str(tmp / "trainer"),
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio in transformers >= 5
        lr_scheduler_type=cfg.lr_scheduler,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        completion_only_loss=True,
        packing=False,
        logging_steps=1,
        save_strategy="no",
        report_to=tracking.trl_report_to(cfg.report_to),
        seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=resolve_precision(cfg.precision) == "bf16",
        dataloader_num_workers=0,
        gradient_checkpointing=cfg.gradient_checkpointing,
        disable_tqdm=False,
    )
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    trainer.train()
    if trainer.accelerator.is_main_process:
        final = trainer.accelerator.unwrap_model(trainer.model)
        if peft_config is not None:
            final = final.merge_and_unload()
        final = final.to(torch.float32)
        tokenizer.padding_side = "left"
        final.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "rlop_config.json").write_text(json.dumps(stage_record("sft", cfg), indent=2))
        import shutil

        shutil.rmtree(tmp / "trainer", ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
