"""Critic-free policy optimisation (``--advantage-estimator rloo|grpo|dr_grpo|reinforce_pp``) end to end
on the tiny preset: no value model anywhere, learning, groups of k samples, kill-and-resume."""

import json
import os
import subprocess
import sys

import pytest

from rlop.config import build_config
from rlop.reward_functions import CallableReward
from rlop.training import ppo as ppo_module
from rlop.training.ppo import PPOConfig, PPOTrainer
from tests import helpers_rewards

RLOO = ["--advantage-estimator", "rloo", "--samples-per-prompt", "4"]


def _metrics(path):
    return [json.loads(l) for l in open(path)]


@pytest.mark.parametrize("estimator, extra", [("rloo", {}), ("grpo", {"kl_penalty": "loss"}), ("dr_grpo", {}), ("reinforce_pp", {})])
def test_critic_free_run_has_no_value_model_and_learns(tiny_sft, tmp_path, monkeypatch, estimator, extra):
    def no_value_model(*a, **k):
        raise AssertionError("a critic-free run loaded a value model")

    monkeypatch.setattr(ppo_module, "load_reward_model", no_value_model)
    k, steps = (1, 16) if estimator == "reinforce_pp" else (4, 12)  # REINFORCE++ needs no group; its 4x the prompts per step learn slower here
    cfg = build_config(PPOConfig, "tiny", overrides={"policy": str(tiny_sft), "steps": steps, "save_steps": steps, "advantage_estimator": estimator,
                                                      "samples_per_prompt": k, **extra})
    out = tmp_path / "ppo"
    trainer = PPOTrainer(cfg, reward=CallableReward(helpers_rewards.letter_e), out=out)
    assert trainer.actor_critic.value is None
    rows = trainer.train()
    trainer.save_policy(out / "policy")
    rows = _metrics(out / "metrics.jsonl")
    assert "value_loss" not in rows[-1] and "policy_loss" in rows[-1]
    assert ("kl_loss" in rows[-1]) == (extra.get("kl_penalty") == "loss")
    first = sum(r["reward_mean"] for r in rows[:3]) / 3
    last = sum(r["reward_mean"] for r in rows[-3:]) / 3
    assert last > first + 0.5, (estimator, first, last)
    from safetensors import safe_open

    with safe_open(str(out / "checkpoints" / f"step-{steps}" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(key.startswith("policy.") for key in keys), [key for key in keys if not key.startswith("policy.")][:3]
    params = sum(p.numel() for p in trainer.model.parameters())
    assert params == sum(p.numel() for p in trainer.actor_critic.policy.parameters())
    assert not any("value" in p.name for p in (out / "policy").iterdir())


def test_the_k_samples_of_a_prompt_sit_side_by_side_with_their_own_seeds(tiny_sft, tmp_path):
    cfg = build_config(PPOConfig, "tiny", overrides={"policy": str(tiny_sft), "advantage_estimator": "rloo", "samples_per_prompt": 4})
    trainer = PPOTrainer(cfg, reward=CallableReward(helpers_rewards.letter_e), out=tmp_path / "ppo")
    rows, seeds = trainer._share(0)
    assert len(rows) == cfg.rollout_batch_size and len(set(rows)) == cfg.rollout_batch_size // 4
    assert all(len(set(rows[g : g + 4])) == 1 for g in range(0, len(rows), 4))
    assert len(set(seeds)) == len(seeds)  # k different samples, not k copies
    ro = trainer.rollout(0)
    texts = ro["texts"]
    assert sum(len(set(texts[g : g + 4])) > 1 for g in range(0, len(texts), 4)) >= len(texts) // 8


def _cmd(policy, out, *extra):
    return [sys.executable, "-m", "rlop.cli", "ppo", "--preset", "tiny", "--policy", str(policy), "--reward",
            "python:tests.helpers_rewards:letter_e", "--steps", "6", "--save-steps", "2", "--out", str(out), *RLOO, *extra]


def test_rloo_kill_and_resume_matches_uninterrupted(tiny_sft, tmp_path):
    from tests.conftest import kill_after_checkpoint, repo_env, resumed_step

    env = repo_env()
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_cmd(tiny_sft, full), check=True, env=env, capture_output=True, timeout=900)
    before = kill_after_checkpoint(_cmd(tiny_sft, killed), killed, env)
    r = subprocess.run(_cmd(tiny_sft, killed, "--resume"), check=True, env=env, capture_output=True, text=True, timeout=900)
    step = resumed_step(r.stdout)  # resumed, not restarted
    assert step >= 2 and (killed / "metrics.jsonl").read_text().splitlines()[:step] == before[:step]
    a, b = _metrics(full / "metrics.jsonl"), _metrics(killed / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b):
        for k in ("reward_mean", "kl", "policy_loss", "approx_kl"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-7), (ra["step"], k)
