"""Loss functions against hand-computed values."""

import math

import pytest
import torch

from rlop.training import losses as L


def test_bradley_terry_matches_formula():
    c, r = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    expected = (-math.log(1 / (1 + math.exp(-1))) - math.log(1 / (1 + math.exp(2)))) / 2
    assert L.bradley_terry_loss(c, r).item() == pytest.approx(expected, rel=1e-6)


def test_masked_mean_and_var_ignore_padding():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert L.masked_mean(x, m).item() == pytest.approx(2.0)
    # unbiased variance of [1, 2, 3] is 1
    assert L.masked_var(x, m).item() == pytest.approx(1.0)


def test_whiten_with_and_without_mean_shift():
    x = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    m = torch.tensor([[1, 1, 1, 0]])
    w = L.whiten(x, m, shift_mean=True)
    assert w[0, :3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-4)
    assert w[0, 3].item() == 0.0
    w2 = L.whiten(x, m, shift_mean=False)
    # (x - 2)/1 + 2 = x
    assert w2[0, :3].tolist() == pytest.approx([1.0, 2.0, 3.0], abs=1e-4)


def test_kl_estimators():
    lp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    assert L.per_token_kl(lp, ref, "clamped").tolist() == pytest.approx([0.5, 0.0])
    assert L.per_token_kl(lp, ref, "k1").tolist() == pytest.approx([0.5, -1.0])
    r = torch.tensor([-0.5, 1.0])
    assert L.per_token_kl(lp, ref, "k3").tolist() == pytest.approx((r.exp() - 1 - r).tolist())


def test_shaped_rewards_put_score_on_last_real_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    r = L.shaped_rewards(torch.tensor([1.0, 2.0]), kl, m, kl_coef=0.1)
    assert r[0].tolist() == pytest.approx([-0.01, -0.02 + 1.0, 0.0])
    assert r[1].tolist() == pytest.approx([-0.05, -0.05, -0.05 + 2.0])


def test_gae_hand_computed():
    rewards = torch.tensor([[0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.2, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # last position is padding
    adv, ret = L.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # t=1: delta = 1 - 0.2 = 0.8 (next is padding: no bootstrap); A1 = 0.8
    # t=0: delta = 0 + 0.9*0.2 - 0.5 = -0.32; A0 = -0.32 + 0.9*0.8*0.8 = 0.256
    assert adv[0].tolist() == pytest.approx([0.256, 0.8, 0.0], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([0.756, 1.0, 0.0], abs=1e-6)


def test_gae_gamma_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    adv, _ = L.gae(rewards, values, torch.ones(1, 3))
    assert adv[0].tolist() == pytest.approx([5.5, 4.5, 2.5])


def test_ppo_policy_loss_clipping():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))
    adv = torch.tensor([[1.0, 1.0, -1.0]])
    loss, st = L.ppo_policy_loss(new, old, adv, torch.ones(1, 3), cliprange=0.2)
    # token0: max(-1.5, -1.2) = -1.2 (clipped); token1: max(-0.5, -0.8) = -0.5; token2: max(1, 1) = 1
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.0) / 3, rel=1e-5)
    assert st["policy_clipfrac"].item() == pytest.approx(1 / 3)


def test_ppo_losses_ignore_padding():
    old = torch.zeros(1, 2)
    new = torch.tensor([[0.1, 50.0]])
    adv = torch.tensor([[1.0, 1000.0]])
    m = torch.tensor([[1.0, 0.0]])
    loss, _ = L.ppo_policy_loss(new, old, adv, m, 0.2)
    assert loss.item() == pytest.approx(-min(math.exp(0.1), 1.2), rel=1e-5)
    v, _ = L.ppo_value_loss(torch.tensor([[1.0, 99.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, -50.0]]), m, 0.2)
    # clipped value 0.2 -> (0.2-2)^2 = 3.24 > (1-2)^2 = 1
    assert v.item() == pytest.approx(0.5 * 3.24)


def test_symmetrized_kl_zero_for_identical_and_closed_form():
    mu, s = torch.randn(4, 3), torch.rand(4, 3) + 0.5
    assert L.symmetrized_kl(mu, s, mu, s).item() == pytest.approx(0.0, abs=1e-6)
    # 1-d: KL(N(0,1)||N(1,2^2)) = log 2 + (1 + 1)/8 - 1/2 ; KL(N(1,4)||N(0,1)) = -log 2 + (4 + 1)/2 - 1/2
    a = math.log(2) + 2 / 8 - 0.5
    b = -math.log(2) + 5 / 2 - 0.5
    got = L.symmetrized_kl(torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.tensor([[1.0]]), torch.tensor([[2.0]]))
    assert got.item() == pytest.approx((a + b) / 2, rel=1e-6)


def test_symmetrized_kl_monte_carlo_is_unbiased():
    torch.manual_seed(0)
    mu1, s1 = torch.zeros(20000, 2), torch.ones(20000, 2)
    mu2, s2 = torch.full((20000, 2), 0.5), torch.full((20000, 2), 1.5)
    z1, z2 = mu1 + s1 * torch.randn_like(mu1), mu2 + s2 * torch.randn_like(mu2)
    mc = L.symmetrized_kl(mu1, s1, mu2, s2, "mc", z1, z2)
    closed = L.symmetrized_kl(mu1, s1, mu2, s2)
    assert mc.item() == pytest.approx(closed.item(), rel=0.05)


def test_js_bound_and_infonce_values():
    # with zero critic scores the JS bound is -2 log 2
    assert L.js_mi_bound(torch.zeros(5), torch.zeros(5)).item() == pytest.approx(-2 * math.log(2))
    a = torch.eye(4)
    assert L.info_nce(a, a, temperature=0.1).item() < L.info_nce(a, a.roll(1, 0), temperature=0.1).item()
