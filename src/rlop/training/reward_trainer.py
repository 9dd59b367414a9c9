"""Step 2 (and step 4) of RLP: reward-model training with the Bradley-Terry loss.

One trainer serves every variant:

* plain reward learning on preferences D (AlpacaFarm defaults: 1 epoch, lr 3e-6, cosine,
  16 pairs per step, 500 pairs held out);
* RLP-SPG: D plus synthetic pairs D-hat (``synthetic_file``; plain union by default);
* RLP-UML: BT on D plus ``rep_lambda`` times a representation loss computed from the
  final hidden states of view pairs (two policy samples for one instruction). The loss
  is any :class:`AuxLoss`; the MIB loss and its ablations live in :mod:`rlop.rlp.uml`.

Training runs on accelerate (``accelerate launch`` / ``torchrun`` for several processes).
The global batch is fixed by ``per_device_batch_size * gradient_accumulation_steps *
num_processes`` and its membership does not depend on the number of processes, so 1 and
N processes take the same steps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from rlop.config import ConfigError, LRScheduler as Scheduler, StageConfig, opt, stage_record, to_dict
from rlop.data import PreferenceExample, load_preferences
from rlop.data.io import DataError
from rlop.models.loading import DEFAULT_MODEL, load_reward_model, load_tokenizer
from rlop.models.precision import autocast
from rlop.models.reward_model import last_hidden_state, reward_from_hidden, rm_texts, tokenize_texts
from rlop.rlp.uml_config import UMLConfig
from rlop.training import tracking
from rlop.distributed import is_main_process, no_sync
from rlop.training.losses import AuxLoss, bradley_terry_loss
from rlop.outputs import staged
from rlop.utils import MetricsLogger, derive_seed
from rlop.models import precision as precision_

log = logging.getLogger(__name__)



@dataclass
class RewardConfig(StageConfig):
    model: str = opt(DEFAULT_MODEL, "initial weights: the SFT model directory (or a saved reward model)")
    train_file: str = opt("sandbox:preference", "preferences D: JSONL/JSON in AlpacaFarm or TRL format, hf:NAME[:SPLIT], or sandbox:preference")
    eval_file: str = opt("", "held-out preferences; empty: hold out eval_holdout pairs of train_file")
    eval_holdout: int = opt(500, "pairs of train_file held out for accuracy when no eval_file is given (at most a fifth)", ge=0)
    max_train_pairs: int = opt(0, "use at most this many training pairs of D (0: all)", ge=0)
    max_length: int = opt(512, "tokens per scored text; longer texts lose their beginning", ge=8)
    epochs: float = opt(1.0, "passes over the training pairs", gt=0)
    learning_rate: float = opt(3e-6, "peak learning rate of the reward model", gt=0)
    per_device_batch_size: int = opt(2, "pairs per device per micro-batch", ge=1)
    gradient_accumulation_steps: int = opt(8, "micro-batches per optimizer step", ge=1)
    warmup_ratio: float = opt(0.03, "share of the steps spent warming up the learning rate", ge=0, le=0.999)
    lr_scheduler: Scheduler = opt("cosine", "learning-rate schedule (transformers names)")
    weight_decay: float = opt(0.0, "AdamW weight decay", ge=0)
    max_grad_norm: float = opt(1.0, "gradient clipping norm", gt=0)
    seed: int = opt(42, "random seed (hold-out split, data order, head init)")
    precision: precision_.Precision = opt("auto", precision_.HELP)
    # RLP-SPG: synthetic preference pairs
    synthetic_file: str = opt("", "synthetic preference JSONL (from rlop spg) added to D (RLP-SPG)")
    synthetic_ratio: float = opt(0.0, "0: plain union; r > 0: use r*|D| synthetic pairs (sampled with replacement if short)", ge=0)
    # RLP-UML: representation loss on view pairs (flat flags: --rep-loss, --views-file, ...)
    uml: UMLConfig = dataclasses.field(default_factory=UMLConfig, metadata={"help": "RLP-UML options (rlop.rlp.uml_config.UMLConfig)"})
    report_to: tracking.ReportTo = opt("none", tracking.HELP)
    trust_remote_code: bool = opt(False, "allow model code from the model's repository (only for models you trust)")

    PRESETS: ClassVar[dict] = {
        "tiny": dict(model="tiny", max_train_pairs=64, eval_holdout=16, max_length=128, learning_rate=1e-3, per_device_batch_size=4, gradient_accumulation_steps=1, head_hidden=64, view_batch_size=4),
        "cpu": dict(max_train_pairs=1024, eval_holdout=200, max_length=192, learning_rate=2e-5, per_device_batch_size=8, gradient_accumulation_steps=2, head_hidden=256, view_batch_size=8),
        "gpu": dict(per_device_batch_size=16, gradient_accumulation_steps=1),
    }


class RewardTrainingModule(nn.Module):
    """Reward model plus optional aux heads; one forward computes the whole loss (DDP-safe)."""

    def __init__(self, rm: nn.Module, aux: AuxLoss | None, rep_lambda: float):
        super().__init__()
        self.rm, self.aux, self.rep_lambda = rm, aux, rep_lambda

    def forward(self, pairs: dict[str, torch.Tensor], views: dict[str, torch.Tensor] | None = None):
        n = pairs["input_ids"].shape[0] // 2
        pooled = last_hidden_state(self.rm, pairs["input_ids"], pairs["attention_mask"])
        r = reward_from_hidden(self.rm, pooled)
        chosen, rejected = r[:n], r[n:]
        bt = bradley_terry_loss(chosen, rejected)
        logs = {"bt_loss": bt.detach(), "train_accuracy": (chosen > rejected).float().mean().detach(),
                "reward_margin": (chosen - rejected).mean().detach()}
        loss = bt
        if self.aux is not None and views is not None:
            m = views["input_ids"].shape[0] // 2
            h = last_hidden_state(self.rm, views["input_ids"], views["attention_mask"]).float()
            with torch.autocast(device_type=h.device.type, enabled=False):  # the heads stay float32
                aux_loss, aux_logs = self.aux(h[:m], h[m:])
            loss = loss + self.rep_lambda * aux_loss
            logs.update({k: v.detach() for k, v in aux_logs.items()})
            logs["rep_loss"] = aux_loss.detach()
        logs["loss"] = loss.detach()
        return loss, logs


def split_holdout(pairs: list, n_eval: int, seed: int) -> tuple[list, list]:
    idx = list(range(len(pairs)))
    random.Random(seed).shuffle(idx)
    n_eval = min(n_eval, len(pairs) // 5)
    ev = set(idx[:n_eval])
    return [p for i, p in enumerate(pairs) if i not in ev], [pairs[i] for i in sorted(ev)]


def mix_synthetic(human: list, synthetic: list, ratio: float, seed: int) -> list:
    if ratio <= 0 or not synthetic:
        return human + synthetic
    k = int(round(ratio * len(human)))
    rng = random.Random(seed)
    chosen = rng.sample(synthetic, k) if k <= len(synthetic) else [rng.choice(synthetic) for _ in range(k)]
    return human + chosen


def load_view_pairs(path: str, n_pairs: int, seed: int) -> list[tuple[PreferenceExample, str, str]]:
    """(instruction, response_a, response_b) triples from a samples file (``rlop sample`` output)."""
    from rlop.data.samples import load_samples

    rng = random.Random(seed)
    out = []
    for rec in load_samples(path):
        distinct = list(dict.fromkeys(rec.responses))
        if len(distinct) < 2:
            continue
        all_pairs = [(i, j) for i in range(len(distinct)) for j in range(i + 1, len(distinct))]
        for i, j in rng.sample(all_pairs, min(n_pairs, len(all_pairs))):
            out.append((rec.example, distinct[i], distinct[j]))
    return out


class RewardTrainer:
    def __init__(self, cfg: RewardConfig, aux: AuxLoss | Callable[[int], AuxLoss] | None = None, accelerator=None, out: str | Path = "."):
        """``aux`` is an :class:`AuxLoss` or a factory called with the model's hidden size."""
        from accelerate import Accelerator, DistributedDataParallelKwargs

        self.cfg = cfg
        kwargs = [DistributedDataParallelKwargs(find_unused_parameters=aux is not None)]
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=kwargs,
                                                      **tracking.accelerator_kwargs(cfg.report_to, out))
        torch.manual_seed(cfg.seed)
        self.tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
        self.rm = load_reward_model(cfg.model, trust_remote_code=cfg.trust_remote_code)
        if aux is not None and not isinstance(aux, nn.Module):
            torch.manual_seed(derive_seed(cfg.seed, 1))
            aux = aux(self.rm.config.hidden_size)
        self.aux = aux

    # ------------------------------------------------------------------ batching
    def _pair_batch(self, pairs: Sequence[PreferenceExample]) -> dict[str, torch.Tensor]:
        ins = [p.instruction for p in pairs]
        inp = [p.input for p in pairs]
        texts = rm_texts(self.tokenizer, ins, inp, [p.chosen for p in pairs]) + rm_texts(self.tokenizer, ins, inp, [p.rejected for p in pairs])
        return tokenize_texts(self.tokenizer, texts, self.cfg.max_length, self.accelerator.device)

    def _view_batch(self, views) -> dict[str, torch.Tensor]:
        ex = [v[0] for v in views]
        ins, inp = [e.instruction for e in ex], [e.input for e in ex]
        texts = rm_texts(self.tokenizer, ins, inp, [v[1] for v in views]) + rm_texts(self.tokenizer, ins, inp, [v[2] for v in views])
        return tokenize_texts(self.tokenizer, texts, self.cfg.max_length, self.accelerator.device)

    def _order(self, n: int, total: int) -> list[int]:
        order: list[int] = []
        epoch = 0
        while len(order) < total:
            perm = list(range(n))
            random.Random(derive_seed(self.cfg.seed, epoch)).shuffle(perm)
            order.extend(perm)
            epoch += 1
        return order[:total]

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module, pairs: Sequence[PreferenceExample]) -> dict[str, float]:
        acc = self.accelerator
        rm = acc.unwrap_model(model).rm
        rm.eval()
        mine = list(pairs)[acc.process_index :: acc.num_processes]
        correct = torch.zeros(2, device=acc.device)
        bs = max(1, self.cfg.per_device_batch_size * 2)
        for i in range(0, len(mine), bs):
            b = self._pair_batch(mine[i : i + bs])
            with autocast(acc.device, self.cfg.precision):
                r = reward_from_hidden(rm, last_hidden_state(rm, b["input_ids"], b["attention_mask"]))
            n = r.shape[0] // 2
            correct[0] += (r[:n] > r[n:]).sum()
            correct[1] += n
        correct = acc.reduce(correct, reduction="sum")
        rm.train()
        total = int(correct[1].item())
        return {"eval_accuracy": correct[0].item() / max(total, 1), "eval_pairs": total}

    # ------------------------------------------------------------------ training
    def train(
        self,
        train_pairs: Sequence[PreferenceExample],
        eval_pairs: Sequence[PreferenceExample] = (),
        views: Sequence[tuple[PreferenceExample, str, str]] | None = None,
        out: str | Path | None = None,
    ) -> dict[str, float]:
        cfg, acc = self.cfg, self.accelerator
        P = acc.num_processes
        global_bs = cfg.per_device_batch_size * cfg.gradient_accumulation_steps * P
        n = len(train_pairs)
        total = max(int(n * cfg.epochs), global_bs)
        steps = total // global_bs
        order = self._order(n, steps * global_bs)
        use_views = self.aux is not None and views
        if self.aux is not None and not views:
            raise ValueError("a representation loss needs view pairs (views_file with >= 2 distinct responses per instruction)")
        view_order = self._order(len(views), steps * cfg.gradient_accumulation_steps * cfg.uml.view_batch_size * P) if use_views else []

        module = RewardTrainingModule(self.rm, self.aux, cfg.uml.rep_lambda)
        groups = [{"params": [p for p in self.rm.parameters() if p.requires_grad], "lr": cfg.learning_rate, "weight_decay": cfg.weight_decay}]
        if self.aux is not None:
            groups.append({"params": list(self.aux.parameters()), "lr": cfg.uml.head_lr, "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
        from transformers import get_scheduler

        scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * steps), num_training_steps=steps)
        module, optimizer = acc.prepare(module, optimizer)
        metrics = MetricsLogger(Path(out) / "metrics.jsonl", enabled=acc.is_main_process) if out else None
        bar = tqdm(range(steps), desc="reward", disable=not acc.is_local_main_process, unit="step")
        tracking.start(acc, cfg.report_to, "reward", to_dict(cfg))
        history: list[dict[str, float]] = []
        b, A, vb = cfg.per_device_batch_size, cfg.gradient_accumulation_steps, cfg.uml.view_batch_size
        for step in bar:
            module.train()
            step_logs: dict[str, float] = {}
            for a in range(A):
                base = step * global_bs + a * b * P + acc.process_index * b
                batch = self._pair_batch([train_pairs[i] for i in order[base : base + b]])
                vbatch = None
                if use_views:
                    vbase = (step * A + a) * vb * P + acc.process_index * vb
                    vbatch = self._view_batch([views[i] for i in view_order[vbase : vbase + vb]])
                with no_sync(acc, [module], a == A - 1):
                    with autocast(acc.device, self.cfg.precision):
                        loss, logs = module(batch, vbatch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"reward training: non-finite loss {loss.item()} at step {step}")
                    acc.backward(loss / A)
                for k, v in logs.items():
                    step_logs[k] = step_logs.get(k, 0.0) + float(v) / A
            grad_norm = acc.clip_grad_norm_(module.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step_logs = {k: float(v) for k, v in zip(step_logs, acc.reduce(torch.tensor(list(step_logs.values()), device=acc.device), reduction="mean").tolist())}
            step_logs.update(step=step + 1, lr=scheduler.get_last_lr()[0], grad_norm=float(grad_norm))
            history.append(step_logs)
            if metrics:
                metrics.log(step_logs)
            tracking.log(acc, cfg.report_to, step_logs, step + 1)
            bar.set_postfix(loss=f"{step_logs['loss']:.4f}", acc=f"{step_logs['train_accuracy']:.2f}")
        result = {"steps": steps, "train_pairs": n, "global_batch_size": global_bs}
        if eval_pairs:
            result.update(self.evaluate(module, eval_pairs))
        if metrics:
            metrics.log({"step": steps, **result})
        tracking.finish(acc, cfg.report_to)
        self.history = history
        self.module = module
        return result

    def save(self, out: str | Path, extra: dict | None = None) -> None:
        acc = self.accelerator
        if not acc.is_main_process:
            return
        out = Path(out)
        rm = acc.unwrap_model(self.module).rm
        rm.config.pad_token_id = self.tokenizer.pad_token_id
        rm.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        if self.aux is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in acc.unwrap_model(self.module).aux.state_dict().items()}, str(out / "rep_heads.safetensors"))
        (out / "rlop_config.json").write_text(json.dumps(stage_record("reward", self.cfg, **(extra or {})), indent=2))


def dedupe_pairs(pairs: list[PreferenceExample], seen: set | None = None) -> tuple[list[PreferenceExample], int]:
    """Drop exact repeats (same instruction, input, chosen and rejected) and pairs already in ``seen``."""
    seen = set() if seen is None else seen
    out = []
    for p in pairs:
        key = (p.instruction, p.input, p.chosen, p.rejected)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out, len(pairs) - len(out)


def load_reward_data(cfg: RewardConfig):
    """Read and validate everything before any training starts.

    Repeated pairs are dropped (and counted) before the hold-out split, so held-out accuracy
    is never measured on copies of training pairs.
    """
    pairs, dup = dedupe_pairs(load_preferences(cfg.train_file))
    if dup:
        log.warning("%s: dropped %d repeated preference pairs", cfg.train_file, dup)
    if cfg.eval_file:
        ev, leak = dedupe_pairs(load_preferences(cfg.eval_file), {(p.instruction, p.input, p.chosen, p.rejected) for p in pairs})
        if leak:
            log.warning("%s: dropped %d held-out pairs that repeat a pair of %s", cfg.eval_file, leak, cfg.train_file)
        train = pairs
    else:
        train, ev = split_holdout(pairs, cfg.eval_holdout, cfg.seed)
    if cfg.max_train_pairs:
        train = train[: cfg.max_train_pairs]
    synthetic = load_preferences(cfg.synthetic_file) if cfg.synthetic_file else []
    train = mix_synthetic(train, synthetic, cfg.synthetic_ratio, cfg.seed)
    views = load_view_pairs(cfg.uml.views_file, cfg.uml.view_pairs_per_instruction, cfg.seed) if cfg.uml.views_file else None
    return train, ev, views, len(synthetic)


def run_reward(cfg: RewardConfig, out: str | Path, aux: Callable[[int], AuxLoss] | None = None) -> dict[str, float]:
    """Train a reward model and save it to ``out`` (published only when complete); returns the eval metrics.

    ``aux`` builds the representation loss from the hidden size; with ``cfg.uml.rep_loss`` set, use
    :func:`rlop.rlp.uml.run_uml_reward`, which supplies it.
    """

    if cfg.uml.rep_loss != "none" and aux is None:
        raise ConfigError(f"--rep-loss {cfg.uml.rep_loss}: train with rlop.rlp.uml.run_uml_reward (rlop reward does), which builds the heads")
    train, ev, views, n_syn = load_reward_data(cfg)
    if aux is not None and not views:
        raise DataError(cfg.uml.views_file, None, "responses", f"--rep-loss {cfg.uml.rep_loss} needs view pairs: no instruction has two distinct responses")
    with staged(out, "reward", main=is_main_process()) as tmp:
        trainer = RewardTrainer(cfg, aux=aux, out=tmp)
        result = trainer.train(train, ev, views, out=tmp)
        result["synthetic_pairs"] = n_syn
        trainer.save(tmp, extra={"result": result})
        if trainer.accelerator.is_main_process:
            (tmp / "eval.json").write_text(json.dumps(result, indent=2))
        trainer.accelerator.wait_for_everyone()
    return result
