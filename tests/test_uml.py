"""RLP-UML: the MIB loss and its ablations inside the reward trainer."""

import json

import pytest
import torch

from rlop.cli import main
from rlop.config import build_config
from rlop.rlp.uml import REP_LOSSES, Critic, MIBLoss, critic_scores
from rlop.training.losses import js_mi_bound
from rlop.training.reward_trainer import RewardConfig, RewardTrainer, load_reward_data


def test_js_estimate_higher_for_correlated_views():
    torch.manual_seed(0)

    def fitted_mi(correlated: bool) -> float:
        critic = Critic(4, 4, 64)
        opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
        for _ in range(300):
            z1 = torch.randn(128, 4)
            z2 = z1 + 0.1 * torch.randn(128, 4) if correlated else torch.randn(128, 4)
            mi = js_mi_bound(*critic_scores(critic, z1, z2, "roll"))
            opt.zero_grad()
            (-mi).backward()
            opt.step()
        z1 = torch.randn(512, 4)
        z2 = z1 + 0.1 * torch.randn(512, 4) if correlated else torch.randn(512, 4)
        with torch.no_grad():
            return js_mi_bound(*critic_scores(critic, z1, z2, "all")).item()

    assert fitted_mi(True) > fitted_mi(False) + 0.5


def test_all_negatives_count():
    critic = Critic(2, 2, 8)
    pos, neg = critic_scores(critic, torch.randn(5, 2), torch.randn(5, 2), "all")
    assert pos.shape == (5,) and neg.shape == (20,)


def test_mib_gradient_reaches_backbone(views_file):
    cfg = build_config(RewardConfig, "tiny", overrides={"views_file": str(views_file), "rep_loss": "mib", "rep_lambda": 1.0})
    _, _, views, _, _ = load_reward_data(cfg)
    trainer = RewardTrainer(cfg, aux=lambda h: MIBLoss(h, 8, 32))
    vb = trainer._view_batch(views[:4])
    from rlop.models.reward_model import last_hidden_state

    h = last_hidden_state(trainer.rm, vb["input_ids"], vb["attention_mask"]).float()
    loss, logs = trainer.aux(h[:4], h[4:])
    loss.backward()
    g = trainer.rm.model.layers[0].self_attn.q_proj.weight.grad
    assert g is not None and g.abs().sum() > 0
    assert {"mi_jsd", "skl"} <= set(logs)


@pytest.mark.parametrize("rep", [r for r in REP_LOSSES])
def test_reward_cli_with_each_rep_loss(tmp_path, views_file, rep):
    out = tmp_path / "rm"
    code = main(["reward", "--preset", "tiny", "--views", str(views_file), "--rep-loss", rep, "--lambda", "0.5",
                 "--max-train-pairs", "32", "--out", str(out)])
    assert code == 0
    rows = [json.loads(l) for l in open(out / "metrics.jsonl")]
    if rep != "none":
        assert "rep_loss" in rows[0]
        assert (out / "rep_heads.safetensors").exists()
    from rlop.models.loading import load_reward_model

    assert load_reward_model(str(out)).config.architectures[0].endswith("ForSequenceClassification")


def test_mib_loss_decreases(tmp_path, views_file):
    out = tmp_path / "rm"
    assert main(["reward", "--preset", "tiny", "--views", str(views_file), "--rep-loss", "mib", "--max-train-pairs", "64",
                 "--epochs", "4", "--view-batch-size", "8", "--out", str(out)]) == 0
    rows = [json.loads(l) for l in open(out / "metrics.jsonl") if "rep_loss" in l]
    first = sum(r["rep_loss"] for r in rows[:8]) / 8
    last = sum(r["rep_loss"] for r in rows[-8:]) / 8
    assert last < first, (first, last)
