"""RLP-UML: the multi-view information bottleneck (MIB) loss and its ablations.

L_M = -I_JS(z1; z2) + D_SKL(p(z|v1) || p(z|v2))  (paper Eq. 1, Federici et al. 2020)

* views v1, v2: two distinct policy responses to one instruction, represented by the
  reward model's final hidden state at the last token (the vector its head reads);
* encoders: mu(v) and sigma(v), separate three-layer MLPs, sigma = softplus + 1e-7, fp32;
* I_JS: Jensen-Shannon bound with a critic MLP on [z1; z2]; negatives by rolling the batch
  by one (Federici's code, default) or all off-diagonal pairs; gathered across processes;
* D_SKL: closed form for diagonal Gaussians (default) or Federici's one-sample estimate.

Ablations (paper Table 4): ``infomax`` (single view, critic on [h; z]), ``mvi`` (-I only),
``cl`` (InfoNCE on the two views' encodings).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rlop.distributed import gather_with_grad
from rlop.training.losses import JS_CHANCE, AuxLoss, beta_at, info_nce, js_mi_bound, symmetrized_kl

from rlop.rlp.uml_config import REP_LOSSES, UMLConfig  # noqa: F401 (UMLConfig lives with this module)


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class GaussianEncoder(nn.Module):
    def __init__(self, d_in: int, hidden: int, latent: int, eps: float = 1e-7):
        super().__init__()
        self.mu, self.sigma, self.eps = mlp(d_in, hidden, latent), mlp(d_in, hidden, latent), eps

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = h.float()
        return self.mu(h), F.softplus(self.sigma(h)) + self.eps


class Critic(nn.Module):
    def __init__(self, d_a: int, d_b: int, hidden: int):
        super().__init__()
        self.net = mlp(d_a + d_b, hidden, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a, b], dim=-1)).squeeze(-1)


def critic_scores(critic: Critic, a: torch.Tensor, b: torch.Tensor, negatives: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of positives (a_i, b_i) and negatives (roll: (a_{i-1}, b_i); all: (a_j, b_i), j != i)."""
    if a.shape[0] < 2:
        raise ValueError("the JS estimator needs at least 2 view pairs in the (global) batch")
    t_pos = critic(a, b)
    if negatives == "roll":
        t_neg = critic(torch.roll(a, 1, dims=0), b)
    elif negatives == "all":
        n = a.shape[0]
        ai = a.unsqueeze(0).expand(n, n, -1)
        bj = b.unsqueeze(1).expand(n, n, -1)
        off = ~torch.eye(n, dtype=torch.bool, device=a.device)
        t_neg = critic(ai[off], bj[off])
    else:
        raise ValueError(f"unknown negatives {negatives!r}")
    return t_pos, t_neg


class MIBLoss(AuxLoss):
    """-I_JS(z1; z2) + beta * D_SKL, with beta = 1 for MIB and 0 for MVI; ``schedule`` (``(step, total) -> beta``)
    anneals beta over the reward model's steps (:func:`rlop.training.losses.beta_at`)."""

    def __init__(self, hidden_size: int, latent: int = 64, head_hidden: int = 1024, negatives: str = "roll", skl: str = "closed", beta: float = 1.0,
                 schedule=None):
        super().__init__()
        self.encoder = GaussianEncoder(hidden_size, head_hidden, latent)
        self.critic = Critic(latent, latent, head_hidden)
        self.negatives, self.skl, self.beta, self.schedule = negatives, skl, beta, schedule

    def set_progress(self, step: int, total: int) -> None:
        if self.schedule is not None:
            self.beta = self.schedule(step, total)

    def forward(self, h1, h2):
        mu1, s1 = self.encoder(h1)
        mu2, s2 = self.encoder(h2)
        mu1, s1, mu2, s2 = (gather_with_grad(t) for t in (mu1, s1, mu2, s2))
        z1 = mu1 + s1 * torch.randn_like(mu1)
        z2 = mu2 + s2 * torch.randn_like(mu2)
        mi = js_mi_bound(*critic_scores(self.critic, z1, z2, self.negatives))
        loss = -mi
        logs = {"mi_jsd": mi}
        if self.beta:
            skl = symmetrized_kl(mu1, s1, mu2, s2, method=self.skl, z1=z1, z2=z2)
            loss = loss + self.beta * skl
            logs["skl"] = skl
            logs["beta"] = torch.tensor(float(self.beta))
        return loss, logs


class InfoMaxLoss(AuxLoss):
    """Single-view InfoMax: -I_JS(h; z) with a critic on [h; z] (Federici's infomax.py)."""

    def __init__(self, hidden_size: int, latent: int = 64, head_hidden: int = 1024, negatives: str = "roll"):
        super().__init__()
        self.encoder = GaussianEncoder(hidden_size, head_hidden, latent)
        self.critic = Critic(hidden_size, latent, head_hidden)
        self.negatives = negatives

    def forward(self, h1, h2):
        mu, s = self.encoder(h1)
        h, mu, s = (gather_with_grad(t) for t in (h1.float(), mu, s))
        z = mu + s * torch.randn_like(mu)
        # the critic reads the representation as data: only the encoder, through z, learns from I(h; z)
        mi = js_mi_bound(*critic_scores(self.critic, h.detach(), z, self.negatives))
        return -mi, {"mi_jsd": mi}


class ContrastiveLoss(AuxLoss):
    """CL ablation: InfoNCE between the encodings of the two views (the other rows are negatives)."""

    def __init__(self, hidden_size: int, latent: int = 64, head_hidden: int = 1024, temperature: float = 0.1):
        super().__init__()
        self.proj = mlp(hidden_size, head_hidden, latent)
        self.temperature = temperature

    def forward(self, h1, h2):
        a, b = gather_with_grad(self.proj(h1.float())), gather_with_grad(self.proj(h2.float()))
        loss = info_nce(a, b, self.temperature)
        return loss, {"infonce": loss}


def build_rep_loss(cfg, hidden_size: int) -> AuxLoss:
    """The representation loss named by a :class:`UMLConfig` (or a reward config's ``uml``)."""
    cfg = getattr(cfg, "uml", cfg)
    kind = cfg.rep_loss
    if kind == "mib":
        schedule = lambda step, total: beta_at(step, total, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)  # noqa: E731
        return MIBLoss(hidden_size, cfg.latent_dim, cfg.head_hidden, cfg.negatives, cfg.skl, beta=cfg.beta_end, schedule=schedule)
    if kind == "mvi":
        return MIBLoss(hidden_size, cfg.latent_dim, cfg.head_hidden, cfg.negatives, cfg.skl, beta=0.0)
    if kind == "infomax":
        return InfoMaxLoss(hidden_size, cfg.latent_dim, cfg.head_hidden, cfg.negatives)
    if kind == "cl":
        return ContrastiveLoss(hidden_size, cfg.latent_dim, cfg.head_hidden, cfg.cl_temperature)
    raise ValueError(f"unknown rep_loss {kind!r}; choose from {', '.join(REP_LOSSES)}")


def run_uml_reward(cfg, out) -> dict[str, float]:
    """Step 4 of RLP-UML (and its ablations): Bradley-Terry on D plus ``rep_lambda`` times ``cfg.uml.rep_loss`` on view pairs."""
    from rlop.training.reward_trainer import run_reward

    return run_reward(cfg, out, aux=lambda hidden: build_rep_loss(cfg, hidden))


def step4(ctx) -> Path:
    """RLP-UML's step 4 in ``rlop run``: retrain the RM from SFT with the MIB loss on the PPO policy's samples."""
    ucfg = _config(ctx, "rm-uml")
    return ctx.run_stage("rm-uml", ("rm-uml", ucfg, ctx.samples_key, ctx.preferences_key), lambda d: run_uml_reward(ucfg, d), config=ucfg)


def _config(ctx, stage: str):
    from rlop.training.reward_trainer import RewardConfig

    return ctx.retrain(ctx.stage_cfg(RewardConfig, "reward", stage, recipe={"max_train_pairs": (None, 0)},
                                     wired={"model": str(ctx.sft), "train_file": ctx.preferences, "views_file": ctx.samples, "rep_loss": "mib"}))


def null_arm(ctx) -> Path:
    """RLP-UML's placebo: the same view batches with lambda = 0. Under matched retraining that run is
    the step-2 RM itself, weight for weight (the views then change no gradient of the RM, and D's
    split, initialisation and order are rm's), so rm is returned and nothing is trained; otherwise (or when
    rm is shared from another seed's run)
    ``rm-uml-null`` is trained with rm-uml's config and lambda = 0."""
    if getattr(ctx.run, "matched_retraining", False) and ctx.reward_model_matches:
        return ctx.reward_model
    cfg = _config(ctx, "rm-uml-null")
    cfg.uml = dataclasses.replace(cfg.uml, rep_lambda=0.0)
    return ctx.run_stage("rm-uml-null", ("rm-uml-null", cfg, ctx.samples_key, ctx.preferences_key), lambda d: run_uml_reward(cfg, d), config=cfg)


def diagnose(stage_dir) -> dict:
    """The MIB terms of the retrained RM's training (mi, skl), from its metrics."""
    from rlop.evaluation.diagnostics import aux_loss_terms

    terms = aux_loss_terms(stage_dir("rm-uml") / "metrics.jsonl")
    return {"uml_terms": terms} if terms else {}


def report_lines(diag: dict) -> list[str]:
    """The report's line on RLP-UML's loss terms (from :func:`diagnose`)."""
    terms = diag.get("uml_terms")
    if not terms:
        return []
    lines = ["", f"RLP-UML's loss terms over its {terms['steps']} steps (mean of the first tenth -> the last tenth; skl near 0 "
             "would mean a collapsed bottleneck): " + ", ".join(f"{k} {terms['first'][k]:.4g} -> {terms['last'][k]:.4g}" for k in terms["first"])]
    mi = terms["last"].get("mi_jsd")
    if mi is not None and mi < JS_CHANCE + 0.05:
        lines.append(f"**RLP-UML's critic ended at chance**: mi_jsd {mi:.3f} is within 0.05 of the bound of a critic that cannot tell "
                     f"positives from negatives ({JS_CHANCE:.3f} = -2 ln 2), so the MIB term acted as beta x SKL alone "
                     "(more steps, head_lr, negatives all, or beta_schedule exponential).")
    return lines
