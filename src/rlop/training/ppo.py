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
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Literal, Sequence

import torch
from tqdm.auto import tqdm

from rlop.config import ConfigError, StageConfig, opt, require, stage_record, to_dict
from rlop.data.formatting import format_prompt
from rlop.data.io import DataError, InstructionExample, load_instructions
from rlop.models.generation import Generation, SamplingConfig, make_backend
from rlop.models.precision import autocast
from rlop.models.loading import DEFAULT_MODEL, load_causal_lm, load_reward_model, load_tokenizer
from rlop.rewards import Reward, load_reward
from rlop.training import losses as L
from rlop.training import tracking
from rlop.training.rollout import KLController, Rollout, disable_dropout, no_sync, response_logprobs, token_values
from rlop.outputs import claim, complete, own, remove_owned
from rlop.utils import MetricsLogger, atomic_dir, derive_seed

log = logging.getLogger(__name__)


@dataclass
class PPOConfig(StageConfig):
    policy: str = opt(DEFAULT_MODEL, "SFT model: the initial policy and the frozen reference")
    reward: str = opt("", "reward: a reward model directory, 'gold' (sandbox), or python:module:function")
    value_model: str = opt("", "init of the value model (default: the reward model directory, else the policy)")
    value_head: Literal["zero", "reward"] = opt("zero", "value head init: zero (AlpacaFarm) | reward: keep the reward model's head (TRL)")
    prompts_file: str = opt("sandbox:unlabeled", "PPO prompts: instruction JSONL/JSON, hf:NAME[:SPLIT], or sandbox:unlabeled")
    max_prompts: int = opt(0, "use at most this many prompts (0: all)", ge=0)
    query_len: int = opt(192, "prompts longer than this many tokens are left out (and counted)", ge=1)
    response_len: int = opt(300, "new tokens per rollout", ge=1)
    steps: int = opt(40, "PPO steps (one rollout batch each)", ge=1)
    rollout_batch_size: int = opt(512, "rollouts per PPO step (all processes together)", ge=1)
    step_batch_size: int = opt(256, "rollouts per optimizer step (all processes together)", ge=1)
    micro_batch_size: int = opt(8, "rollouts per forward/backward pass on one process", ge=1)
    noptepochs: int = opt(2, "optimisation epochs over each rollout batch", ge=1)
    learning_rate: float = opt(1e-5, "peak learning rate of policy and value model", gt=0)
    warmup_steps: int = opt(5, "linear warmup, in PPO steps", ge=0)
    lr_horizon: Literal["planned", "steps"] = opt("planned", "linear decay to 0 over the planned run, total_epochs passes over the prompts "
                                                  "(AlpacaFarm: the rate stays near its peak over the steps used) | over --steps")
    total_epochs: float = opt(10.0, "planned passes over the prompts for --lr-horizon planned (AlpacaFarm: 10)", gt=0)
    disable_dropout: bool = opt(True, "turn dropout off in policy and value model (rollouts run in eval mode; TRL does the same)")
    adam_eps: float = opt(1e-5, "AdamW epsilon", gt=0)
    weight_decay: float = opt(0.0, "AdamW weight decay", ge=0)
    max_grad_norm: float = opt(1.0, "gradient clipping norm", gt=0)
    kl_coef: float = opt(0.0067, "KL penalty coefficient (the initial one with adaptive_kl)", ge=0)
    adaptive_kl: bool = opt(False, "adapt kl_coef towards target_kl (Ziegler et al.)")
    target_kl: float = opt(6.0, "KL target of the adaptive controller", gt=0)
    k_beta: float = opt(0.1, "step size of the adaptive KL controller", gt=0)
    kl_estimator: Literal["clamped", "k1", "k3"] = opt("clamped", "per-token KL estimate: clamped at 0 (AlpacaFarm) | k1 | k3")
    gamma: float = opt(1.0, "discount of GAE", ge=0, le=1)
    lam: float = opt(1.0, "lambda of GAE", ge=0, le=1)
    whiten_rewards: bool = opt(True, "whiten the shaped rewards without mean shift (AlpacaFarm)")
    cliprange: float = opt(0.2, "policy ratio clip range", gt=0)
    cliprange_value: float = opt(0.2, "value clip range", gt=0)
    vf_coef: float = opt(0.1, "weight of the value loss", ge=0)
    temperature: float = opt(1.0, "rollout sampling temperature (log-probs use the same)", gt=0)
    top_p: float = opt(1.0, "rollout nucleus sampling", gt=0, le=1)
    top_k: int = opt(0, "rollout top-k sampling (0: off)", ge=0)
    lora_r: int = opt(0, "LoRA rank on the policy (0: full fine-tuning)", ge=0)
    lora_alpha: int = opt(32, "LoRA alpha", ge=1)
    lora_dropout: float = opt(0.0, "LoRA dropout", ge=0, le=0.999)
    save_steps: int = opt(20, "checkpoint every this many steps (for --resume)", ge=1)
    keep_checkpoints: int = opt(2, "checkpoints kept on disk", ge=1)
    seed: int = opt(42, "random seed (prompt order, sampling, init)")
    generation_batch_size: int = opt(32, "prompts per generation batch", ge=1)
    reward_batch_size: int = opt(16, "texts per reward-model batch", ge=1)
    report_to: tracking.ReportTo = opt("none", tracking.HELP)
    trust_remote_code: bool = opt(False, "allow model code from the model's repository (only for models you trust)")

    def check(self) -> None:
        if self.step_batch_size > self.rollout_batch_size:
            raise ConfigError(f"--step-batch-size ({self.step_batch_size}) must not exceed --rollout-batch-size ({self.rollout_batch_size})")

    PRESETS: ClassVar[dict] = {
        "tiny": dict(policy="tiny", query_len=96, response_len=12, steps=6, rollout_batch_size=32, step_batch_size=16, micro_batch_size=16,
                     learning_rate=3e-3, warmup_steps=0, save_steps=2, max_prompts=64, kl_coef=0.01, lr_horizon="steps"),
        # 30 steps x 16 rollouts on 2 cores: a 135M reward model's scores vary mostly between prompts, so the
        # value model starts from the reward head (TRL's convention) and rewards are not whitened (TRL's default)
        "cpu": dict(query_len=128, response_len=48, steps=30, rollout_batch_size=16, step_batch_size=16, micro_batch_size=8,
                    noptepochs=1, learning_rate=2e-5, warmup_steps=2, save_steps=5, max_prompts=512, generation_batch_size=16,
                    kl_coef=0.05, value_head="reward", whiten_rewards=False, lr_horizon="steps"),
    }


class NonFiniteLoss(FloatingPointError):
    pass


class PPOTrainer:
    def __init__(self, cfg: PPOConfig, reward: Reward | None = None, prompts: Sequence[InstructionExample] | None = None,
                 out: str | Path = "ppo-out", accelerator=None, gold: Reward | None = None):
        from accelerate import Accelerator

        self.cfg, self.out = cfg, Path(out)
        self.accelerator = acc = accelerator or Accelerator(cpu=not torch.cuda.is_available(), **tracking.accelerator_kwargs(cfg.report_to, out))
        self.tokenizer = load_tokenizer(cfg.policy, cfg.trust_remote_code)
        self.prompts = self._filter_prompts(list(prompts) if prompts is not None else load_instructions(cfg.prompts_file, limit=cfg.max_prompts or None))
        if not self.prompts:
            raise DataError(cfg.prompts_file, None, None, f"no prompt is at most query_len = {cfg.query_len} tokens long; raise --query-len")
        self.reward = reward if reward is not None else load_reward(cfg.reward, batch_size=cfg.reward_batch_size)
        self.gold = gold
        torch.manual_seed(cfg.seed)
        policy = load_causal_lm(cfg.policy, trust_remote_code=cfg.trust_remote_code)
        if cfg.lora_r > 0:
            from peft import LoraConfig, get_peft_model

            policy = get_peft_model(policy, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules="all-linear", task_type="CAUSAL_LM"))
            self.ref = None
        else:
            self.ref = load_causal_lm(cfg.policy, trust_remote_code=cfg.trust_remote_code).to(acc.device).eval().requires_grad_(False)
        vinit = cfg.value_model or (cfg.reward if cfg.reward and Path(cfg.reward).is_dir() else cfg.policy)
        keep_head = cfg.value_head == "reward" and vinit == cfg.reward  # a policy init has no trained head to keep
        value = load_reward_model(vinit, zero_head=not keep_head, trust_remote_code=cfg.trust_remote_code)
        if cfg.disable_dropout:
            for model in (policy, value):
                disable_dropout(model)
        params = [p for p in policy.parameters() if p.requires_grad] + list(value.parameters())
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
        from transformers import get_scheduler

        scheduler = get_scheduler("linear", optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=self.lr_horizon())
        self.policy, self.value, self.optimizer = acc.prepare(policy, value, optimizer)
        self.scheduler = scheduler
        self.kl_ctl = KLController(cfg)
        self.step = 0
        self.backend = make_backend(acc.unwrap_model(self.policy), self.tokenizer)
        self.sampling = SamplingConfig(cfg.response_len, cfg.temperature, cfg.top_p, cfg.top_k, True, cfg.generation_batch_size)
        self.metrics = MetricsLogger(self.out / "metrics.jsonl", enabled=acc.is_main_process)
        tracking.start(acc, cfg.report_to, "ppo", to_dict(cfg))

    def lr_horizon(self) -> int:
        """Steps over which the learning rate decays linearly to 0."""
        if self.cfg.lr_horizon == "steps":
            return self.cfg.steps
        return max(self.cfg.steps, math.ceil(self.cfg.total_epochs * len(self.prompts) / self.cfg.rollout_batch_size))

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
        n, B = len(self.prompts), self.cfg.rollout_batch_size
        start = step * B
        out = []
        while len(out) < B:
            epoch, off = divmod(start + len(out), n)
            perm = list(range(n))
            random.Random(derive_seed(self.cfg.seed, 7, epoch)).shuffle(perm)
            out.extend(perm[off : off + B - len(out)])
        return out

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_root(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            policy = acc.unwrap_model(self.policy)
            state = {
                "policy": {k: v for k, v in policy.state_dict().items() if self.cfg.lora_r == 0 or "lora_" in k},
                "value": acc.unwrap_model(self.value).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "kl_coef": self.kl_ctl.value,
                "step": self.step,
            }
            with atomic_dir(self.ckpt_root / f"step-{self.step}") as tmp:
                torch.save(state, tmp / "state.pt")
                (tmp / "trainer.json").write_text(json.dumps({"step": self.step, "config": to_dict(self.cfg)}, indent=2))
            (self.ckpt_root / "latest.tmp").write_text(str(self.step))
            (self.ckpt_root / "latest.tmp").replace(self.ckpt_root / "latest")
            for old in sorted(self.ckpt_root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def latest_checkpoint(self) -> Path | None:
        f = self.ckpt_root / "latest"
        if not f.exists():
            return None
        p = self.ckpt_root / f"step-{int(f.read_text().strip())}"
        return p if (p / "state.pt").exists() else None

    def load_checkpoint(self, path: Path) -> None:
        acc = self.accelerator
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        acc.unwrap_model(self.policy).load_state_dict(state["policy"], strict=self.cfg.lora_r == 0)
        acc.unwrap_model(self.value).load_state_dict(state["value"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.kl_ctl.value = state["kl_coef"]
        self.step = state["step"]
        if acc.is_main_process and self.metrics.path.exists():
            rows = [r for r in self.metrics.path.read_text().splitlines() if r.strip() and json.loads(r).get("step", 0) <= self.step]
            self.metrics.path.write_text("".join(r + "\n" for r in rows))

    # ------------------------------------------------------------------ rollout
    @torch.no_grad()
    def rollout(self, step: int) -> dict:
        acc, cfg = self.accelerator, self.cfg
        idx = self._batch_indices(step)[acc.process_index :: acc.num_processes]
        examples = [self.prompts[i] for i in idx]
        texts = [format_prompt(self.tokenizer, e.instruction, e.input) for e in examples]
        gen: Generation = self.backend.generate(texts, self.sampling, [derive_seed(cfg.seed, step, i) for i in idx])
        scores = torch.tensor(self.reward(examples, gen.texts), dtype=torch.float32, device=acc.device)
        dev = acc.device
        q, qm, r, resp_mask = (t.to(dev) for t in (gen.query_ids, gen.query_mask, gen.response_ids, gen.response_mask))
        lps, refs, vals, ents = [], [], [], []
        mb = cfg.micro_batch_size
        self.policy.eval()
        with autocast(dev):
            for s in range(0, len(idx), mb):
                sl = slice(s, s + mb)
                lp, ent = response_logprobs(self.policy, q[sl], qm[sl], r[sl], resp_mask[sl], cfg.temperature, with_entropy=True)
                if self.ref is not None:
                    ref, _ = response_logprobs(self.ref, q[sl], qm[sl], r[sl], resp_mask[sl], cfg.temperature)
                else:
                    with acc.unwrap_model(self.policy).disable_adapter():
                        ref, _ = response_logprobs(self.policy, q[sl], qm[sl], r[sl], resp_mask[sl], cfg.temperature)
                lps.append(lp), refs.append(ref), ents.append(ent)
                vals.append(token_values(self.value, q[sl], qm[sl], r[sl], resp_mask[sl]))
        self.policy.train()
        logp, ref_logp, values, ent = (torch.cat(x) for x in (lps, refs, vals, ents))
        mask = resp_mask.float()
        kl = L.per_token_kl(logp, ref_logp, cfg.kl_estimator) * mask
        rewards = L.shaped_rewards(scores, kl, mask, self.kl_ctl.value)
        if cfg.whiten_rewards:
            rewards = L.whiten(rewards, mask, shift_mean=False)
        adv, returns = L.gae(rewards, values, mask, cfg.gamma, cfg.lam)
        adv = L.whiten(adv, mask, shift_mean=True)
        batch = Rollout(q, qm, r, resp_mask, logp, values, adv, returns, mask)
        stats = {
            "reward_mean": scores.mean(), "reward_std": scores.std() if len(scores) > 1 else torch.zeros(()),
            "kl": (kl.sum(1)).mean(), "entropy": L.masked_mean(ent, mask), "response_length": mask.sum(1).mean(),
            "kl_coef": torch.tensor(self.kl_ctl.value),
        }
        if self.gold is not None:
            stats["gold_reward_mean"] = torch.tensor(sum(self.gold(examples, gen.texts)) / len(examples))
        return {"batch": batch, "stats": stats, "texts": gen.texts, "examples": examples}

    # ------------------------------------------------------------------ optimisation
    def optimise(self, batch: Rollout, step: int) -> dict[str, float]:
        acc, cfg = self.accelerator, self.cfg
        n = len(batch)
        per_proc = max(1, cfg.step_batch_size // acc.num_processes)
        mb = min(cfg.micro_batch_size, per_proc)
        agg: dict[str, float] = {}
        count = 0
        for epoch in range(cfg.noptepochs):
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, step, 11, epoch)))
            for s in range(0, n, per_proc):
                mini = perm[s : s + per_proc]
                micro = [mini[i : i + mb] for i in range(0, len(mini), mb)]
                for k, ids in enumerate(micro):
                    b = batch.select(ids)
                    sync = k == len(micro) - 1
                    ctx = no_sync(acc, [self.policy, self.value], sync)
                    with ctx:
                        with autocast(acc.device):
                            lp, _ = response_logprobs(self.policy, b.query_ids, b.query_mask, b.response_ids, b.response_mask, cfg.temperature)
                            v = token_values(self.value, b.query_ids, b.query_mask, b.response_ids, b.response_mask)
                        pg, pst = L.ppo_policy_loss(lp, b.logprobs, b.advantages, b.mask, cfg.cliprange)
                        vf, vst = L.ppo_value_loss(v, b.values, b.returns, b.mask, cfg.cliprange_value)
                        loss = pg + cfg.vf_coef * vf
                        if not torch.isfinite(loss):
                            last = self.latest_checkpoint()
                            raise NonFiniteLoss(
                                f"PPO step {step + 1}: non-finite loss (policy {pg.item()}, value {vf.item()}); "
                                f"no update was applied. Last good checkpoint: {last or 'none'}"
                            )
                        acc.backward(loss * len(ids) / len(mini))
                    for key, val in {"policy_loss": pg, "value_loss": vf, **pst, **vst}.items():
                        agg[key] = agg.get(key, 0.0) + float(val.detach())
                    count += 1
                acc.clip_grad_norm_(list(self.policy.parameters()) + list(self.value.parameters()), cfg.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        return {k: v / max(count, 1) for k, v in agg.items()}

    # ------------------------------------------------------------------ loop
    def train(self, resume: bool = False, on_step: Callable[[dict], None] | None = None) -> dict[str, float]:
        acc, cfg = self.accelerator, self.cfg
        if resume and (ck := self.latest_checkpoint()) is not None:
            self.load_checkpoint(ck)
            log.info("resumed from %s (step %d)", ck, self.step)
        elif acc.is_main_process and self.metrics.path.exists():
            self.metrics.path.unlink()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="ppo", disable=not acc.is_local_main_process, unit="step")
        last: dict[str, float] = {}
        while self.step < cfg.steps:
            t0 = time.time()
            ro = self.rollout(self.step)
            train_stats = self.optimise(ro["batch"], self.step)
            self.scheduler.step()
            keys = list(ro["stats"])
            vals = acc.reduce(torch.stack([ro["stats"][k].float().to(acc.device) for k in keys]), reduction="mean")
            stats = {k: float(v) for k, v in zip(keys, vals.tolist())}
            stats.update(train_stats)
            self.kl_ctl.update(stats["kl"], cfg.rollout_batch_size)
            self.step += 1
            stats.update(step=self.step, lr=self.scheduler.get_last_lr()[0], seconds=time.time() - t0)
            self.metrics.log(stats)
            tracking.log(acc, cfg.report_to, stats, self.step)
            last = stats
            if on_step:
                on_step(stats)
            bar.update(1)
            bar.set_postfix(reward=f"{stats['reward_mean']:.3f}", kl=f"{stats['kl']:.3f}")
            if self.step % cfg.save_steps == 0 or self.step == cfg.steps:
                self.save_checkpoint()
        bar.close()
        tracking.finish(acc, cfg.report_to)
        return last

    def save_policy(self, path: str | Path) -> Path:
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            model = acc.unwrap_model(self.policy)
            if self.cfg.lora_r > 0:
                import copy

                model = copy.deepcopy(model).merge_and_unload()
            with atomic_dir(path) as tmp:
                model.save_pretrained(tmp, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp)
                (tmp / "rlop_config.json").write_text(json.dumps(stage_record("ppo", self.cfg), indent=2))
        acc.wait_for_everyone()
        return Path(path)


PPO_ENTRIES = ("checkpoints", "metrics.jsonl", "policy", ".policy.partial", tracking.DIR, "wandb")


def run_ppo(cfg: PPOConfig, out: str | Path, resume: bool = False, reward: Reward | None = None, gold: Reward | None = None) -> dict:
    """Train with PPO; the final policy is saved to ``out/policy``.

    ``out`` is written in place (checkpoints let ``resume`` continue); a fresh run over an
    earlier rlop PPO output first removes what that run wrote.
    """
    from accelerate import PartialState

    if reward is None:
        require(cfg, "reward", "a reward model directory, 'gold', or python:module:function")
    main = PartialState().is_main_process
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
