"""Step 0: supervised fine-tuning on demonstrations with TRL's SFTTrainer.

The loss covers response tokens only (TRL's ``completion_only_loss``); prompts are
rendered by :func:`rlop.data.format_prompt`, so SFT sees exactly what later stages send.
With ``lora_r > 0`` training goes through peft and the adapter is merged before saving,
so the output directory is a plain transformers model (also loadable by vLLM).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from rlop.config import to_dict
from rlop.data import format_prompt, load_instructions
from rlop.models.loading import DEFAULT_MODEL, load_causal_lm, load_tokenizer
from rlop.models.precision import resolve as resolve_precision
from rlop.utils import atomic_dir

log = logging.getLogger(__name__)


@dataclass
class SFTConfig:
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model spec: builtin:NAME, tiny, HF id or directory"})
    train_file: str = field(default="sandbox:sft", metadata={"help": "instruction JSONL with outputs (or sandbox:sft)"})
    max_examples: int = 0
    max_length: int = 512
    epochs: float = 3.0
    learning_rate: float = 2e-5
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 4
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    lora_r: int = 0
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    seed: int = 42
    trust_remote_code: bool = False

    PRESETS: ClassVar[dict] = {
        "tiny": dict(model="tiny", max_examples=32, max_length=128, epochs=1, learning_rate=1e-3, per_device_batch_size=8, gradient_accumulation_steps=1),
        # 1 epoch on a few hundred demonstrations: a higher lr than AlpacaFarm's 3 epochs at 2e-5 on 10k
        "cpu": dict(max_examples=512, max_length=256, epochs=1, learning_rate=5e-5, per_device_batch_size=8, gradient_accumulation_steps=2),
    }


def build_sft_dataset(tokenizer, examples):
    from datasets import Dataset

    rows = [{"prompt": format_prompt(tokenizer, e.instruction, e.input), "completion": e.output} for e in examples]
    return Dataset.from_list(rows)


def run_sft(cfg: SFTConfig, out: str | Path) -> Path:
    """Train and save the SFT model to ``out`` (atomically). Returns the path."""
    import trl
    from transformers import TrainerCallback

    examples = load_instructions(cfg.train_file, require_output=True, limit=cfg.max_examples or None)
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    tokenizer.padding_side = "right"
    model = load_causal_lm(cfg.model, trust_remote_code=cfg.trust_remote_code, seed=cfg.seed)
    dataset = build_sft_dataset(tokenizer, examples)
    peft_config = None
    if cfg.lora_r > 0:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules="all-linear", task_type="CAUSAL_LM")

    out = Path(out)
    from accelerate import PartialState

    with atomic_dir(out, main=PartialState().is_main_process) as tmp:
        metrics_path = tmp / "metrics.jsonl"

        class JsonlMetrics(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kw):
                if state.is_world_process_zero and logs:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

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
            report_to=[],
            seed=cfg.seed,
            use_cpu=not torch.cuda.is_available(),
            bf16=resolve_precision() == "bf16",
            dataloader_num_workers=0,
            disable_tqdm=False,
        )
        trainer = trl.SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[JsonlMetrics()],
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
            (tmp / "rlop_config.json").write_text(json.dumps({"stage": "sft", **to_dict(cfg)}, indent=2))
            import shutil

            shutil.rmtree(tmp / "trainer", ignore_errors=True)
        trainer.accelerator.wait_for_everyone()
    return out


