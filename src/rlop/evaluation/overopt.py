"""The over-optimisation curve (Gao et al. 2023): gold and proxy against KL, per kept PPO policy.

PPO keeps its policy every ``--snapshot-steps`` steps (``snapshots/step-N``). This stage scores
the SFT model (step 0) and every kept policy on **one fixed set of held-out prompts** (never
PPO's or step 4's), with the **same sampling seeds** for every snapshot, ``samples`` responses
per prompt, and records per prompt:

* ``gold``: the sandbox's gold score of the samples (what the proxy stands in for);
* ``proxy``: the score of the reward model PPO optimised;
* ``kl``: the summed log-ratio log pi(y|x) - log pi_SFT(y|x) of each sample, both at the
  sampling temperature: an unbiased estimate of the per-response KL(pi || pi_SFT).

:func:`peak_summary` names gold's peak (step and KL) and the gold drop after it, with a
paired bootstrap interval over prompts. Choosing the peak on the same prompts that measure the
drop would flatter it, so the peak is chosen on the even-indexed prompts and the drop measured
on the odd-indexed ones (``drop_heldout``), beside the plain all-prompts figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import torch

from rlop.config import StageConfig, opt, require
from rlop.data.formatting import format_prompt
from rlop.data.io import DataError, load_instructions
from rlop.distributed import gather_objects, is_main_process, process_index, world_size
from rlop.evaluation.paired import paired_bootstrap
from rlop.models import precision as precision_
from rlop.models.generation import SamplingConfig, make_backend
from rlop.models.loading import DEFAULT_MODEL, load_causal_lm, load_tokenizer
from rlop.models.precision import autocast
from rlop.outputs import staged
from rlop.utils import derive_seed


@dataclass
class OveroptConfig(StageConfig):
    ppo_dir: str = opt("", "a PPO output folder run with --snapshot-steps: its snapshots/step-N policies are scored")
    reference: str = opt(DEFAULT_MODEL, "the SFT model: step 0 of the curve and the reference of the KL")
    reward: str = opt("", "the proxy: the reward model PPO optimised (a folder)")
    prompts_file: str = opt("sandbox:val", "the fixed held-out prompts, sandbox tasks for the gold score (never PPO's or step 4's)")
    max_prompts: int = opt(64, "prompts scored for every snapshot (0: all)", ge=0)
    samples: int = opt(4, "samples per prompt and snapshot", ge=1)
    max_new_tokens: int = opt(48, "new tokens per sample (PPO's response_len)", ge=1)
    temperature: float = opt(1.0, "sampling temperature, also that of the KL's log-probs (PPO's rollout temperature: the KL PPO paid)", gt=0)
    batch_size: int = opt(32, "sequences per generation batch", ge=1)
    seed: int = opt(0, "sample k of prompt i draws from seed (seed, i, k) for every snapshot")
    precision: precision_.Precision = opt("auto", precision_.HELP)

    PRESETS: ClassVar[dict] = {
        "tiny": dict(reference="tiny", max_prompts=8, samples=2, max_new_tokens=12),
        "cpu": dict(),
        "gpu": dict(max_prompts=200, batch_size=128),
    }


@torch.no_grad()
def score_policy(policy, reference, tokenizer, examples: Sequence, cfg: OveroptConfig, gold, proxy) -> dict[str, list[float]]:
    """Per prompt, the means over ``cfg.samples`` samples of gold, proxy, KL to ``reference`` and response tokens.

    ``policy`` and ``reference`` are loaded causal LMs. Sample k of prompt i uses the seed
    (cfg.seed, i, k) whatever the policy, so every snapshot is scored on the same draws of
    randomness. Generation batches are dealt out to the processes in turn and gathered."""
    device = next(policy.parameters()).device
    backend = make_backend(policy, tokenizer, precision=cfg.precision)
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=1.0, top_k=0, do_sample=True,
                              batch_size=cfg.batch_size)
    from rlop.training.actor_critic import response_logprobs

    prompts = [format_prompt(tokenizer, e.instruction, e.input) for e in examples]
    flat = [(i, k) for i in range(len(examples)) for k in range(cfg.samples)]
    starts = list(range(0, len(flat), cfg.batch_size))
    mine = {}
    for s in starts[process_index()::world_size()]:
        chunk = flat[s : s + cfg.batch_size]
        gen = backend.generate([prompts[i] for i, _ in chunk], sampling, [derive_seed(cfg.seed, i, k) for i, k in chunk])
        q, qm, r, rmask = (t.to(device) for t in (gen.query_ids, gen.query_mask, gen.response_ids, gen.response_mask))
        with autocast(device, cfg.precision):
            lp, _ = response_logprobs(policy, q, qm, r, rmask, cfg.temperature)
            ref, _ = response_logprobs(reference, q, qm, r, rmask, cfg.temperature)
        mask = rmask.float()
        kl = ((lp.float() - ref.float()) * mask).sum(1)
        mine[s] = (gen.texts, kl.tolist(), mask.sum(1).tolist())
    parts = {s: v for part in gather_objects(mine) for s, v in part.items()}
    texts = [t for s in starts for t in parts[s][0]]
    kls = [x for s in starts for x in parts[s][1]]
    lengths = [x for s in starts for x in parts[s][2]]
    rep = [examples[i] for i, _ in flat]
    g, p = gold(rep, texts), proxy(rep, texts)
    m = cfg.samples

    def per_prompt(values: Sequence[float]) -> list[float]:
        return [sum(values[i * m : (i + 1) * m]) / m for i in range(len(examples))]

    return {"gold": per_prompt(g), "proxy": per_prompt(p), "kl": per_prompt(kls), "response_tokens": per_prompt(lengths),
            "texts": texts[: 2 * m]}


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def peak_summary(points: list[dict], per_prompt: dict[int, dict[str, list[float]]], seed: int = 0) -> dict:
    """Gold's peak on the curve and what follows it.

    ``peak_step``/``peak_kl``: the snapshot with the highest mean gold over all prompts;
    ``drop``: its gold minus the last snapshot's, with a paired bootstrap 95% CI over prompts;
    ``drop_heldout``: the same with the peak chosen on the even-indexed prompts and the drop
    measured on the odd-indexed ones (no selection bias); ``proxy_change``: the proxy's change
    from the peak to the last snapshot (over-optimisation: gold falls while this is > 0)."""
    steps = [pt["step"] for pt in points]
    last = steps[-1]
    peak = max(steps, key=lambda s: _mean(per_prompt[s]["gold"]))
    n = len(per_prompt[last]["gold"])
    even, odd = list(range(0, n, 2)), list(range(1, n, 2))
    peak_even = max(steps, key=lambda s: _mean([per_prompt[s]["gold"][i] for i in even]))
    held = {"diff": None}
    if odd:
        held = paired_bootstrap([[per_prompt[peak_even]["gold"][i] for i in odd]], [[per_prompt[last]["gold"][i] for i in odd]], seed=seed)
        held["peak_step"] = peak_even
    by_step = {pt["step"]: pt for pt in points}
    return {"peak_step": peak, "peak_kl": by_step[peak]["kl"], "peak_gold": by_step[peak]["gold"], "last_step": last,
            "last_kl": by_step[last]["kl"], "last_gold": by_step[last]["gold"],
            "drop": paired_bootstrap([per_prompt[peak]["gold"]], [per_prompt[last]["gold"]], seed=seed),
            "drop_heldout": held, "proxy_change": by_step[last]["proxy"] - by_step[peak]["proxy"],
            "gold_fell_proxy_rose": by_step[last]["gold"] < by_step[peak]["gold"] and by_step[last]["proxy"] > by_step[peak]["proxy"]}


def run_overopt(cfg: OveroptConfig, out: str | Path) -> dict:
    """``out/curve.json``: the SFT model and every snapshot of ``cfg.ppo_dir`` scored on the fixed prompts."""
    from rlop.reward_functions import RewardModelReward
    from rlop.sandbox.gold import GoldAnnotator
    from rlop.training.ppo_checkpoint import snapshots

    require(cfg, "ppo_dir", "a PPO output folder run with --snapshot-steps")
    require(cfg, "reward", "the reward model PPO optimised")
    kept = snapshots(cfg.ppo_dir)
    if not kept:
        raise DataError(cfg.ppo_dir, None, None, "holds no snapshots/step-N policy: run PPO with --snapshot-steps K")
    examples = load_instructions(cfg.prompts_file, limit=cfg.max_prompts or None)
    missing = [n for n, e in enumerate(examples, 1) if "spec" not in e.meta]
    if missing:
        raise DataError(cfg.prompts_file, f"record {missing[0]}", "spec", "missing: the gold score needs sandbox tasks")
    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer(cfg.reference)
    reference = load_causal_lm(cfg.reference).to(device).eval()
    gold, proxy = GoldAnnotator(), RewardModelReward(cfg.reward, precision=cfg.precision)
    per_prompt, points = {}, []
    for step, path in [(0, None), *sorted(kept.items())]:
        policy = reference if path is None else load_causal_lm(str(path)).to(device).eval()
        scores = score_policy(policy, reference, tokenizer, examples, cfg, gold, proxy)
        per_prompt[step] = {k: v for k, v in scores.items() if k != "texts"}
        points.append({"step": step, **{k: _mean(v) for k, v in per_prompt[step].items()}, "example_texts": scores["texts"]})
        del policy
    curve = {"prompts": len(examples), "samples": cfg.samples, "temperature": cfg.temperature, "points": points,
             "per_prompt": {str(s): v for s, v in per_prompt.items()}, "summary": peak_summary(points, per_prompt, seed=cfg.seed)}
    with staged(out, "overopt", main=is_main_process()) as tmp:
        (tmp / "curve.json").write_text(json.dumps(curve, indent=1))
        if is_main_process():
            plot_curves({Path(cfg.ppo_dir).name: curve}, tmp / "overopt.png")
    return curve


def plot_curves(curves: dict[str, dict], path: str | Path) -> Path:
    """Gold and proxy against KL to SFT, one line per PPO run; gold's peak marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, c in curves.items():
        kl = [p["kl"] for p in c["points"]]
        line, = axes[0].plot(kl, [p["gold"] for p in c["points"]], marker="o", ms=3, label=name)
        axes[1].plot(kl, [p["proxy"] for p in c["points"]], marker="o", ms=3, color=line.get_color(), label=name)
        s = c["summary"]
        axes[0].scatter([s["peak_kl"]], [s["peak_gold"]], s=80, facecolors="none", edgecolors=line.get_color())
    axes[0].set_title("gold score (fixed held-out prompts)")
    axes[1].set_title("proxy reward (the RM PPO optimised)")
    for ax in axes:
        ax.set_xlabel("KL to SFT (nats per response)")
    axes[0].legend(fontsize=8)
    n = next(iter(curves.values()))
    fig.suptitle(f"Over-optimisation: {n['prompts']} prompts x {n['samples']} samples per kept policy; circle: gold's peak")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
