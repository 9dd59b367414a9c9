"""Off-Policy Corrected Reward Modeling (OCRM; Ackermann, Ishida, Sugiyama, COLM 2025) as a step-4 variant.

No new samples and no clustering: the preference pairs D that the step-2 RM was trained on are
re-weighted by how likely the step-3 PPO policy is to produce them relative to the SFT policy
that produced them, and the RM is retrained on D with the weighted Bradley-Terry loss
(``reward: pair_weights_file``). Per pair (x, y_w, y_l):

    log r(y|x) = log pi_PPO(y|x) - log pi_SFT(y|x)            (summed response-token log-probs)
    relative (alpha > 0): log pi_PPO(y|x) - log(alpha pi_PPO(y|x) + (1 - alpha) pi_SFT(y|x))
    w = exp(mult * (log r(y_w|x) + log r(y_l|x)))             normalised by the mean weight over D

Reference defaults (their ``ocrm/reward.py`` and scripts): ``mult`` 0.001 in the scripts on
summed token log-probs (0.01 in the code's default), ``alpha`` (relative_density_factor) 0.1,
no truncation, and here the dataset normalisation the issue names. The reference computes the
relative ratio as ``log(alpha e^a + (1 - alpha) e^b + 1e-36)``; rlop uses ``logaddexp``, which is
the same where it does not underflow (summed log-probs below about -83 underflow in float32
there). Responses are scored with an EOS token appended, as the policy would end them.

The null arm (``--null-arm``) trains ``rm-ocrm-null`` on the same weights shuffled among the
pairs: the same weight distribution and effective sample size, with the link to the policy cut.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Sequence

import torch

from rlop.config import StageConfig, opt, require
from rlop.data.formatting import format_prompt
from rlop.data.io import load_preferences
from rlop.distributed import is_main_process
from rlop.models import precision as precision_
from rlop.models.loading import DEFAULT_MODEL, load_causal_lm, load_tokenizer
from rlop.models.precision import autocast
from rlop.outputs import staged
from rlop.utils import derive_seed, write_jsonl


@dataclass
class OCRMConfig(StageConfig):
    policy: str = opt("", "the step-3 PPO policy (the numerator of the density ratio)")
    reference: str = opt(DEFAULT_MODEL, "the SFT policy that produced D's responses (the denominator)")
    preferences: str = opt("sandbox:preference", "preferences D whose pairs are weighted (as reward: train_file)")
    log_ratio_mult: float = opt(0.001, "multiplier on the summed log density ratio (the reference scripts: 0.001; 0: all weights 1)", ge=0)
    relative_alpha: float = opt(0.1, "relative density ratio: alpha of the PPO policy in the mixture denominator (reference: 0.1; 0: plain ratio)",
                                ge=0, le=0.999)
    truncate_tokens: int = opt(0, "sum the log-probs of only the first this many response tokens (0: all; reference: -1, none)", ge=0)
    normalize: Literal["dataset", "none"] = opt("dataset", "divide the weights by their mean over D | none")
    max_response_tokens: int = opt(512, "response tokens scored (longer responses are cut)", ge=1)
    batch_size: int = opt(8, "pairs per forward pass", ge=1)
    precision: precision_.Precision = opt("auto", precision_.HELP)

    PRESETS: ClassVar[dict] = {"tiny": dict(reference="tiny", max_response_tokens=32), "cpu": dict(max_response_tokens=192), "gpu": dict(batch_size=32)}


def log_ratios(logp_policy: torch.Tensor, logp_ref: torch.Tensor, alpha: float) -> torch.Tensor:
    """log pi(y|x) - log pi_ref(y|x), or with alpha > 0 the relative ratio log pi - log(alpha pi + (1 - alpha) pi_ref)."""
    if alpha <= 0:
        return logp_policy - logp_ref
    mix = torch.logaddexp(logp_policy + math.log(alpha), logp_ref + math.log(1 - alpha))
    return logp_policy - mix


def pair_weights(chosen_policy, chosen_ref, rejected_policy, rejected_ref, mult: float, alpha: float = 0.0, normalize: str = "dataset") -> torch.Tensor:
    """Per pair, exp(mult * (log ratio of the chosen + log ratio of the rejected response)), over D's mean if ``normalize``."""
    t = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
    log_w = mult * (log_ratios(t(chosen_policy), t(chosen_ref), alpha) + log_ratios(t(rejected_policy), t(rejected_ref), alpha))
    w = torch.exp(log_w - log_w.max()) if normalize == "dataset" else torch.exp(log_w)  # the shift cancels in the normalisation
    return w / w.mean() if normalize == "dataset" else w


def effective_sample_size(w: Sequence[float]) -> float:
    """(sum w)^2 / sum w^2: how many equally weighted pairs the weights are worth."""
    return sum(w) ** 2 / max(sum(x * x for x in w), 1e-300)


@torch.no_grad()
def response_logprob_sums(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], cfg: OCRMConfig) -> list[float]:
    """Summed log-probs of each response (EOS appended) after its prompt, at temperature 1."""
    from rlop.training.actor_critic import response_logprobs

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[float] = []
    for s in range(0, len(prompts), cfg.batch_size):
        q = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[s : s + cfg.batch_size]]
        r = [tokenizer(x, add_special_tokens=False)["input_ids"][: cfg.max_response_tokens - 1] + [tokenizer.eos_token_id]
             for x in responses[s : s + cfg.batch_size]]
        Q, R = max(map(len, q)), max(map(len, r))
        qi = torch.tensor([[pad] * (Q - len(a)) + a for a in q], device=device)
        qm = torch.tensor([[0] * (Q - len(a)) + [1] * len(a) for a in q], device=device)
        ri = torch.tensor([b + [pad] * (R - len(b)) for b in r], device=device)
        rm = torch.tensor([[1] * len(b) + [0] * (R - len(b)) for b in r], device=device)
        if cfg.truncate_tokens:
            rm[:, cfg.truncate_tokens:] = 0
        with autocast(device, cfg.precision):
            lp, _ = response_logprobs(model, qi, qm, ri, rm, 1.0)
        out.extend((lp.float() * rm).sum(1).tolist())
    return out


def run_ocrm(cfg: OCRMConfig, out: str | Path) -> dict:
    """``out/weights.jsonl`` (each pair of D with its weight, in reward: pair_weights_file's format), ``weights_stats.json``
    (effective sample size, quantiles) and ``weights_hist.png``."""
    require(cfg, "policy", "the step-3 PPO policy")
    pairs = load_preferences(cfg.preferences)
    tokenizer = load_tokenizer(cfg.reference)
    prompts = [format_prompt(tokenizer, p.instruction, p.input) for p in pairs]
    sums = {}
    for role, path in (("policy", cfg.policy), ("ref", cfg.reference)):
        model = load_causal_lm(path).eval()
        model.to(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
        sums[role] = (response_logprob_sums(model, tokenizer, prompts, [p.chosen for p in pairs], cfg),
                      response_logprob_sums(model, tokenizer, prompts, [p.rejected for p in pairs], cfg))
        del model
    w = pair_weights(sums["policy"][0], sums["ref"][0], sums["policy"][1], sums["ref"][1], cfg.log_ratio_mult, cfg.relative_alpha, cfg.normalize).tolist()
    rows = [{"instruction": p.instruction, "input": p.input, "chosen": p.chosen, "rejected": p.rejected, "weight": x,
             "logp_chosen_policy": sums["policy"][0][i], "logp_chosen_ref": sums["ref"][0][i],
             "logp_rejected_policy": sums["policy"][1][i], "logp_rejected_ref": sums["ref"][1][i]} for i, (p, x) in enumerate(zip(pairs, w))]
    qs = sorted(w)
    stats = {"pairs": len(w), "effective_sample_size": effective_sample_size(w), "mean": sum(w) / len(w), "min": qs[0], "max": qs[-1],
             "quantiles": {str(q): qs[min(len(qs) - 1, int(q * len(qs)))] for q in (0.05, 0.25, 0.5, 0.75, 0.95)}}
    with staged(out, "ocrm", main=is_main_process()) as tmp:
        write_jsonl(tmp / "weights.jsonl", rows)
        (tmp / "weights_stats.json").write_text(json.dumps(stats, indent=2))
        if is_main_process():
            _histogram(w, stats, tmp / "weights_hist.png")
    return stats


def _histogram(w: list[float], stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(w, bins=30, color="#8172b2")
    ax.set_xlabel("importance weight of a pair of D")
    ax.set_title(f"OCRM weights: ESS {stats['effective_sample_size']:.0f} of {stats['pairs']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def shuffled_weights(rows: list[dict], seed: int) -> list[dict]:
    """The null arm's weights: the same values assigned to the pairs in a seeded random order."""
    w = [r["weight"] for r in rows]
    random.Random(derive_seed(seed, 19)).shuffle(w)
    return [{**r, "weight": x} for r, x in zip(rows, w)]


# ------------------------------------------------------------------ rlop run


def _rm_config(ctx, stage: str, weights: Path):
    from rlop.training.reward_trainer import RewardConfig

    return ctx.retrain(ctx.stage_cfg(RewardConfig, "reward", stage, recipe={"max_train_pairs": (None, 0)},
                                     wired={"model": str(ctx.sft), "train_file": ctx.preferences, "pair_weights_file": str(weights)}))


def step4(ctx) -> Path:
    """OCRM's step 4 in ``rlop run``: D's importance weights from the step-3 policy and SFT, then the RM retrained on weighted D."""
    from rlop.training.reward_trainer import run_reward

    ocfg = ctx.stage_cfg(OCRMConfig, "ocrm", "ocrm", wired={"policy": str(ctx.policy), "reference": str(ctx.sft), "preferences": ctx.preferences})
    d = ctx.run_stage("ocrm", ("ocrm", ocfg, ctx.policy_key, ctx.preferences_key), lambda folder: run_ocrm(ocfg, folder), config=ocfg)
    rcfg = _rm_config(ctx, "rm-ocrm", d / "weights.jsonl")
    return ctx.run_stage("rm-ocrm", ("rm-ocrm", rcfg, _key_of(d), ctx.preferences_key), lambda folder: run_reward(rcfg, folder), config=rcfg)


def null_arm(ctx) -> Path:
    """The placebo: OCRM's weights shuffled among the pairs (``ocrm-null``), the RM retrained on them (``rm-ocrm-null``)."""
    from rlop.training.reward_trainer import run_reward
    from rlop.utils import read_jsonl_plain

    src = ctx.stage_dir("ocrm")
    seed = ctx.run.seed
    null = ctx.run_stage("ocrm-null", ("ocrm-null", _key_of(src), seed),
                         lambda folder: write_jsonl(folder / "weights.jsonl", shuffled_weights(read_jsonl_plain(src / "weights.jsonl"), seed)))
    rcfg = _rm_config(ctx, "rm-ocrm-null", null / "weights.jsonl")
    return ctx.run_stage("rm-ocrm-null", ("rm-ocrm-null", rcfg, _key_of(null), ctx.preferences_key), lambda folder: run_reward(rcfg, folder), config=rcfg)


def _key_of(folder: Path) -> str:
    return json.loads((folder / "stage.json").read_text())["key"]


def diagnose(stage_dir) -> dict:
    """The weights' effective sample size and spread."""
    f = stage_dir("ocrm") / "weights_stats.json"
    return {"ocrm_weights": json.loads(f.read_text())} if f.exists() else {}


def report_lines(diag: dict) -> list[str]:
    st = diag.get("ocrm_weights")
    if not st:
        return []
    q = st["quantiles"]
    return ["", f"OCRM weighted the {st['pairs']} pairs of D with an effective sample size of {st['effective_sample_size']:.0f} "
            f"(weights {st['min']:.3g} to {st['max']:.3g}; median {q['0.5']:.3g}, 5%-95% {q['0.05']:.3g}-{q['0.95']:.3g})."]
