"""PPO's model side: the ``ActorCritic`` module (policy and value model, prepared by accelerate
as one), its forward passes (policy log-probs, values), the ``Rollout`` batch they fill and the
adaptive KL controller.

Kept apart from the trainer so that the loop in :mod:`rlop.training.ppo` reads as the
algorithm: sample, score, shape rewards, estimate advantages, optimise.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from rlop.models.generation import accepts_kwarg
from rlop.models.loading import backbone, score_head
from rlop.models.reward_model import position_ids_from_mask
from rlop.training import losses as L


@dataclass
class Rollout:
    """Tensors of one rollout batch, one row per (prompt, response)."""

    query_ids: torch.Tensor  # [B, Q] left-padded prompt tokens
    query_mask: torch.Tensor
    response_ids: torch.Tensor  # [B, R] sampled tokens, right-padded after EOS
    response_mask: torch.Tensor  # 1 on sampled tokens up to and including EOS
    logprobs: torch.Tensor  # [B, R] log-probs of the sampled tokens under the rollout policy
    values: torch.Tensor  # [B, R] value estimates at rollout time (zeros without a value model)
    advantages: torch.Tensor  # [B, R] the advantage estimator's (whitened GAE advantages for PPO)
    returns: torch.Tensor  # [B, R] value targets (zeros without a value model)
    mask: torch.Tensor  # response_mask as float
    ref_logprobs: torch.Tensor  # [B, R] log-probs under the frozen reference (the loss-side KL needs them)
    weights: torch.Tensor  # [B, R] each token's weight in the loss's weighted mean (the mask, or for GRPO mask / length)

    def __len__(self) -> int:
        return self.query_ids.shape[0]

    def select(self, rows: torch.Tensor) -> "Rollout":
        return Rollout(**{f.name: getattr(self, f.name)[rows.to(getattr(self, f.name).device)] for f in fields(self)})


class KLController:
    def __init__(self, cfg):
        self.value, self.cfg = cfg.kl_coef, cfg

    def update(self, kl: float) -> None:
        """Adaptive controller of Ziegler et al. (used only with adaptive_kl), once per rollout: the
        coefficient moves by k_beta times the relative KL error, clipped to +-0.2 (their n_steps / horizon
        with one update per batch of rollout_batch_size episodes)."""
        if not self.cfg.adaptive_kl:
            return
        err = max(min(kl / self.cfg.target_kl - 1, 0.2), -0.2)
        self.value *= 1 + err * self.cfg.k_beta


def response_logprobs(model, query_ids, query_mask, response_ids, response_mask, temperature: float, with_entropy: bool = False):
    """Per-token log-probs of ``response_ids`` (and entropies) under ``model``."""
    ids = torch.cat([query_ids, response_ids], 1)
    mask = torch.cat([query_mask, response_mask], 1)
    R = response_ids.shape[1]
    kw = {"logits_to_keep": R + 1} if accepts_kwarg(model, "logits_to_keep") else {}  # skip the LM head on the query
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=False, **kw)
    logits = out.logits[:, -(R + 1) : -1]
    lp = L.logprobs_from_logits(logits, response_ids, temperature)
    ent = L.entropy_from_logits(logits, temperature) if with_entropy else None
    return lp, ent


def token_values(value_model, query_ids, query_mask, response_ids, response_mask):
    ids = torch.cat([query_ids, response_ids], 1)
    mask = torch.cat([query_mask, response_mask], 1)
    h = backbone(value_model)(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=False).last_hidden_state
    Q = query_ids.shape[1]
    return score_head(value_model)(h[:, Q - 1 : -1]).squeeze(-1).float()


class ActorCritic(torch.nn.Module):
    """Policy and value model as one module, so that accelerate prepares (wraps, shards) them once;
    a critic-free estimator passes ``value=None`` and the module holds the policy alone.

    AlpacaFarm's ``ActorCritic`` idea: DDP, DeepSpeed and FSDP2 each accept one model per
    ``prepare``, and calling the prepared module's ``forward`` is what lets DDP sync the
    gradients of both halves. Generation and the frozen reference use the unwrapped halves."""

    def __init__(self, policy: torch.nn.Module, value: torch.nn.Module | None):
        super().__init__()
        self.policy, self.value = policy, value

    def forward(self, query_ids, query_mask, response_ids, response_mask, temperature: float, with_entropy: bool = False,
                with_policy: bool = True):
        """(log-probs, entropies or None, values or None) of the response tokens, each [B, R]; without
        ``with_policy`` no log-probs (they come from the sampler), without a value model no values."""
        lp = ent = values = None
        if with_policy:
            lp, ent = response_logprobs(self.policy, query_ids, query_mask, response_ids, response_mask, temperature, with_entropy)
        if self.value is not None:
            values = token_values(self.value, query_ids, query_mask, response_ids, response_mask)
        return lp, ent, values


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off everywhere: rollouts are scored in eval mode, so training must see the same network."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    cfg = getattr(model, "config", None)
    for name in ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout"):
        if cfg is not None and isinstance(getattr(cfg, name, None), float):
            setattr(cfg, name, 0.0)
