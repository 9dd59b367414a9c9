"""Pure loss functions of rlop, each unit-tested against hand-computed values.

Reward learning: Bradley-Terry. PPO: masked statistics, whitening, per-token KL,
GAE, clipped policy and value losses; the critic-free advantage estimators (RLOO, GRPO,
Dr. GRPO, REINFORCE++). RLP-UML: Jensen-Shannon MI bound, symmetrized
KL of diagonal Gaussians (closed form and Monte-Carlo), InfoNCE.
All tensors are batch-first; ``mask`` is 1 on real response tokens and 0 on padding.
"""

from __future__ import annotations

import math

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- reward


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected), averaged (AlpacaFarm's BCE on r2 - r1); with ``weights``, the
    mean of the weighted per-pair losses (OCRM's importance-weighted loss)."""
    loss = -F.logsigmoid(chosen - rejected)
    return loss.mean() if weights is None else (loss * weights.to(loss.dtype)).mean()


# --------------------------------------------------------------------------- masked statistics


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8,
           sum_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Normalise to unit variance over masked entries; keep the mean unless ``shift_mean``.

    AlpacaFarm whitens shaped rewards without mean shift and advantages with it.
    Padding positions come back as 0. ``sum_fn`` turns local sums into global ones (an
    all-reduce over processes), so that the moments are those of the global batch.
    """
    total = sum_fn or (lambda t: t)
    m = mask.to(x.dtype)
    s, n = total(torch.stack([(x * m).sum(), m.sum()]))
    mean = s / n.clamp(min=1.0)
    var = total(((x - mean) ** 2 * m).sum()) / n.clamp(min=1.0)
    if n > 1:
        var = var * n / (n - 1)  # unbiased, as masked_var
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * m


# --------------------------------------------------------------------------- PPO


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(label) under temperature-scaled logits (AlpacaFarm scales by the sampling temperature)."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return torch.gather(logp, -1, labels.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def per_token_kl(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "clamped") -> torch.Tensor:
    """Per-token KL(policy || reference) estimate from sampled tokens.

    ``clamped``: max(logp - ref_logp, 0), AlpacaFarm's choice; ``k1``: logp - ref_logp
    (unbiased); ``k3``: exp(r) - 1 - r with r = ref_logp - logp (unbiased, non-negative).
    """
    d = logp - ref_logp
    if estimator == "clamped":
        return d.clamp(min=0.0)
    if estimator == "k1":
        return d
    if estimator == "k3":
        r = -d
        return r.exp() - 1 - r
    raise ValueError(f"unknown KL estimator {estimator!r}")


def shaped_rewards(
    score: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """-kl_coef * KL at every response token, plus the scalar score at the last real token."""
    rewards = -kl_coef * kl * mask
    last = (mask.long() * torch.arange(mask.shape[1], device=mask.device)).argmax(dim=1)
    rewards[torch.arange(len(score)), last] += score.to(rewards.dtype)
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded responses.

    Positions where mask is 0 are terminal: their value and reward do not leak into
    earlier real tokens. Returns (advantages, returns), both zero on padding.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    T = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_v = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        next_m = mask[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v * next_m - values[:, t]
        last = delta + gamma * lam * next_m * last
        adv[:, t] = last
    adv = adv * mask
    return adv, (adv + values) * mask


def ppo_advantages(scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                   kl_coef: float, kl_estimator: str = "clamped", whiten_rewards: bool = True, gamma: float = 1.0, lam: float = 1.0,
                   sum_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """How PPO turns a scored rollout batch into its training targets (AlpacaFarm's order):
    per-token KL estimate times the mask; shaped rewards (-kl_coef * KL per token, the score at the
    last real token); optionally whitened without mean shift; GAE(gamma, lambda); advantages whitened
    with mean shift. ``sum_fn`` makes the whitening moments those of the global batch."""
    kl = per_token_kl(logp, ref_logp, kl_estimator) * mask
    rewards = shaped_rewards(scores, kl, mask, kl_coef)
    if whiten_rewards:
        rewards = whiten(rewards, mask, shift_mean=False, sum_fn=sum_fn)
    adv, returns = gae(rewards, values, mask, gamma, lam)
    return {"kl": kl, "rewards": rewards, "advantages": whiten(adv, mask, shift_mean=True, sum_fn=sum_fn), "returns": returns}


# --------------------------------------------------------------------------- advantage estimators

# name -> whether the estimator needs a value model; the ones marked False load, train and checkpoint none
ESTIMATORS = {"gae": True, "rloo": False, "grpo": False, "dr_grpo": False, "reinforce_pp": False}
GROUP_ESTIMATORS = ("rloo", "grpo", "dr_grpo")  # baselines over the k samples of one prompt (rows side by side)
GRPO_STD_EPS = 1e-4  # TRL's GRPOTrainer: (r - mean) / (std + 1e-4), std unbiased over the group


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """REINFORCE leave-one-out (Ahmadian et al. 2024): each sample's reward minus the mean reward
    of the other k - 1 samples of its prompt. ``rewards`` [B] holds groups of k consecutive rows."""
    g = rewards.view(-1, k)
    return (g - (g.sum(1, keepdim=True) - g) / (k - 1)).reshape(-1)


def group_normalised_advantages(rewards: torch.Tensor, k: int, scale: bool = True) -> torch.Tensor:
    """GRPO (Shao et al. 2024): reward minus its group's mean, divided by the group's (unbiased)
    std plus ``GRPO_STD_EPS``; without ``scale`` (Dr. GRPO, Liu et al. 2025) the mean is only removed."""
    g = rewards.view(-1, k)
    a = g - g.mean(1, keepdim=True)
    if scale:
        a = a / (g.std(1, keepdim=True) + GRPO_STD_EPS)
    return a.reshape(-1)


def estimate_advantages(estimator: str, scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, values: torch.Tensor | None,
                        mask: torch.Tensor, kl_coef: float, k: int = 1, kl_estimator: str = "clamped", kl_penalty: str = "reward",
                        whiten_rewards: bool = True, gamma: float = 1.0, lam: float = 1.0,
                        sum_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The registry of advantage estimators: a scored rollout batch to per-token training targets.

    ``gae``: :func:`ppo_advantages` (PPO with a value model; the KL always measured, penalised in the
    reward only with ``kl_penalty="reward"``). Critic-free (``values`` unused):
    ``rloo``, ``grpo`` and ``dr_grpo`` give every token of a response its sequence's advantage from
    the sequence reward score - kl_coef * sum_t KL_t (TRL's RLOO) or, with ``kl_penalty="loss"``,
    the score alone (the KL then enters the loss, GRPO's way); ``reinforce_pp`` (REINFORCE++, Hu 2025)
    takes the per-token shaped rewards' returns-to-go and whitens them over the global batch.
    Returns kl, advantages, returns (zeros without a value model) and ``weights``: each token's
    weight in the loss's weighted mean, the mask, or for ``grpo`` the mask over the response
    length (every response counts equally: GRPO's per-sequence mean, which Dr. GRPO drops)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}")
    coef = kl_coef if kl_penalty == "reward" else 0.0
    if estimator == "gae":
        out = ppo_advantages(scores, logp, ref_logp, values, mask, coef, kl_estimator, whiten_rewards, gamma, lam, sum_fn)
        return {**out, "weights": mask}
    kl = per_token_kl(logp, ref_logp, kl_estimator) * mask
    weights = mask
    if estimator == "reinforce_pp":
        rewards = shaped_rewards(scores, kl, mask, coef)
        returns, _ = gae(rewards, torch.zeros_like(rewards), mask, gamma, 1.0)  # zero values: returns-to-go
        adv = whiten(returns, mask, shift_mean=True, sum_fn=sum_fn)
    else:
        seq = scores.to(mask.dtype) - coef * kl.sum(1)
        a = rloo_advantages(seq, k) if estimator == "rloo" else group_normalised_advantages(seq, k, scale=estimator == "grpo")
        adv = a[:, None] * mask
        if estimator == "grpo":
            weights = mask / mask.sum(1, keepdim=True).clamp(min=1.0)
    return {"kl": kl, "advantages": adv, "returns": torch.zeros_like(adv), "weights": weights}


def kl_loss(logp: torch.Tensor, ref_logp: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The k3 estimate of KL(policy || reference) at the current policy, a weighted mean over
    ``weights``: the KL as a loss term (GRPO's ``kl_penalty="loss"``) instead of a reward penalty."""
    return masked_mean(per_token_kl(logp, ref_logp, "k3"), weights)


def ppo_loss(logp: torch.Tensor, values: torch.Tensor, old_logp: torch.Tensor, old_values: torch.Tensor, advantages: torch.Tensor,
             returns: torch.Tensor, mask: torch.Tensor, cliprange: float, cliprange_value: float, vf_coef: float
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped policy loss plus ``vf_coef`` times the clipped value loss, token means over ``mask``."""
    pg, pst = ppo_policy_loss(logp, old_logp, advantages, mask, cliprange)
    vf, vst = ppo_value_loss(values, old_values, returns, mask, cliprange_value)
    return pg + vf_coef * vf, {"policy_loss": pg, "value_loss": vf, **pst, **vst}


def ppo_policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    ratio = torch.exp(logp - old_logp)
    loss1 = -advantages * ratio
    loss2 = -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(loss1, loss2), mask)
    stats = {
        "policy_clipfrac": masked_mean((loss2 > loss1).float(), mask).detach(),
        "approx_kl": (0.5 * masked_mean((logp - old_logp) ** 2, mask)).detach(),
        "ratio": masked_mean(ratio, mask).detach(),
    }
    return loss, stats


def ppo_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    l1 = (values - returns) ** 2
    l2 = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(l1, l2), mask)
    return loss, {"value_clipfrac": masked_mean((l2 > l1).float(), mask).detach()}


# --------------------------------------------------------------------------- RLP-UML


def js_mi_bound(t_pos: torch.Tensor, t_neg: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon MI lower bound (Hjelm et al. 2018) from critic scores.

    E_pos[-softplus(-T)] - E_neg[softplus(T)]; maximised by the critic and encoders.
    """
    return (-F.softplus(-t_pos)).mean() - F.softplus(t_neg).mean()


def gaussian_kl(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """KL(N(mu1, diag sigma1^2) || N(mu2, diag sigma2^2)), summed over the last dim."""
    var1, var2 = sigma1**2, sigma2**2
    kl = torch.log(sigma2 / sigma1) + (var1 + (mu1 - mu2) ** 2) / (2 * var2) - 0.5
    return kl.sum(-1)


def symmetrized_kl(
    mu1: torch.Tensor,
    sigma1: torch.Tensor,
    mu2: torch.Tensor,
    sigma2: torch.Tensor,
    method: str = "closed",
    z1: torch.Tensor | None = None,
    z2: torch.Tensor | None = None,
) -> torch.Tensor:
    """D_SKL = (KL(p1||p2) + KL(p2||p1)) / 2, averaged over the batch.

    ``closed``: exact for diagonal Gaussians (default). ``mc``: Federici et al.'s one-sample
    estimate 1/2 [log p1(z1) - log p2(z1) + log p2(z2) - log p1(z2)] with z_i ~ p_i.
    """
    if method == "closed":
        return 0.5 * (gaussian_kl(mu1, sigma1, mu2, sigma2) + gaussian_kl(mu2, sigma2, mu1, sigma1)).mean()
    if method == "mc":
        if z1 is None or z2 is None:
            raise ValueError("mc symmetrized KL needs samples z1, z2")
        p1 = torch.distributions.Independent(torch.distributions.Normal(mu1, sigma1), 1)
        p2 = torch.distributions.Independent(torch.distributions.Normal(mu2, sigma2), 1)
        return 0.5 * ((p1.log_prob(z1) - p2.log_prob(z1)) + (p2.log_prob(z2) - p1.log_prob(z2))).mean()
    raise ValueError(f"unknown symmetrized KL method {method!r}")


JS_CHANCE = -2 * math.log(2)  # js_mi_bound of a critic whose output is the same for positives and negatives (T = 0)


def beta_at(step: int, total: int, schedule: str = "constant", start: float = 1e-3, end: float = 1.0,
            flat_share: float = 1 / 3) -> float:
    """The MIB's weight beta on D_SKL at optimiser step ``step`` of ``total`` (0-based).

    ``constant``: ``end`` throughout (the paper's equation: beta = 1). ``exponential``: Federici
    et al.'s ExponentialScheduler rescaled to the run: ``start`` for the first ``flat_share`` of
    the steps, then log-linear up to ``end`` at the last step (their MIB.yml: 1e-3 for 50k
    iterations, then to 1 over the next 100k, i.e. flat for a third)."""
    if schedule == "constant":
        return end
    if schedule != "exponential":
        raise ValueError(f"unknown beta schedule {schedule!r}")
    flat = int(flat_share * total)
    if step <= flat or total - 1 <= flat:
        return start
    t = min(1.0, (step - flat) / (total - 1 - flat))
    return float(math.exp(math.log(start) + t * (math.log(end) - math.log(start))))


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` and row i of ``b`` are positives, other rows negatives."""
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.t() / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


class AuxLoss(nn.Module):
    """An extra reward-model loss from final hidden states of view pairs.

    ``forward(h1, h2)`` gets [batch, hidden] float tensors and returns (loss, logs).
    """

    def forward(self, h1: torch.Tensor, h2: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def set_progress(self, step: int, total: int) -> None:
        """Called by the reward trainer before each optimiser step (0-based) of ``total``: for schedules such as the MIB's beta."""
