"""MDPO's math against hand computations and Monte-Carlo references."""
import math

import pytest
import torch

from zoo.mdpo.objective import (
    categorical_kl,
    categorical_log_prob,
    gae,
    gaussian_kl,
    gaussian_log_prob,
    mdpo_off_policy_actor_loss,
    mdpo_on_policy_loss,
    policy_regularization,
    soft_q_target,
    step_size,
    tanh_gaussian_log_prob,
    temperature_loss,
    twin_q_loss,
)


def test_categorical_kl_by_hand_and_monte_carlo():
    p, q = torch.tensor([0.5, 0.25, 0.25]), torch.tensor([0.25, 0.25, 0.5])
    by_hand = 0.5 * math.log(2) + 0.25 * 0 + 0.25 * math.log(0.5)  # Σ p log p/q
    kl = categorical_kl(p.log() + 3.0, q.log() - 1.0)  # logits are defined up to a constant
    assert kl.item() == pytest.approx(by_hand, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    a = torch.multinomial(p, 400_000, replacement=True, generator=g)
    mc = (categorical_log_prob(p.log().expand(len(a), 3), a) - categorical_log_prob(q.log().expand(len(a), 3), a)).mean()
    assert mc.item() == pytest.approx(by_hand, abs=3e-3)
    assert categorical_kl(q.log(), q.log()).item() == pytest.approx(0.0, abs=1e-7)


def test_gaussian_kl_closed_form_equals_monte_carlo():
    mp, lsp = torch.tensor([0.3, -1.0]), torch.tensor([-0.5, 0.2])
    mq, lsq = torch.tensor([0.0, -0.5]), torch.tensor([0.1, -0.3])
    kl = gaussian_kl(mp, lsp, mq, lsq)
    # one dimension by hand: log σq/σp + (σp² + (μp − μq)²)/(2σq²) − ½
    sp, sq = math.exp(-0.5), math.exp(0.1)
    dim0 = math.log(sq / sp) + (sp**2 + 0.3**2) / (2 * sq**2) - 0.5
    sp, sq = math.exp(0.2), math.exp(-0.3)
    dim1 = math.log(sq / sp) + (sp**2 + 0.5**2) / (2 * sq**2) - 0.5
    assert kl.item() == pytest.approx(dim0 + dim1, rel=1e-6)
    g = torch.Generator().manual_seed(1)
    u = mp + lsp.exp() * torch.randn(400_000, 2, generator=g)
    mc = (gaussian_log_prob(u, mp, lsp) - gaussian_log_prob(u, mq, lsq)).mean()
    assert mc.item() == pytest.approx(kl.item(), abs=5e-3)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mp, lsp.exp()),
                                            torch.distributions.Normal(mq, lsq.exp())).sum()
    assert kl.item() == pytest.approx(ref.item(), rel=1e-6)


def test_tanh_gaussian_log_prob_and_its_kl():
    mean, log_std = torch.tensor([0.4, -1.2, 2.0]), torch.tensor([-0.3, 0.5, 0.0])
    u = torch.tensor([[0.1, -2.0, 5.0], [-0.7, 0.3, 1.5]])
    ref = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()])
    a = torch.tanh(u).double()
    expected = ref.log_prob(a.float()).sum(-1)
    # by hand for the moderate entries, where float32 tanh is invertible: log N(u) − Σ log(1 − tanh²u)
    hand = gaussian_log_prob(u, mean, log_std) - torch.log1p(-a.pow(2)).sum(-1).float()
    got = tanh_gaussian_log_prob(u, mean, log_std)
    torch.testing.assert_close(got, hand, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-4, atol=1e-4)
    # KL is invariant under tanh: the Monte-Carlo KL of the squashed policies equals the Gaussian KL
    mq, lsq = torch.tensor([0.0, -1.0, 1.5]), torch.tensor([0.0, 0.2, -0.2])
    g = torch.Generator().manual_seed(2)
    us = mean + log_std.exp() * torch.randn(200_000, 3, generator=g)
    mc = (tanh_gaussian_log_prob(us, mean, log_std) - tanh_gaussian_log_prob(us, mq, lsq)).mean()
    assert mc.item() == pytest.approx(gaussian_kl(mean, log_std, mq, lsq).item(), abs=1e-2)


def test_gae_four_steps_by_hand():
    # one environment, 4 steps; the episode terminates at step 1, a new one runs steps 2–3 and is cut
    # by the rollout's end (bootstrapped from V(s_4) = 0.5)
    r = torch.tensor([1.0, 2.0, 0.5, -1.0])[:, None]
    v = torch.tensor([0.2, 0.4, 0.1, 0.3])[:, None]
    nv = torch.tensor([0.4, 9.9, 0.3, 0.5])[:, None]  # 9.9: the terminal state's value must be ignored
    term = torch.tensor([0, 1, 0, 0])[:, None]
    ended = term.clone()
    gamma, lam = 0.9, 0.8
    d0 = 1.0 + 0.9 * 0.4 - 0.2
    d1 = 2.0 - 0.4
    d2 = 0.5 + 0.9 * 0.3 - 0.1
    d3 = -1.0 + 0.9 * 0.5 - 0.3
    a3 = d3
    a2 = d2 + 0.72 * a3
    a1 = d1
    a0 = d0 + 0.72 * a1
    adv, ret = gae(r, v, nv, term, ended, gamma, lam)
    torch.testing.assert_close(adv[:, 0], torch.tensor([a0, a1, a2, a3]))
    torch.testing.assert_close(ret, adv + v)
    # a time-limit truncation at step 1 bootstraps from the final state's value but stops the recursion
    ended_t = torch.tensor([0, 1, 0, 0])[:, None]
    adv_t, _ = gae(r, v, nv, torch.zeros_like(term), ended_t, gamma, lam)
    d1t = 2.0 + 0.9 * 9.9 - 0.4
    torch.testing.assert_close(adv_t[:, 0], torch.tensor([d0 + 0.72 * d1t, d1t, a2, a3]))


def test_step_size_schedule():
    K = 4
    assert [step_size(k, K) for k in range(K)] == [1.0, 0.75, 0.5, 0.25]
    assert 1 / step_size(K - 1, K) == K  # the KL weight ends at K
    with pytest.raises(ValueError, match="positive"):
        step_size(0, 0)


def test_on_policy_loss_by_hand():
    logp = torch.tensor([-0.5, -1.0, -2.0])
    old = torch.tensor([-0.7, -1.0, -1.5])
    adv = torch.tensor([1.0, -2.0, 0.5])
    kl = torch.tensor([0.1, 0.0, 0.2])
    ratio = [math.exp(0.2), 1.0, math.exp(-0.5)]
    surrogate = (ratio[0] * 1.0 + ratio[1] * -2.0 + ratio[2] * 0.5) / 3
    t_k = 0.25
    expected = -surrogate + (0.3 / 3) / t_k
    assert mdpo_on_policy_loss(logp, old, adv, kl, t_k).item() == pytest.approx(expected, rel=1e-6)
    # at θ = θ_k the gradient is the plain policy gradient: the KL term's gradient vanishes there
    theta = torch.tensor([0.3, -0.2, 0.1], requires_grad=True)
    logits = theta.expand(3, 3)
    a = torch.tensor([0, 1, 2])
    lp = categorical_log_prob(logits, a)
    loss = mdpo_on_policy_loss(lp, lp.detach(), adv, categorical_kl(logits, logits.detach()), 0.01)
    (g,) = torch.autograd.grad(loss, theta, retain_graph=True)
    (g_pg,) = torch.autograd.grad(-(lp * adv).mean(), theta)
    torch.testing.assert_close(g, g_pg)


def test_off_policy_losses_by_hand():
    q = torch.tensor([1.0, 3.0])
    old_logp = torch.tensor([-1.0, 0.5])
    kl = torch.tensor([0.2, 0.4])
    expected = ((0.1 * -1.0 - 1.0) + (0.1 * 0.5 - 3.0)) / 2 + 0.3 / 0.5
    assert mdpo_off_policy_actor_loss(q, old_logp, kl, 0.5, 0.1).item() == pytest.approx(expected)
    mean, log_std = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, -1.0]])
    assert policy_regularization(mean, log_std, 1e-3).item() == pytest.approx(1e-3 * ((1 + 4) / 2 + (0.25 + 1) / 2))
    y = soft_q_target(torch.tensor([1.0, 2.0]), torch.tensor([0, 1]), torch.tensor([4.0, 7.0]),
                      torch.tensor([5.0, 1.0]), torch.tensor([-2.0, -2.0]), 0.99, 0.1)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.99 * (4.0 + 0.2), 2.0]))
    q1, q2 = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    assert twin_q_loss(q1, q2, torch.tensor([1.0, 1.0])).item() == pytest.approx(0.5 * (0.5 + 5.0))
    log_alpha = torch.tensor(0.0, requires_grad=True)
    loss = temperature_loss(log_alpha, torch.tensor([-3.0, -1.0]), target_entropy=1.0)
    (g,) = torch.autograd.grad(loss, log_alpha)
    assert g.item() == pytest.approx(-((-3.0 + 1.0) + (-1.0 + 1.0)) / 2)  # entropy 2 > H̄ −1: λ falls


def test_off_policy_actor_loss_is_the_official_one_in_expectation():
    """The official actor loss is a one-sample estimate, c log π_θ(ã) + (λ − c) log π_θk(ã) − Q(ã) with
    c = 1/t_k (mdpo_off/mdpo.py L227); ours takes the KL in closed form. Same value in expectation and
    the same gradient with respect to θ, for tanh-squashed Gaussians and reparametrised ã."""
    g = torch.Generator().manual_seed(4)
    mean = torch.tensor([0.3, -0.6], requires_grad=True)
    log_std = torch.tensor([-0.4, 0.1], requires_grad=True)
    old_mean, old_log_std = torch.tensor([-0.5, 0.4]), torch.tensor([-0.9, 0.3])  # KL ≈ 2.6
    t_k, lam = 0.5, 0.7
    u = mean + log_std.exp() * torch.randn(400_000, 2, generator=g)
    a = torch.tanh(u)
    q = (a * torch.tensor([1.0, -2.0])).sum(-1)  # any differentiable critic
    logp, old_logp = tanh_gaussian_log_prob(u, mean, log_std), tanh_gaussian_log_prob(u, old_mean, old_log_std)
    official = (logp / t_k + (lam - 1 / t_k) * old_logp - q).mean()
    kl = gaussian_kl(mean, log_std, old_mean, old_log_std)
    ours = mdpo_off_policy_actor_loss(q, old_logp, kl, t_k, lam)
    assert ours.item() == pytest.approx(official.item(), abs=2e-2)
    # the entropy term is π_θk's log-density at ã: with π_θ's instead the loss moves by λ KL ≈ 1.8
    assert abs((lam * logp - q).mean().item() + kl.item() / t_k - official.item()) > 1.0
    g_official = torch.cat(torch.autograd.grad(official, (mean, log_std), retain_graph=True))
    g_ours = torch.cat(torch.autograd.grad(ours, (mean, log_std)))
    torch.testing.assert_close(g_ours, g_official, atol=3e-2, rtol=0)
