"""Steps 3 and 5 of RLP: PPO against any reward (AlpacaFarm defaults, with a response mask).

* policy: the SFT model (full fine-tuning, or LoRA with ``lora_r > 0``);
* reference: the frozen SFT model (with LoRA, the adapter-disabled policy);
* value model: the reward model's backbone with a zero-initialised head;
* per-token KL penalty (clamped at 0 as in AlpacaFarm by default) with a fixed or adaptive
  coefficient; the scalar reward is added at the last response token;
* shaped rewards whitened without mean shift; GAE(gamma, lambda); advantages whitened;
* clipped policy and value losses averaged over real response tokens only;
* log-probabilities on temperature-scaled logits; linear LR schedule with warmup stepped
  once per PPO step; AdamW (eps 1e-5); gradient clipping.

``--advantage-estimator`` swaps GAE for a critic-free estimator (RLOO, GRPO, Dr. GRPO,
REINFORCE++; :func:`rlop.training.losses.estimate_advantages`) over ``samples_per_prompt``
samples of each prompt: no value model is then loaded, trained or checkpointed, and the
clipped policy loss is kept.

Checkpoints every ``save_steps`` hold everything needed to continue (weights, optimizer,
scheduler, KL coefficient); all randomness is derived from (seed, step), so a resumed run
on CPU ends with the same metrics as an uninterrupted one. A non-finite loss stops the run
before any update and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from rlop.config import ConfigError, require, stage_record, to_dict
from rlop.data.formatting import format_prompt
from rlop.data.io import DataError, InstructionExample, load_instructions
from rlop.models.generation import Backend, Generation, SamplingConfig, make_backend
from rlop.models.precision import autocast, resolve as resolve_precision
from rlop.models.loading import load_causal_lm, load_reward_model, load_tokenizer
from rlop.reward_functions import Reward, load_reward
from rlop.training import losses as L
from rlop.training import tracking
from rlop.distributed import (all_processes, all_reduce_sum, configure_deepspeed, gathered_for_sampling, is_main_process,
                                      prepare_frozen)
from rlop.training.ppo_checkpoint import Checkpoints, Counters, snapshot_dir
from rlop.training.ppo_config import PPOConfig
from rlop.distributed import no_sync
from rlop.training.actor_critic import ActorCritic, KLController, Rollout, disable_dropout, response_logprobs
from rlop.outputs import claim, complete, own, remove_owned
from rlop.utils import MetricsLogger, atomic_dir, derive_seed

log = logging.getLogger(__name__)


class NonFiniteLoss(FloatingPointError):
    pass


class PPOTrainer(Checkpoints):
    """PPO on any number of processes (``accelerate launch``): policy and value model form one
    :class:`ActorCritic` prepared once; each process samples and scores its contiguous share of
    the rollout batch; the batch is then gathered so that whitening, mini-batches and the
    token-mean losses are those of the global batch, and N processes train like one."""

    def __init__(self, cfg: PPOConfig, reward: Reward | None = None, prompts: Sequence[InstructionExample] | None = None,
                 out: str | Path = "ppo-out", accelerator=None, gold: Reward | None = None, backend: Backend | None = None):
        from accelerate import Accelerator

        self.cfg, self.out = cfg, Path(out)
        self.accelerator = acc = accelerator or Accelerator(cpu=not torch.cuda.is_available(), **tracking.accelerator_kwargs(cfg.report_to, out))
        for name in ("rollout_batch_size", "step_batch_size"):
            if getattr(cfg, name) % acc.num_processes:
                raise ConfigError(f"--{name.replace('_', '-')} ({getattr(cfg, name)}) must be a multiple of the number of processes ({acc.num_processes})")
        if cfg.rollout_batch_size % (cfg.samples_per_prompt * acc.num_processes):  # a prompt's k samples stay on one process
            raise ConfigError(f"--rollout-batch-size ({cfg.rollout_batch_size}) must be a multiple of --samples-per-prompt times the number of "
                              f"processes ({cfg.samples_per_prompt} x {acc.num_processes})")
        self.critic = L.ESTIMATORS[cfg.advantage_estimator]  # False: critic-free, no value model is loaded, trained or saved
        self.tokenizer = load_tokenizer(cfg.policy, cfg.trust_remote_code)
        self.prompts = self._filter_prompts(list(prompts) if prompts is not None else load_instructions(cfg.prompts_file, limit=cfg.max_prompts or None))
        if not self.prompts:
            raise DataError(cfg.prompts_file, None, None, f"no prompt is at most query_len = {cfg.query_len} tokens long; raise --query-len")
        kw = {"trust_remote_code": cfg.trust_remote_code, **({"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {})}
        frozen = torch.bfloat16 if cfg.frozen_dtype == "bf16" or (cfg.frozen_dtype == "auto" and resolve_precision(cfg.precision) == "bf16") else torch.float32
        self.reward = reward if reward is not None else load_reward(cfg.reward, precision=cfg.precision, batch_size=cfg.reward_batch_size, dtype=frozen, **kw)
        self.gold = gold
        torch.manual_seed(cfg.seed)
        policy = load_causal_lm(cfg.policy, **kw)
        if cfg.lora_r > 0:
            from peft import LoraConfig, get_peft_model

            policy = get_peft_model(policy, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules="all-linear", task_type="CAUSAL_LM"))
            self.ref = None
        else:
            self.ref = prepare_frozen(acc, load_causal_lm(cfg.policy, dtype=frozen, **kw))
        value = self._value_model(kw) if self.critic else None
        if value is not None and cfg.value_lora_r > 0:
            from peft import LoraConfig, get_peft_model

            value = get_peft_model(value, LoraConfig(r=cfg.value_lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                                     target_modules="all-linear", task_type="SEQ_CLS"))  # SEQ_CLS trains the head in full
        for model in (m for m in (policy, value) if m is not None):
            if cfg.disable_dropout:
                disable_dropout(model)
            if cfg.gradient_checkpointing:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        params = [p for m in (policy, value) if m is not None for p in m.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
        from transformers import get_scheduler

        # not prepared: accelerate would step it once per process; registered so that save_state keeps it
        self.scheduler = get_scheduler("linear", optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=self.lr_horizon())
        per_proc = cfg.step_batch_size // acc.num_processes
        self.accumulation = math.ceil(per_proc / min(cfg.micro_batch_size, per_proc))  # micro-batches per optimizer step
        configure_deepspeed(acc, min(cfg.micro_batch_size, per_proc), self.accumulation, cfg.max_grad_norm)
        self.model, self.optimizer = acc.prepare(ActorCritic(policy, value), optimizer)
        scorer = getattr(getattr(self.reward, "scorer", None), "model", None)
        if scorer is not None:  # a reward model: sharded like the policy under DeepSpeed or FSDP
            self.reward.scorer.model = prepare_frozen(acc, scorer)
        self.kl_ctl = KLController(cfg)
        self.step = 0
        acc.register_for_checkpointing(self.scheduler, Counters(self))
        sync = all_processes if acc.num_processes > 1 else None  # decode in step: sharded forwards are collectives
        self.backend = backend or make_backend(self.actor_critic.policy, self.tokenizer, all_done=sync, precision=cfg.precision)
        self.sampling = SamplingConfig(max_new_tokens=cfg.response_len, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                                       do_sample=True, batch_size=cfg.generation_batch_size, logprobs=cfg.rollout_logprobs == "sampler")
        self.metrics = MetricsLogger(self.out / "metrics.jsonl", enabled=acc.is_main_process)
        tracking.start(acc, cfg.report_to, "ppo", to_dict(cfg))

    def _value_model(self, kw: dict):
        cfg = self.cfg
        vinit = cfg.value_model or (cfg.reward if cfg.reward and Path(cfg.reward).is_dir() else cfg.policy)
        keep_head = cfg.value_head == "reward" and vinit == cfg.reward  # a policy init has no trained head to keep
        return load_reward_model(vinit, zero_head=not keep_head, **kw)

    @property
    def _deepspeed(self) -> bool:
        return getattr(self.accelerator.state, "deepspeed_plugin", None) is not None

    @property
    def actor_critic(self) -> ActorCritic:
        return self.accelerator.unwrap_model(self.model)

    def lr_horizon(self) -> int:
        """Steps over which the learning rate decays linearly to 0."""
        if self.cfg.lr_horizon == "steps":
            return self.cfg.steps
        per_step = self.cfg.rollout_batch_size // self.cfg.samples_per_prompt  # prompts per step
        return max(self.cfg.steps, math.ceil(self.cfg.total_epochs * len(self.prompts) / per_step))

    # ------------------------------------------------------------------ data
    def _filter_prompts(self, prompts: list[InstructionExample]) -> list[InstructionExample]:
        keep = []
        for p in prompts:
            text = format_prompt(self.tokenizer, p.instruction, p.input)
            if len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) <= self.cfg.query_len:
                keep.append(p)
        if 0 < len(keep) < len(prompts):
            log.warning("PPO: left out %d of %d prompts longer than query_len = %d tokens", len(prompts) - len(keep), len(prompts), self.cfg.query_len)
        return keep

    def _batch_indices(self, step: int) -> list[int]:
        """The step's prompts: rollout_batch_size / samples_per_prompt of them, epochs of seeded permutations."""
        n, B = len(self.prompts), self.cfg.rollout_batch_size // self.cfg.samples_per_prompt
        start = step * B
        out = []
        while len(out) < B:
            epoch, off = divmod(start + len(out), n)
            perm = list(range(n))
            random.Random(derive_seed(self.cfg.seed, 7, epoch)).shuffle(perm)
            out.extend(perm[off : off + B - len(out)])
        return out

    # ------------------------------------------------------------------ rollout
    def _share(self, step: int) -> tuple[list[int], list[int]]:
        """This process's contiguous share of the step's rollout prompts, each repeated samples_per_prompt
        times side by side (gathering keeps the global order), and the sampling seed of each row."""
        idx, acc, k = self._batch_indices(step), self.accelerator, self.cfg.samples_per_prompt
        per = len(idx) // acc.num_processes
        mine = idx[acc.process_index * per : (acc.process_index + 1) * per]
        if k == 1:
            return mine, [derive_seed(self.cfg.seed, step, i) for i in mine]
        return [i for i in mine for _ in range(k)], [derive_seed(self.cfg.seed, step, i, j) for i in mine for j in range(k)]

    def _gather(self, x: torch.Tensor, pad: float = 0, left: bool = False) -> torch.Tensor:
        """Rows of every process, in process order, padded to a common width."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return x
        if x.dim() > 1:
            x = acc.pad_across_processes(x.contiguous(), dim=1, pad_index=pad, pad_first=left)
        return acc.gather(x.contiguous())

    @torch.no_grad()
    def rollout(self, step: int) -> dict:
        acc, cfg, ac = self.accelerator, self.cfg, self.actor_critic
        idx, seeds = self._share(step)
        examples = [self.prompts[i] for i in idx]
        texts = [format_prompt(self.tokenizer, e.instruction, e.input) for e in examples]
        plugin = getattr(acc.state, "fsdp_plugin", None)
        t0 = time.perf_counter()
        with gathered_for_sampling(acc, self.model, getattr(plugin, "reshard_after_forward", True) is not False):
            gen: Generation = self.backend.generate(texts, self.sampling, seeds)
        dev = acc.device
        t1 = time.perf_counter()
        scores = torch.tensor(self.reward(examples, gen.texts), dtype=torch.float32, device=dev)
        q, qm, r, resp_mask = (t.to(dev) for t in (gen.query_ids, gen.query_mask, gen.response_ids, gen.response_mask))
        lps, refs, vals, ents = [], [], [], []
        mb = cfg.micro_batch_size
        ac.eval()
        with autocast(dev, self.cfg.precision):
            for s in range(0, len(idx), mb):
                sl = slice(s, s + mb)
                lp, ent, v = ac(q[sl], qm[sl], r[sl], resp_mask[sl], cfg.temperature, with_entropy=True, with_policy=gen.logprobs is None)
                if gen.logprobs is not None:  # --rollout-logprobs sampler: the sampling step's own
                    lp, ent = gen.logprobs[sl].to(dev), gen.entropies[sl].to(dev)
                if self.ref is not None:
                    ref, _ = response_logprobs(self.ref, q[sl], qm[sl], r[sl], resp_mask[sl], cfg.temperature)
                else:
                    with ac.policy.disable_adapter():
                        ref, _ = response_logprobs(ac.policy, q[sl], qm[sl], r[sl], resp_mask[sl], cfg.temperature)
                lps.append(lp), refs.append(ref), ents.append(ent), vals.append(v)
        ac.train()
        logp, ref_logp, ent = (torch.cat(x) for x in (lps, refs, ents))
        mask = resp_mask.float()
        values = torch.cat(vals) if self.critic else torch.zeros_like(mask)
        targets = L.estimate_advantages(cfg.advantage_estimator, scores, logp, ref_logp, values, mask, self.kl_ctl.value, cfg.samples_per_prompt,
                                        cfg.kl_estimator, cfg.kl_penalty, cfg.whiten_rewards, cfg.gamma, cfg.lam,
                                        sum_fn=all_reduce_sum if cfg.whiten_scope == "global" else None)
        kl, adv, returns = targets["kl"], targets["advantages"], targets["returns"]
        pad = self.tokenizer.pad_token_id
        batch = Rollout(self._gather(q, pad, True), self._gather(qm, 0, True), self._gather(r, pad), self._gather(resp_mask),
                        *(self._gather(t) for t in (logp, values, adv, returns, mask, ref_logp, targets["weights"])))
        all_scores = self._gather(scores)
        stats = {  # means over processes of equal shares: the global means
            "reward_mean": scores.mean(), "reward_std": all_scores.std() if len(all_scores) > 1 else torch.zeros(()),
            "kl": (kl.sum(1)).mean(), "entropy": all_reduce_sum((ent * mask).sum()) / all_reduce_sum(mask.sum()), "response_length": mask.sum(1).mean(),
            "kl_coef": torch.tensor(self.kl_ctl.value),
        }
        if self.gold is not None:
            stats["gold_reward_mean"] = torch.tensor(sum(self.gold(examples, gen.texts)) / len(examples))
        # this process's wall time in sampling and in scoring (reward, policy/reference/value forward passes, GAE)
        seconds = {"seconds_generate": t1 - t0, "seconds_score": time.perf_counter() - t1}
        return {"batch": batch, "stats": stats, "texts": gen.texts, "examples": examples, "seconds": seconds}

    # ------------------------------------------------------------------ optimisation
    def optimise(self, batch: Rollout, step: int) -> dict[str, float]:
        """``noptepochs`` passes over the global batch in mini-batches of ``step_batch_size``; each
        process takes every N-th row of a mini-batch, and each micro-batch's loss is weighted by its
        share of the mini-batch's response tokens (times N, which DDP's averaging undoes), so the
        gradient is the token mean over the global mini-batch whatever the number of processes."""
        acc, cfg = self.accelerator, self.cfg
        n, N = len(batch), acc.num_processes
        mb = min(cfg.micro_batch_size, cfg.step_batch_size // N)
        agg: dict[str, torch.Tensor] = {}
        count = 0
        for epoch in range(cfg.noptepochs):
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, step, 11, epoch)))
            for s in range(0, n, cfg.step_batch_size):
                mini = perm[s : s + cfg.step_batch_size]
                tokens = batch.weights[mini.to(batch.weights.device)].sum()  # the mini-batch's loss weight (its tokens for PPO)
                mine = mini[acc.process_index :: N]
                micro = [mine[i : i + mb] for i in range(0, len(mine), mb)]
                for k, ids in enumerate(micro):
                    b = batch.select(ids)
                    with no_sync(acc, [self.model], k == len(micro) - 1):
                        with autocast(acc.device, self.cfg.precision):
                            lp, _, v = self.model(b.query_ids, b.query_mask, b.response_ids, b.response_mask, cfg.temperature)
                        loss, parts = self._loss(lp, v, b)
                        if not torch.isfinite(loss):
                            last = self.latest_checkpoint()
                            value = f", value {parts['value_loss'].item()}" if "value_loss" in parts else ""
                            raise NonFiniteLoss(f"PPO step {step + 1}: non-finite loss (policy {parts['policy_loss'].item()}{value}); "
                                                f"no update was applied. Last good checkpoint: {last or 'none'}")
                        share = b.weights.sum() / tokens
                        acc.backward(loss * share * N * (self.accumulation if self._deepspeed else 1))  # DeepSpeed divides by it
                    for key, val in parts.items():  # weighted (token) means of the mini-batch
                        agg[key] = agg.get(key, 0.0) + val.detach().float() * share
                count += 1
                acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        self.backend.sync_weights(self.actor_critic.policy)  # an engine with its own weights samples the new policy next
        if not agg:
            return {}
        keys = list(agg)
        vals = acc.reduce(torch.stack([agg[k] / max(count, 1) for k in keys]).to(acc.device), reduction="sum")
        return dict(zip(keys, vals.tolist()))

    def _loss(self, lp: torch.Tensor, v: torch.Tensor | None, b: Rollout) -> tuple[torch.Tensor, dict]:
        """PPO's clipped policy and value losses, or the policy loss alone without a value model; plus
        the k3 KL term with --kl-penalty loss."""
        cfg = self.cfg
        if self.critic:
            loss, parts = L.ppo_loss(lp, v, b.logprobs, b.values, b.advantages, b.returns, b.weights, cfg.cliprange, cfg.cliprange_value, cfg.vf_coef)
        else:
            loss, parts = L.ppo_policy_loss(lp, b.logprobs, b.advantages, b.weights, cfg.cliprange)
            parts = {"policy_loss": loss, **parts}
        if cfg.kl_penalty == "loss":
            parts["kl_loss"] = L.kl_loss(lp, b.ref_logprobs, b.weights)
            loss = loss + self.kl_ctl.value * parts["kl_loss"]
        return loss, parts

    # ------------------------------------------------------------------ loop
    def train(self, resume: bool = False, on_step: Callable[[dict], None] | None = None) -> dict[str, float]:
        acc, cfg = self.accelerator, self.cfg
        if resume and (ck := self.latest_checkpoint()) is not None:
            self.load_checkpoint(ck)
            if acc.is_main_process:  # said, not only logged: a restart from step 0 must be visible
                print(f"ppo: resumed from step {self.step} (checkpoint {ck})", flush=True)
        elif acc.is_main_process and self.metrics.path.exists():
            self.metrics.path.unlink()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="ppo", disable=not acc.is_local_main_process, unit="step")
        last: dict[str, float] = {}
        while self.step < cfg.steps:
            t0 = time.time()
            ro = self.rollout(self.step)
            t1 = time.time()
            train_stats = self.optimise(ro["batch"], self.step)
            train_stats["seconds_optimise"] = time.time() - t1
            self.scheduler.step()
            keys = list(ro["stats"])
            vals = acc.reduce(torch.stack([ro["stats"][k].float().to(acc.device) for k in keys]), reduction="mean")
            stats = {k: float(v) for k, v in zip(keys, vals.tolist())}
            stats.update(train_stats)
            stats.update(ro["seconds"])
            self.kl_ctl.update(stats["kl"])
            self.step += 1
            stats.update(step=self.step, lr=self.scheduler.get_last_lr()[0], seconds=time.time() - t0)
            self.metrics.log(stats)
            tracking.log(acc, cfg.report_to, stats, self.step)
            last = stats
            if on_step:
                on_step(stats)
            bar.update(1)
            bar.set_postfix(reward=f"{stats['reward_mean']:.3f}", kl=f"{stats['kl']:.3f}")
            if cfg.snapshot_steps and self.step % cfg.snapshot_steps == 0:
                self.save_policy(snapshot_dir(self.out, self.step))
            if self.step % cfg.save_steps == 0 or self.step == cfg.steps:
                self.save_checkpoint()
        bar.close()
        tracking.finish(acc, cfg.report_to)
        return last

    def save_policy(self, path: str | Path) -> Path:
        """The policy as a transformers model (LoRA merged). The state dict comes from
        ``accelerator.get_state_dict``, which every process joins (it gathers ZeRO-3 and FSDP shards)."""
        acc = self.accelerator
        acc.wait_for_everyone()
        state = acc.get_state_dict(self.model)
        if acc.is_main_process:
            model = self.actor_critic.policy
            policy_state = {k[len("policy."):]: v for k, v in state.items() if k.startswith("policy.")}
            if self.cfg.lora_r > 0:
                import copy

                model = copy.deepcopy(model)
                model.load_state_dict(policy_state)
                model, policy_state = model.merge_and_unload(), None
            with atomic_dir(path) as tmp:
                model.save_pretrained(tmp, state_dict=policy_state, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp)
                (tmp / "rlop_config.json").write_text(json.dumps(stage_record("ppo", self.cfg), indent=2))
        acc.wait_for_everyone()
        return Path(path)


PPO_ENTRIES = ("checkpoints", "metrics.jsonl", "policy", ".policy.partial", "snapshots", tracking.DIR, "wandb")


def run_ppo(cfg: PPOConfig, out: str | Path, resume: bool = False, reward: Reward | None = None, gold: Reward | None = None) -> dict:
    """Train with PPO; the final policy is saved to ``out/policy``.

    ``out`` is written in place (checkpoints let ``resume`` continue); a fresh run over an
    earlier rlop PPO output first removes what that run wrote.
    """

    if reward is None:
        require(cfg, "reward", "a reward model directory, 'gold', or python:module:function")
    main = is_main_process()
    with claim(out, "ppo", main=main) as out:
        if main:
            if not resume:
                remove_owned(out)
            own(out, *PPO_ENTRIES)
        trainer = PPOTrainer(cfg, reward=reward, out=out, gold=gold)
        last = trainer.train(resume=resume)
        trainer.save_policy(out / "policy")
        if main:
            complete(out)
    return last
