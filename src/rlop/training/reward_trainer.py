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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Literal, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from rlop.config import ConfigError, LRScheduler as Scheduler, StageConfig, opt, stage_record, to_dict
from rlop.data import PreferenceExample
from rlop.data.io import DataError
from rlop.models.loading import DEFAULT_MODEL, load_reward_model, load_tokenizer
from rlop.models.precision import autocast
from rlop.models.reward_model import last_hidden_state, reward_from_hidden, rm_texts, tokenize_texts
from rlop.rlp.uml_config import UMLConfig
from rlop.training import tracking
from rlop.distributed import is_main_process, no_sync
from rlop.training.losses import AuxLoss, bradley_terry_loss
from rlop.outputs import staged
from rlop.training.reward_data import epoch_order, load_reward_data, matched_order
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
    pair_weights_file: str = opt("", "per-pair weights of D (JSONL with instruction, input, chosen, rejected, weight; from rlop ocrm): "
                                     "the weighted Bradley-Terry loss; pairs it does not list weigh 1")
    pair_order: Literal["shuffled", "matched"] = opt("shuffled", "order of D and the synthetic pairs: shuffled (one shuffle of their union) | "
                                                    "matched (D in the order a run on D alone with this seed takes, the synthetic pairs "
                                                    "inserted at positions that depend only on their number and the seed: a retrained RM "
                                                    "then differs from the step-2 RM only by what it adds)")
    # RLP-UML: representation loss on view pairs (flat flags: --rep-loss, --views-file, ...)
    uml: UMLConfig = dataclasses.field(default_factory=UMLConfig, metadata={"help": "RLP-UML options (rlop.rlp.uml_config.UMLConfig)"})
    report_to: tracking.ReportTo = opt("none", tracking.HELP)
    trust_remote_code: bool = opt(False, "allow model code from the model's repository (only for models you trust)")

    PRESETS: ClassVar[dict] = {
        "tiny": dict(model="tiny", max_train_pairs=64, eval_holdout=16, max_length=128, learning_rate=1e-3, per_device_batch_size=4, gradient_accumulation_steps=1, head_hidden=64, view_batch_size=4),
        "cpu": dict(max_train_pairs=1024, eval_holdout=200, max_length=192, learning_rate=2e-5, per_device_batch_size=8, gradient_accumulation_steps=2, head_hidden=256, view_batch_size=8),
        "gpu": dict(per_device_batch_size=16, gradient_accumulation_steps=1),
        # the RLP gates (rlop run --preset overopt): the cpu shapes, and a UML bottleneck that can train: every other row of the
        # batch a negative, a faster head, Federici's beta annealing and a critic warm-up on cached hidden states
        "overopt": dict(max_train_pairs=1024, eval_holdout=200, max_length=192, learning_rate=2e-5, per_device_batch_size=8,
                        gradient_accumulation_steps=2, head_hidden=256, view_batch_size=8, negatives="all", head_lr=1e-3,
                        beta_schedule="exponential", critic_warmup_steps=300),
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
        bt = bradley_terry_loss(chosen, rejected, pairs.get("weights"))
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
    def _pair_batch(self, pairs: Sequence[PreferenceExample], weighted: bool = False) -> dict[str, torch.Tensor]:
        ins = [p.instruction for p in pairs]
        inp = [p.input for p in pairs]
        texts = rm_texts(self.tokenizer, ins, inp, [p.chosen for p in pairs]) + rm_texts(self.tokenizer, ins, inp, [p.rejected for p in pairs])
        batch = tokenize_texts(self.tokenizer, texts, self.cfg.max_length, self.accelerator.device)
        if weighted:
            batch["weights"] = torch.tensor([float(p.meta.get("weight", 1.0)) for p in pairs], device=self.accelerator.device)
        return batch

    def _view_batch(self, views) -> dict[str, torch.Tensor]:
        ex = [v[0] for v in views]
        ins, inp = [e.instruction for e in ex], [e.input for e in ex]
        texts = rm_texts(self.tokenizer, ins, inp, [v[1] for v in views]) + rm_texts(self.tokenizer, ins, inp, [v[2] for v in views])
        return tokenize_texts(self.tokenizer, texts, self.cfg.max_length, self.accelerator.device)

    def _order(self, n: int, total: int) -> list[int]:
        return epoch_order(n, total, self.cfg.seed)

    def pair_order(self, n: int, n_extra: int, global_bs: int) -> list[int]:
        """The training pairs' indices, one global batch after another (``n_extra``: the synthetic
        pairs at the end of the training list). ``matched``: see :func:`matched_order`."""
        epochs = self.cfg.epochs
        if self.cfg.pair_order == "matched" and n_extra:
            return matched_order(n - n_extra, n_extra, epochs, global_bs, self.cfg.seed)
        steps = max(int(n * epochs), global_bs) // global_bs
        return self._order(n, steps * global_bs)

    @torch.no_grad()
    def _view_hidden(self, views) -> tuple[torch.Tensor, torch.Tensor]:
        acc, out = self.accelerator, []
        self.rm.to(acc.device).eval()
        bs = max(2, self.cfg.per_device_batch_size * 2)
        for i in range(0, len(views), bs):
            b = self._view_batch(views[i : i + bs])
            with autocast(acc.device, self.cfg.precision):
                h = last_hidden_state(self.rm, b["input_ids"], b["attention_mask"]).float()
            m = h.shape[0] // 2
            out.append((h[:m], h[m:]))
        self.rm.train()
        return torch.cat([a for a, _ in out]), torch.cat([b for _, b in out])

    def warm_up_heads(self, views) -> dict[str, float]:
        """``critic_warmup_steps`` steps of the UML heads alone (encoder and critic; the reward model
        frozen) on the view pairs' final hidden states under the initial model, computed once. Every
        process holds all hidden states and takes its share of each seeded global batch; the heads'
        gradients are averaged over processes, so N processes warm up like one."""
        import torch.distributed as dist

        cfg, acc = self.cfg.uml, self.accelerator
        h1, h2 = self._view_hidden(views)
        self.aux.to(acc.device)
        opt_ = torch.optim.AdamW(self.aux.parameters(), lr=cfg.head_lr, weight_decay=0.0)
        P, rank = acc.num_processes, acc.process_index
        per = max(1, min(cfg.critic_warmup_batch, len(views)) // P)
        gen = torch.Generator().manual_seed(derive_seed(self.cfg.seed, 17))
        torch.manual_seed(derive_seed(self.cfg.seed, 18))
        first = last = None
        for step in range(cfg.critic_warmup_steps):
            idx = torch.randperm(len(views), generator=gen)[: per * P][rank * per : (rank + 1) * per]
            self.aux.set_progress(0, 1)  # the schedule's first value: beta as the reward training starts
            loss, logs = self.aux(h1[idx], h2[idx])
            opt_.zero_grad(set_to_none=True)
            loss.backward()
            if P > 1:
                for p in self.aux.parameters():
                    if p.grad is not None:
                        dist.all_reduce(p.grad)
                        p.grad /= P
            opt_.step()
            mi = float(logs.get("mi_jsd", logs.get("infonce", loss)).detach())
            first = mi if first is None else first
            last = mi
        return {"steps": cfg.critic_warmup_steps, "batch": per * P, "mi_first": first, "mi_last": last}

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
        n_extra: int = 0,
    ) -> dict[str, float]:
        """``n_extra``: how many of ``train_pairs``, at its end, are synthetic (placed by ``pair_order``)."""
        cfg, acc = self.cfg, self.accelerator
        P = acc.num_processes
        global_bs = cfg.per_device_batch_size * cfg.gradient_accumulation_steps * P
        n = len(train_pairs)
        order = self.pair_order(n, n_extra, global_bs)
        steps = len(order) // global_bs
        use_views = self.aux is not None and views
        if self.aux is not None and not views:
            raise ValueError("a representation loss needs view pairs (views_file with >= 2 distinct responses per instruction)")
        view_order = self._order(len(views), steps * cfg.gradient_accumulation_steps * cfg.uml.view_batch_size * P) if use_views else []

        warmup = self.warm_up_heads(views) if use_views and cfg.uml.critic_warmup_steps else None
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
            if self.aux is not None:
                self.aux.set_progress(step, steps)
            step_logs: dict[str, float] = {}
            for a in range(A):
                base = step * global_bs + a * b * P + acc.process_index * b
                batch = self._pair_batch([train_pairs[i] for i in order[base : base + b]], weighted=bool(cfg.pair_weights_file))
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
        result = {"steps": steps, "train_pairs": n, "global_batch_size": global_bs, **({"head_warmup": warmup} if warmup else {})}
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


def run_reward(cfg: RewardConfig, out: str | Path, aux: Callable[[int], AuxLoss] | None = None) -> dict[str, float]:
    """Train a reward model and save it to ``out`` (published only when complete); returns the eval metrics.

    ``aux`` builds the representation loss from the hidden size; with ``cfg.uml.rep_loss`` set, use
    :func:`rlop.rlp.uml.run_uml_reward`, which supplies it.
    """

    if cfg.uml.rep_loss != "none" and aux is None:
        raise ConfigError(f"--rep-loss {cfg.uml.rep_loss}: train with rlop.rlp.uml.run_uml_reward (rlop reward does), which builds the heads")
    train, ev, views, n_syn, n_extra = load_reward_data(cfg)
    if aux is not None and not views:
        raise DataError(cfg.uml.views_file, None, "responses", f"--rep-loss {cfg.uml.rep_loss} needs view pairs: no instruction has two distinct responses")
    with staged(out, "reward", main=is_main_process()) as tmp:
        trainer = RewardTrainer(cfg, aux=aux, out=tmp)
        result = trainer.train(train, ev, views, out=tmp, n_extra=n_extra)
        result.update(synthetic_pairs=n_syn, synthetic_pairs_used=n_extra, human_pairs=len(train) - n_extra)
        trainer.save(tmp, extra={"result": result})
        if trainer.accelerator.is_main_process:
            (tmp / "eval.json").write_text(json.dumps(result, indent=2))
        trainer.accelerator.wait_for_everyone()
    return result
