"""Departures from the method's references, fixed or made options with the faithful default."""

import json
from types import SimpleNamespace

import pytest
import torch

from rlop.config import build_config


def test_ppo_learning_rate_decays_over_the_planned_run_by_default():
    from rlop.training.ppo import PPOConfig, PPOTrainer

    cfg = PPOConfig(steps=40, rollout_batch_size=512)
    assert cfg.lr_horizon == "planned" and cfg.total_epochs == 10
    trainer = SimpleNamespace(cfg=cfg, prompts=[None] * 20_000)  # AlpacaFarm: 10 epochs of 20k prompts at 512 per step
    assert PPOTrainer.lr_horizon(trainer) == 391
    trainer.cfg = build_config(PPOConfig, overrides={"steps": 40, "lr_horizon": "steps"})
    assert PPOTrainer.lr_horizon(trainer) == 40
    assert build_config(PPOConfig, "cpu").lr_horizon == "steps"  # the measured cpu configuration, kept as a preset


def test_dropout_is_turned_off_for_ppo():
    from rlop.training.actor_critic import disable_dropout

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.3))
    model.config = SimpleNamespace(attention_dropout=0.1, hidden_size=2)
    disable_dropout(model)
    assert model[1].p == 0.0 and model.config.attention_dropout == 0.0 and model.config.hidden_size == 2


def test_infomax_critic_reads_a_detached_representation():
    from rlop.rlp.uml import InfoMaxLoss

    loss_fn = InfoMaxLoss(hidden_size=8, latent=4, head_hidden=8)
    seen = []
    forward = loss_fn.critic.forward
    loss_fn.critic.forward = lambda a, b: seen.append(a.requires_grad) or forward(a, b)
    h = torch.randn(6, 8, requires_grad=True)
    loss, _ = loss_fn(h, h.clone())
    loss.backward()
    assert seen and not any(seen) and h.grad is not None  # the backbone still learns, through the encoder


def test_reward_model_scores_at_the_length_it_was_trained_with(tmp_path):
    from rlop.models.reward_model import trained_max_length

    assert trained_max_length(tmp_path) == 512
    (tmp_path / "rlop_config.json").write_text(json.dumps({"stage": "reward", "max_length": 192}))
    assert trained_max_length(tmp_path) == 192


def test_best_of_n_in_rlop_run_samples_at_alpacafarm_temperature():
    from rlop.pipeline.run import RunConfig
    from rlop.training.best_of_n import BestOfNConfig

    assert RunConfig().bon_temperature == BestOfNConfig().temperature == pytest.approx(1.0)


def test_every_training_stage_has_the_same_tracking_option():
    from rlop.training import tracking
    from rlop.training.ppo import PPOConfig
    from rlop.training.reward_trainer import RewardConfig
    from rlop.training.sft import SFTConfig

    for cls in (SFTConfig, RewardConfig, PPOConfig):
        assert cls().report_to == "none"
        assert build_config(cls, overrides={"report_to": "tensorboard"}).report_to == "tensorboard"
    assert tracking.accelerator_kwargs("none", "out") == {} and tracking.trl_report_to("none") == []
    assert tracking.accelerator_kwargs("wandb", "out") == {"log_with": "wandb", "project_dir": "out/tracking"}
    assert tracking.trl_report_to("trackio") == ["trackio"]


def test_uml_loss_terms_are_summarised_first_and_last_tenth(tmp_path):
    import json

    from rlop.evaluation.diagnostics import aux_loss_terms

    rows = [{"step": i + 1, "bt_loss": 0.7, "rep_loss": 1.0 - i / 20, "mi_jsd": 0.1 * i, "skl": 2.0 if i < 10 else 0.0} for i in range(20)]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows + [{"step": 20, "eval_accuracy": 0.6}]) + "\n")
    t = aux_loss_terms(path)
    assert t["steps"] == 20 and set(t["first"]) == {"bt_loss", "rep_loss", "mi_jsd", "skl"}
    assert t["first"]["mi_jsd"] == pytest.approx(0.05) and t["last"]["mi_jsd"] == pytest.approx(1.85)
    assert t["first"]["skl"] == 2.0 and t["last"]["skl"] == 0.0  # a collapsing bottleneck shows
    assert aux_loss_terms(tmp_path / "none.jsonl") is None


def test_tensorboard_tracking_writes_event_files_for_sft_reward_and_ppo(tmp_path):
    """--report-to tensorboard really logs (tensorboardX is in the test extras): event files under OUT/tracking."""
    from rlop.cli import main

    sft, rm, ppo = tmp_path / "sft", tmp_path / "rm", tmp_path / "ppo"
    assert main(["sft", "--preset", "tiny", "--report-to", "tensorboard", "--out", str(sft)]) == 0
    assert main(["reward", "--preset", "tiny", "--model", str(sft), "--report-to", "tensorboard", "--out", str(rm)]) == 0
    assert main(["ppo", "--preset", "tiny", "--policy", str(sft), "--reward", str(rm), "--steps", "1", "--report-to", "tensorboard",
                 "--out", str(ppo)]) == 0
    for out in (sft, rm, ppo):
        events = list((out / "tracking").rglob("events.out.tfevents*"))
        assert events and all(e.stat().st_size > 0 for e in events), out
