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


def _whiten_by_hand(xs, shift_mean):
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1) + 1e-8)
    return [(x - mean) / std + (0 if shift_mean else mean) for x in xs]


def test_ppo_composition_on_a_hand_computed_batch():
    """KL x mask into shaped rewards, whitening without mean shift, GAE, advantage whitening with it."""
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    logp = torch.tensor([[-1.0, -0.5], [-2.0, -9.0]])
    ref = torch.tensor([[-1.5, -0.5], [-1.0, 0.0]])
    values = torch.tensor([[0.2, 0.4], [0.3, 0.7]])
    out = L.ppo_advantages(torch.tensor([1.0, -2.0]), logp, ref, values, mask, kl_coef=0.1, kl_estimator="clamped", gamma=1.0, lam=0.9)
    # clamped KL: row 0 (0.5, 0); row 1 max(-1, 0) = 0 and its padding is masked
    assert out["kl"].tolist() == [[0.5, 0.0], [0.0, 0.0]]
    raw = [-0.1 * 0.5, 1.0, -2.0]  # -kl_coef*KL, plus the score at the last real token of each row
    r00, r01, r10 = _whiten_by_hand(raw, shift_mean=False)
    assert out["rewards"][mask.bool()].tolist() == pytest.approx([r00, r01, r10], rel=1e-5)
    assert out["rewards"][1, 1].item() == 0.0
    a01 = r01 - 0.4  # last token: no next value
    a00 = (r00 + 0.4 - 0.2) + 0.9 * a01
    a10 = r10 - 0.3  # the padding's value (0.7) does not leak in
    assert out["returns"][mask.bool()].tolist() == pytest.approx([a00 + 0.2, a01 + 0.4, a10 + 0.3], rel=1e-5)
    assert out["advantages"][mask.bool()].tolist() == pytest.approx(_whiten_by_hand([a00, a01, a10], shift_mean=True), rel=1e-4)
    # without reward whitening the shaped rewards are the raw ones
    plain = L.ppo_advantages(torch.tensor([1.0, -2.0]), logp, ref, values, mask, 0.1, "clamped", whiten_rewards=False, gamma=1.0, lam=0.9)
    assert plain["rewards"][mask.bool()].tolist() == pytest.approx(raw)


def test_ppo_loss_is_policy_plus_vf_coef_value_with_the_pessimistic_clip():
    mask = torch.ones(1, 2)
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[0.5, 1.3]]))  # ratio 0.5 (< 1 - eps) with A < 0, ratio 1.3 (> 1 + eps) with A > 0
    adv = torch.tensor([[-1.0, 2.0]])
    values, old_values, returns = torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), torch.tensor([[0.5, 1.0]])
    loss, parts = L.ppo_loss(logp, values, old, old_values, adv, returns, mask, cliprange=0.2, cliprange_value=0.2, vf_coef=0.1)
    # A < 0, ratio 0.5: max(0.5, 0.8) = 0.8, the clipped (pessimistic) term; A > 0, ratio 1.3: max(-2.6, -2.4) = -2.4
    pg = (0.8 - 2.4) / 2
    # value: token 0 max((1-0.5)^2, (0.2-0.5)^2) = 0.25; token 1 max((0-1)^2, (0-1)^2) = 1
    vf = 0.5 * (0.25 + 1.0) / 2
    assert parts["policy_loss"].item() == pytest.approx(pg, rel=1e-5) and parts["value_loss"].item() == pytest.approx(vf, rel=1e-5)
    assert loss.item() == pytest.approx(pg + 0.1 * vf, rel=1e-5)
    assert parts["policy_clipfrac"].item() == pytest.approx(1.0)


def test_adaptive_kl_controller_steps():
    from types import SimpleNamespace

    from rlop.training.actor_critic import KLController

    ctl = KLController(SimpleNamespace(kl_coef=0.1, adaptive_kl=True, target_kl=6.0, k_beta=0.1))
    ctl.update(9.0)  # error +0.5, clipped to +0.2
    assert ctl.value == pytest.approx(0.1 * 1.02)
    ctl.update(4.5)  # error -0.25, clipped to -0.2
    assert ctl.value == pytest.approx(0.1 * 1.02 * 0.98)
    ctl.update(6.6)  # error +0.1
    assert ctl.value == pytest.approx(0.1 * 1.02 * 0.98 * 1.01)
    fixed = KLController(SimpleNamespace(kl_coef=0.1, adaptive_kl=False, target_kl=6.0, k_beta=0.1))
    fixed.update(100.0)
    assert fixed.value == 0.1


def test_mib_total_loss_and_swapped_views():
    """-I_JS + beta * D_SKL exactly, with a trained-looking critic: swapping positives and negatives lowers the bound."""
    from rlop.rlp.uml import MIBLoss, critic_scores

    torch.manual_seed(0)
    loss_fn = MIBLoss(6, latent=3, head_hidden=16, negatives="all", beta=0.7)
    h1 = torch.randn(8, 6)
    h2 = h1 + 0.01 * torch.randn(8, 6)
    torch.manual_seed(1)
    loss, logs = loss_fn(h1, h2)
    mu1, s1 = loss_fn.encoder(h1)
    mu2, s2 = loss_fn.encoder(h2)
    torch.manual_seed(1)
    z1, z2 = mu1 + s1 * torch.randn_like(mu1), mu2 + s2 * torch.randn_like(mu2)
    pos, neg = critic_scores(loss_fn.critic, z1, z2, "all")
    mi = (-torch.nn.functional.softplus(-pos)).mean() - torch.nn.functional.softplus(neg).mean()
    skl = L.symmetrized_kl(mu1, s1, mu2, s2)
    assert logs["mi_jsd"].item() == pytest.approx(mi.item(), rel=1e-5) and logs["skl"].item() == pytest.approx(skl.item(), rel=1e-5)
    assert loss.item() == pytest.approx(-mi.item() + 0.7 * skl.item(), rel=1e-5)
    # the bound rewards high scores on positives and low on negatives: swapped, it is lower
    t_pos, t_neg = torch.tensor([2.0, 3.0]), torch.tensor([-2.0, -1.0, -3.0])
    assert L.js_mi_bound(t_pos, t_neg) > L.JS_CHANCE > L.js_mi_bound(t_neg, t_pos)
