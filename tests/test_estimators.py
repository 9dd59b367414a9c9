"""The advantage-estimator registry (``--advantage-estimator``) against hand-computed batches."""

import math

import pytest
import torch

from rlop.config import ConfigError, build_config
from rlop.training import losses as L
from rlop.training.ppo_config import PPOConfig

# two responses of lengths 3 and 2; log p - log p_ref on their tokens (the padding's 9.0 must not count)
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
DIFF = torch.tensor([[0.2, 0.0, 0.4], [0.2, 0.6, 9.0]])
REF = torch.zeros(2, 3)
SCORES = torch.tensor([1.0, 0.0])


def _close(t, expected, rtol=1e-6):
    torch.testing.assert_close(t, torch.tensor(expected, dtype=t.dtype), rtol=rtol, atol=1e-6)


def _estimate(name, **kw):
    args = dict(k=2, kl_estimator="k1", kl_penalty="reward", whiten_rewards=False)
    args.update(kw)
    return L.estimate_advantages(name, SCORES, DIFF.clone(), REF, None, MASK, 0.5, **args)


def test_rloo_is_each_reward_minus_the_mean_of_the_others():
    adv = L.rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 1.0, 5.0, 5.0]), 4)
    expected = [1 - 11 / 3, 2 - 10 / 3, 0.0, 4.0, 0 - 11 / 3, 1 - 10 / 3, 5 - 6 / 3, 5 - 6 / 3]
    assert adv.tolist() == pytest.approx(expected)
    assert L.rloo_advantages(torch.tensor([0.0, 1.0, 5.0, 5.0]), 2).tolist() == pytest.approx([-1.0, 1.0, 0.0, 0.0])


def test_grpo_z_scores_within_each_group_and_dr_grpo_drops_the_std():
    r = torch.tensor([1.0, 2.0, 3.0, 6.0, 4.0, 4.0, 4.0, 4.0])
    std = math.sqrt(14 / 3)  # unbiased: deviations -2, -1, 0, 3
    z = L.group_normalised_advantages(r, 4)
    assert z[:4].tolist() == pytest.approx([d / (std + 1e-4) for d in (-2, -1, 0, 3)], rel=1e-6)
    assert z[4:].tolist() == [0.0] * 4  # a group of equal rewards teaches nothing (and does not divide by 0)
    assert L.group_normalised_advantages(r, 4, scale=False).tolist() == pytest.approx([-2, -1, 0, 3, 0, 0, 0, 0])


def test_sequence_estimators_use_score_minus_the_summed_kl_and_broadcast_it_over_the_response():
    # sequence rewards 1 - 0.5 * 0.6 = 0.7 and 0 - 0.5 * 0.8 = -0.4: leave-one-out gives +-1.1
    out = _estimate("rloo")
    _close(out["kl"], [[0.2, 0.0, 0.4], [0.2, 0.6, 0.0]])
    _close(out["advantages"], [[1.1] * 3, [-1.1, -1.1, 0.0]])
    assert torch.equal(out["weights"], MASK) and not out["returns"].any()
    # the KL as a loss term: the advantages see the score alone
    _close(_estimate("rloo", kl_penalty="loss")["advantages"], [[1.0] * 3, [-1.0, -1.0, 0.0]])
    dr = _estimate("dr_grpo")  # group mean 0.15: deviations +-0.55, no std, every token weighted 1
    _close(dr["advantages"], [[0.55] * 3, [-0.55, -0.55, 0.0]])
    assert torch.equal(dr["weights"], MASK)
    grpo = _estimate("grpo")  # deviations +-0.55 over an unbiased std of 0.55 * sqrt(2)
    z = 0.55 / (0.55 * math.sqrt(2) + 1e-4)
    _close(grpo["advantages"], [[z] * 3, [-z, -z, 0.0]], rtol=1e-6)
    _close(grpo["weights"], [[1 / 3] * 3, [0.5, 0.5, 0.0]])  # each response counts once


def test_reinforce_pp_whitens_the_returns_to_go_of_the_shaped_rewards():
    out = _estimate("reinforce_pp", k=1)
    # shaped rewards [-0.1, 0, -0.2 + 1] and [-0.1, -0.3 + 0]; returns-to-go [0.7, 0.8, 0.8] and [-0.4, -0.3]
    ret = [0.7, 0.8, 0.8, -0.4, -0.3]
    mean = sum(ret) / 5
    std = math.sqrt(sum((x - mean) ** 2 for x in ret) / 4)
    w = [(x - mean) / std for x in ret]
    _close(out["advantages"], [w[:3], [w[3], w[4], 0.0]], rtol=1e-5)


def test_gae_entry_is_ppo_advantages_exactly():
    g = torch.Generator().manual_seed(0)
    logp, ref, values = (torch.randn(4, 5, generator=g) for _ in range(3))
    mask = torch.tensor([[1.0] * 5, [1.0] * 3 + [0.0] * 2, [1.0] * 4 + [0.0], [1.0] + [0.0] * 4])
    scores = torch.randn(4, generator=g)
    want = L.ppo_advantages(scores, logp, ref, values, mask, 0.1, "clamped", True, 1.0, 0.95)
    got = L.estimate_advantages("gae", scores, logp, ref, values, mask, 0.1, 1, "clamped", "reward", True, 1.0, 0.95)
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert torch.equal(got["weights"], mask)


def test_kl_loss_is_the_weighted_mean_of_k3():
    k3 = [math.exp(-d) - 1 + d for d in (0.2, 0.0, 0.4, 0.2, 0.6)]
    assert L.kl_loss(DIFF, REF, MASK).item() == pytest.approx(sum(k3) / 5, rel=1e-6)
    weights = torch.tensor([[1 / 3] * 3, [0.5, 0.5, 0.0]])
    assert L.kl_loss(DIFF, REF, weights).item() == pytest.approx((sum(k3[:3]) / 3 + sum(k3[3:]) / 2) / 2, rel=1e-6)


def test_registry_says_which_estimators_need_a_value_model():
    assert L.ESTIMATORS == {"gae": True, "rloo": False, "grpo": False, "dr_grpo": False, "reinforce_pp": False}
    with pytest.raises(ValueError, match="unknown advantage estimator"):
        _estimate("ppo2")


@pytest.mark.parametrize("overrides, message", [
    ({"advantage_estimator": "rloo"}, "needs --samples-per-prompt of 2 or more"),
    ({"advantage_estimator": "grpo", "samples_per_prompt": 1}, "needs --samples-per-prompt"),
    ({"advantage_estimator": "rloo", "samples_per_prompt": 3, "rollout_batch_size": 32}, "multiple of --samples-per-prompt"),
])
def test_group_estimators_check_their_group_size(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config(PPOConfig, "tiny", overrides=overrides)
    build_config(PPOConfig, "tiny", overrides={"advantage_estimator": "reinforce_pp"})  # no group needed
