"""Configuration of policy optimisation (steps 3 and 5 of RLP): PPO-GAE by default, or a critic-free
estimator (RLOO, GRPO, Dr. GRPO, REINFORCE++); the trainer is :mod:`rlop.training.ppo`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from rlop.config import ConfigError, StageConfig, opt
from rlop.models.loading import DEFAULT_MODEL
from rlop.training import tracking
from rlop.models import precision as precision_


_CPU = dict(query_len=128, response_len=48, steps=30, rollout_batch_size=16, step_batch_size=16, micro_batch_size=8, noptepochs=1,
            learning_rate=2e-5, warmup_steps=2, save_steps=5, max_prompts=512, generation_batch_size=16, kl_coef=0.05, value_head="reward",
            whiten_rewards=False, lr_horizon="steps")


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
    advantage_estimator: Literal["gae", "rloo", "grpo", "dr_grpo", "reinforce_pp"] = opt(
        "gae", "policy optimiser: gae (PPO with a value model, the paper's) | critic-free, no value model: rloo (leave-one-out over "
               "the k samples of a prompt) | grpo (group z-scores, each response weighted equally) | dr_grpo (group mean removed, "
               "no std or length normalisation) | reinforce_pp (REINFORCE++: returns-to-go whitened over the batch)")
    samples_per_prompt: int = opt(1, "k: responses sampled per prompt in a rollout batch (rloo, grpo, dr_grpo need 2 or more); "
                                     "rollout_batch_size counts responses", ge=1)
    kl_penalty: Literal["reward", "loss"] = opt("reward", "where the KL to the reference enters: a per-token reward penalty "
                                                          "(AlpacaFarm, TRL's RLOO) | loss: kl_coef times its k3 estimate in the loss (GRPO)")
    kl_coef: float = opt(0.0067, "KL penalty coefficient (the initial one with adaptive_kl)", ge=0)
    adaptive_kl: bool = opt(False, "adapt kl_coef towards target_kl (Ziegler et al.)")
    target_kl: float = opt(6.0, "KL target of the adaptive controller", gt=0)
    k_beta: float = opt(0.1, "step size of the adaptive KL controller", gt=0)
    kl_estimator: Literal["clamped", "k1", "k3"] = opt("clamped", "per-token KL estimate: clamped at 0 (AlpacaFarm) | k1 | k3")
    gamma: float = opt(1.0, "PPO's discount factor in GAE (not SPG's gamma; under rlop run set it in the ppo: section)", ge=0, le=1)
    lam: float = opt(1.0, "lambda of GAE", ge=0, le=1)
    whiten_rewards: bool = opt(True, "whiten the shaped rewards without mean shift (AlpacaFarm)")
    whiten_scope: Literal["global", "process"] = opt("global", "moments for whitening rewards and advantages: of the global rollout batch "
                                                     "(results do not depend on the number of processes) | of each process's share")
    cliprange: float = opt(0.2, "policy ratio clip range", gt=0)
    cliprange_value: float = opt(0.2, "value clip range", gt=0)
    vf_coef: float = opt(0.1, "weight of the value loss", ge=0)
    temperature: float = opt(1.0, "rollout sampling temperature (log-probs use the same)", gt=0)
    rollout_logprobs: Literal["recompute", "sampler"] = opt("recompute", "the rollout policy's log-probs: recompute them with a forward "
                                                           "pass of the policy (AlpacaFarm) | sampler: keep the sampling step's (TRL; one "
                                                           "forward pass fewer per rollout, equal up to rounding; engines without them recompute)")
    top_p: float = opt(1.0, "rollout nucleus sampling", gt=0, le=1)
    top_k: int = opt(0, "rollout top-k sampling (0: off)", ge=0)
    lora_r: int = opt(0, "LoRA rank on the policy (0: full fine-tuning)", ge=0)
    lora_alpha: int = opt(32, "LoRA alpha", ge=1)
    lora_dropout: float = opt(0.0, "LoRA dropout", ge=0, le=0.999)
    value_lora_r: int = opt(0, "LoRA rank on the value model (0: full fine-tuning); its scalar head is always fully trained", ge=0)
    frozen_dtype: Literal["auto", "fp32", "bf16"] = opt("auto", "weights of the frozen reference and reward models: auto (bf16 when "
                                                        "compute runs in bf16, else fp32) | fp32 | bf16 (half the memory)")
    attn_implementation: str = opt("", "attention kernel of every model (eager, sdpa, flash_attention_2, ...; empty: transformers' choice)")
    gradient_checkpointing: bool = opt(False, "recompute activations in the backward pass of policy and value model (less memory, ~30% more time)")
    save_steps: int = opt(20, "checkpoint every this many steps (for --resume)", ge=1)
    keep_checkpoints: int = opt(2, "checkpoints kept on disk", ge=1)
    snapshot_steps: int = opt(0, "keep the policy every this many steps in snapshots/step-N (transformers folders, kept after the run) "
                                 "for the over-optimisation curve (rlop overopt); 0: off", ge=0)
    seed: int = opt(42, "random seed (prompt order, sampling, init)")
    precision: precision_.Precision = opt("auto", precision_.HELP)
    generation_batch_size: int = opt(32, "prompts per generation batch", ge=1)
    reward_batch_size: int = opt(16, "texts per reward-model batch", ge=1)
    report_to: tracking.ReportTo = opt("none", tracking.HELP)
    trust_remote_code: bool = opt(False, "allow model code from the model's repository (only for models you trust)")

    def check(self) -> None:
        from rlop.training.losses import GROUP_ESTIMATORS

        k = self.samples_per_prompt
        if self.advantage_estimator in GROUP_ESTIMATORS and k < 2:
            raise ConfigError(f"--advantage-estimator {self.advantage_estimator} needs --samples-per-prompt of 2 or more (a group baseline)")
        if self.rollout_batch_size % k:
            raise ConfigError(f"--rollout-batch-size ({self.rollout_batch_size}) must be a multiple of --samples-per-prompt ({k})")
        if self.step_batch_size > self.rollout_batch_size:
            raise ConfigError(f"--step-batch-size ({self.step_batch_size}) must not exceed --rollout-batch-size ({self.rollout_batch_size})")

    PRESETS: ClassVar[dict] = {
        "tiny": dict(policy="tiny", query_len=96, response_len=12, steps=6, rollout_batch_size=32, step_batch_size=16, micro_batch_size=16,
                     learning_rate=3e-3, warmup_steps=0, save_steps=2, max_prompts=64, kl_coef=0.01, lr_horizon="steps"),
        # 30 steps x 16 rollouts on 2 cores: a 135M reward model's scores vary mostly between prompts, so the
        # value model starts from the reward head (TRL's convention) and rewards are not whitened (TRL's default)
        "cpu": _CPU,
        # the multi-seed study (rlop run --preset study): the cpu shapes, 10 steps per PPO run (three per seed), and
        # AlpacaFarm's learning-rate horizon (the planned run), so the rate stays near its peak over the steps used
        "study": {**_CPU, "response_len": 32, "steps": 10, "lr_horizon": "planned"},
        # gate A of the RLP experiment (rlop run --preset overopt): the cpu shapes with AlpacaFarm's KL coefficient and
        # learning-rate horizon, enough steps for the gold score to pass its peak, and the policy kept every 8 steps
        "overopt": {**_CPU, "steps": 64, "kl_coef": 0.0067, "lr_horizon": "planned", "save_steps": 8, "snapshot_steps": 8},
        # one GPU: AlpacaFarm's shapes (the field defaults) with batches that fill an 80 GB card for models up to 1B (untested on GPU)
        "gpu": dict(generation_batch_size=128, micro_batch_size=16, reward_batch_size=64),
    }
