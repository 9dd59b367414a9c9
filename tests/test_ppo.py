"""PPO end to end on the tiny preset: learning, kill-and-resume, NaN stop, best-of-n."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from rlop.config import build_config
from rlop.reward_functions import CallableReward, load_reward
from rlop.training.ppo import NonFiniteLoss, PPOConfig, PPOTrainer, run_ppo
from tests import helpers_rewards


def _metrics(path):
    return [json.loads(l) for l in open(path)]


def test_ppo_raises_reward_with_bounded_kl(tiny_sft, tmp_path):
    cfg = build_config(PPOConfig, "tiny", overrides={"policy": str(tiny_sft), "steps": 16, "save_steps": 100})
    run_ppo(cfg, tmp_path / "ppo", reward=CallableReward(helpers_rewards.letter_e))
    rows = _metrics(tmp_path / "ppo" / "metrics.jsonl")
    first = sum(r["reward_mean"] for r in rows[:3]) / 3
    last = sum(r["reward_mean"] for r in rows[-3:]) / 3
    assert last > first + 0.5, (first, last)
    assert max(r["kl"] for r in rows) < 60
    for key in ("reward_std", "entropy", "response_length", "policy_clipfrac", "value_clipfrac", "value_loss", "approx_kl", "lr"):
        assert key in rows[-1]
    for r in rows:  # each step's time split into its phases (benchmarks/ppo_speed.py prints them)
        phases = [r["seconds_generate"], r["seconds_score"], r["seconds_optimise"]]
        assert min(phases) > 0 and sum(phases) <= r["seconds"], r
    assert (tmp_path / "ppo" / "policy" / "model.safetensors").exists()


def test_nan_loss_stops_and_keeps_last_checkpoint(tiny_sft, tmp_path):
    helpers_rewards.CALLS["n"] = 0
    cfg = build_config(PPOConfig, "tiny", overrides={"policy": str(tiny_sft), "steps": 6, "save_steps": 1})
    trainer = PPOTrainer(cfg, reward=CallableReward(helpers_rewards.nan_after_two_steps), out=tmp_path / "ppo")
    with pytest.raises(NonFiniteLoss, match="non-finite loss.*step-2"):
        trainer.train()
    assert (tmp_path / "ppo" / "checkpoints" / "latest").read_text() == "2"
    assert (tmp_path / "ppo" / "checkpoints" / "step-2" / "trainer.json").exists()


def _ppo_cmd(policy, out, *extra):
    return [sys.executable, "-m", "rlop.cli", "ppo", "--preset", "tiny", "--policy", str(policy), "--reward",
            "python:tests.helpers_rewards:letter_e", "--steps", "6", "--save-steps", "2", "--out", str(out), *extra]


def test_kill_and_resume_matches_uninterrupted(tiny_sft, tmp_path):
    from tests.conftest import kill_after_checkpoint, repo_env, resumed_step

    env = repo_env()
    full = tmp_path / "full"
    subprocess.run(_ppo_cmd(tiny_sft, full), check=True, env=env, capture_output=True, timeout=900)
    killed = tmp_path / "killed"
    before = kill_after_checkpoint(_ppo_cmd(tiny_sft, killed), killed, env)
    r = subprocess.run(_ppo_cmd(tiny_sft, killed, "--resume"), check=True, env=env, capture_output=True, text=True, timeout=900)
    step = resumed_step(r.stdout)  # resumed, not restarted (the newest complete checkpoint, 2 or later)
    assert step >= 2 and (killed / "metrics.jsonl").read_text().splitlines()[:step] == before[:step]  # kept byte for byte
    a, b = _metrics(full / "metrics.jsonl"), _metrics(killed / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b):
        for k in ("reward_mean", "kl", "policy_loss", "value_loss"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-7), (ra["step"], k)


def test_best_of_n_picks_highest_reward(tiny_sft):
    from rlop.training.best_of_n import BestOfNConfig, best_of_n

    cfg = build_config(BestOfNConfig, "tiny", overrides={"policy": str(tiny_sft), "n": 4, "max_prompts": 3})
    reward = load_reward("python:tests.helpers_rewards:letter_e")
    rows = best_of_n(cfg, reward)
    assert len(rows) == 3
    from rlop.models.sampling import sample_responses
    from rlop.models.generation import SamplingConfig
    from rlop.data import load_instructions

    ex = load_instructions("sandbox:eval", limit=3)
    sets = sample_responses(str(tiny_sft), ex, 4, SamplingConfig(12, 1.0, 0.9, 0, True, 32), cfg.seed)
    for row, s in zip(rows, sets):
        assert row["reward"] == pytest.approx(max(reward([s.example] * 4, s.responses)))


@pytest.mark.parametrize("value_head", ["zero", "reward"])
def test_value_model_head_zero_or_from_the_reward_model(tiny_sft, tiny_tok, tmp_path, value_head):
    import torch

    from rlop.models.loading import load_reward_model, score_head

    rm = load_reward_model("tiny")
    with torch.no_grad():
        score_head(rm).weight.normal_()
    rm.save_pretrained(tmp_path / "rm")
    tiny_tok.save_pretrained(tmp_path / "rm")
    cfg = build_config(PPOConfig, "tiny", overrides={"policy": str(tiny_sft), "reward": str(tmp_path / "rm"), "value_head": value_head})
    tr = PPOTrainer(cfg, out=tmp_path / "ppo")
    head = score_head(tr.actor_critic.value).weight
    expected = score_head(rm).weight if value_head == "reward" else torch.zeros_like(head)
    assert torch.equal(head.detach().cpu(), expected.detach().cpu())


def test_memory_options_train_and_save(tiny_sft, tmp_path):
    """LoRA on policy and value, gradient checkpointing, bf16 frozen reference, a chosen attention kernel."""
    from transformers import AutoModelForCausalLM

    cfg = build_config(PPOConfig, "tiny", overrides={"policy": str(tiny_sft), "steps": 2, "save_steps": 1, "lora_r": 4, "value_lora_r": 4,
                                                     "gradient_checkpointing": True, "frozen_dtype": "bf16", "attn_implementation": "eager"})
    trainer = PPOTrainer(cfg, reward=CallableReward(helpers_rewards.letter_e), out=tmp_path / "ppo")
    ac = trainer.actor_critic
    trainable = {n for n, p in ac.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or ".score." in n for n in trainable), sorted(trainable)[:5]
    assert any(n.startswith("value.") and "lora_" in n for n in trainable) and any(n.startswith("value.") and ".score." in n for n in trainable)
    assert ac.policy.is_gradient_checkpointing and ac.policy.config._attn_implementation == "eager"
    head_before = {n: p.detach().clone() for n, p in ac.named_parameters() if p.requires_grad}
    rows = []
    trainer.train(on_step=rows.append)
    assert len(rows) == 2 and all(math.isfinite(r["value_loss"]) for r in rows)
    assert any(not torch.equal(p, dict(ac.named_parameters())[n]) for n, p in head_before.items())
    trainer.save_policy(tmp_path / "ppo" / "policy")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "ppo" / "policy")  # LoRA merged: a plain transformers model
    assert not any("lora_" in k for k in merged.state_dict())


def test_sampler_logprobs_equal_the_recomputed_ones_with_one_forward_pass_fewer(tiny_sft, tmp_path, monkeypatch, precision):
    """--rollout-logprobs sampler keeps the sampling step's log-probs and entropies (TRL's way):
    the same rollout, the same numbers up to rounding, and no policy pass in the scoring."""
    import rlop.training.ppo as ppo_module
    import rlop.training.actor_critic as actor_critic_module

    precision("fp32")
    passes = {"n": 0}
    original = actor_critic_module.response_logprobs

    def counted(*a, **kw):
        passes["n"] += 1
        return original(*a, **kw)

    monkeypatch.setattr(actor_critic_module, "response_logprobs", counted)
    monkeypatch.setattr(ppo_module, "response_logprobs", counted)
    reward = CallableReward(helpers_rewards.letter_e)
    runs = {}
    for mode in ("recompute", "sampler"):
        cfg = build_config(PPOConfig, "tiny", overrides={"policy": str(tiny_sft), "steps": 1, "rollout_logprobs": mode})
        passes["n"] = 0
        runs[mode] = PPOTrainer(cfg, reward=reward, out=tmp_path / mode).rollout(0), passes["n"]
    (a, passes_a), (b, passes_b) = runs["recompute"], runs["sampler"]
    assert a["texts"] == b["texts"]
    mask = a["batch"].mask.bool()
    assert torch.equal(a["batch"].response_ids, b["batch"].response_ids)
    assert torch.allclose(a["batch"].logprobs[mask], b["batch"].logprobs[mask], atol=1e-4)
    assert torch.allclose(a["batch"].advantages[mask], b["batch"].advantages[mask], atol=1e-3)
    assert float(b["stats"]["entropy"]) == pytest.approx(float(a["stats"]["entropy"]), rel=1e-4)
    assert passes_b == passes_a / 2 > 0  # the reference pass only, not the policy's
