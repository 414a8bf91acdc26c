"""Nash-MD's equations against hand computations and brute force."""
import math

import pytest
import torch
import torch.nn.functional as F

from zoo.nash_md import objective as O
from zoo.nash_md.data import preference_game, reference_policy

RPS_LIKE = preference_game("rps_like")


@pytest.fixture(autouse=True)
def float64():
    """The tabular math in float64 (the hand computations are exact to 1e-15); restored after each test."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_one_nash_md_update_on_a_3x3_game_equals_the_hand_computation():
    P = RPS_LIKE
    pi, mu = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])
    eta, tau = 0.5, 0.4  # β = ητ = 0.2
    # π^μ(y) ∝ π(y)^0.8 μ(y)^0.2, written out
    w = [0.5**0.8 * 0.2**0.2, 0.3**0.8 * 0.3**0.2, 0.2**0.8 * 0.5**0.2]
    mix = [v / sum(w) for v in w]
    # P(y ≻ π^μ) = Σ_y' P[y, y'] π^μ(y'), then π_{t+1} ∝ π^μ(y) exp(η P(y ≻ π^μ))
    pref = [sum(float(P[i, j]) * mix[j] for j in range(3)) for i in range(3)]
    unnorm = [mix[i] * math.exp(eta * pref[i]) for i in range(3)]
    expected = torch.tensor([u / sum(unnorm) for u in unnorm])
    torch.testing.assert_close(O.geometric_mixture(pi, mu, 0.2), torch.tensor(mix))
    torch.testing.assert_close(O.nash_md_update(pi, mu, P, eta, tau), expected, rtol=0, atol=1e-15)
    # against π_t instead: the exponent uses P(y ≻ π_t)
    pref_t = [sum(float(P[i, j]) * float(pi[j]) for j in range(3)) for i in range(3)]
    unnorm_t = [mix[i] * math.exp(eta * pref_t[i]) for i in range(3)]
    torch.testing.assert_close(O.nash_md_update(pi, mu, P, eta, tau, against="current"),
                               torch.tensor([u / sum(unnorm_t) for u in unnorm_t]), rtol=0, atol=1e-15)
    # β = 0 is self-play mirror descent
    torch.testing.assert_close(O.nash_md_update(pi, mu, P, eta, 0.0), O.self_play_update(pi, P, eta))


@pytest.mark.parametrize("game, tau", [("rps", 0.05), ("rps_like", 0.1), ("random", 0.01), ("random", 1.0)])
def test_the_solver_reaches_the_regularised_nash_fixed_point(game, tau):
    P = preference_game(game, 10, 3)
    mu = reference_policy("skewed", P.shape[0])
    star = O.regularised_nash(P, mu, tau)
    torch.testing.assert_close(star, torch.softmax(mu.log() + P @ star / tau, -1), rtol=0, atol=1e-12)
    assert abs(float(O.exploitability(star, P, mu, tau))) < 1e-9
    # brute force: no policy on a grid of the simplex beats π*_τ under P_τ, and π*_τ beats every one
    if P.shape[0] == 3:
        grid = [torch.tensor([a, b, 1 - a - b]) for a in torch.linspace(0.01, 0.98, 40) for b in torch.linspace(0.01, 0.98, 40)
                if a + b < 0.99]
        values = torch.stack([O.regularised_preference(q, star, P, mu, tau) for q in grid])
        assert values.max() <= 0.5 + 1e-12


def test_exploitability_is_the_best_response_gap_in_closed_form():
    P = preference_game("random", 6, 0)
    mu = reference_policy("skewed", 6)
    pi = torch.softmax(torch.randn(6, generator=torch.Generator().manual_seed(1)), -1)
    tau = 0.3
    # the KL-regularised best response to π is μ exp(P(y ≻ π)/τ)/Z; its P_τ(· ≻ π) − ½ is the gap
    br = torch.softmax(mu.log() + P @ pi / tau, -1)
    torch.testing.assert_close(O.exploitability(pi, P, mu, tau), O.regularised_preference(br, pi, P, mu, tau) - 0.5)
    # and no other policy does better
    for seed in range(20):
        q = torch.softmax(3 * torch.randn(6, generator=torch.Generator().manual_seed(seed)), -1)
        assert O.regularised_preference(q, pi, P, mu, tau) - 0.5 <= O.exploitability(pi, P, mu, tau) + 1e-12
    # τ = 0: the best pure response
    assert float(O.exploitability(pi, P, mu, 0.0)) == pytest.approx(float((P @ pi).max()) - 0.5)


def test_nash_md_converges_and_the_baselines_do_not():
    P, tau, eta = RPS_LIKE, 0.1, 0.5
    mu = reference_policy("skewed", 3)
    r = O.bradley_terry_fit(P, torch.outer(mu, mu))
    md, mmd, sp, rl = mu.clone(), mu.clone(), mu.clone(), mu.clone()
    for t in range(1000):
        md = O.nash_md_update(md, mu, P, min(eta, 2 / (tau * (t + 2))), tau)
        mmd = O.nash_md_update(mmd, mu, P, eta, tau, against="current")
        sp, rl = O.self_play_update(sp, P, eta), O.rlhf_update(rl, mu, r, eta, tau)
    assert O.exploitability(md, P, mu, tau) < 1e-5 and O.exploitability(mmd, P, mu, tau) < 1e-12
    assert O.exploitability(sp, P, mu, tau) > 0.05 and O.exploitability(rl, P, mu, tau) > 0.05
    torch.testing.assert_close(rl, O.kl_regularised_optimum(r, mu, tau))  # RLHF's iterate reaches its optimum


def test_bradley_terry_fit_recovers_a_bradley_terry_matrix():
    r_true = torch.tensor([1.0, -0.5, 0.3, -0.8])
    P = torch.sigmoid(r_true[:, None] - r_true[None, :])
    w = torch.outer(*[reference_policy("skewed", 4)] * 2)
    torch.testing.assert_close(O.bradley_terry_fit(P, w), r_true - r_true.mean(), rtol=0, atol=1e-9)


def test_mixture_log_probs_equal_log_softmax_of_the_weighted_logits():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 5, 11, generator=g), torch.randn(2, 5, 11, generator=g)
    for beta in (0.0, 0.125, 0.5, 1.0):
        got = O.geometric_mixture_logits(a, b, beta)
        torch.testing.assert_close(got, F.log_softmax((1 - beta) * a + beta * b, -1).float())
        # and the normalised geometric mean of the two models' distributions
        mix = torch.softmax((1 - beta) * F.log_softmax(a, -1) + beta * F.log_softmax(b, -1), -1)
        torch.testing.assert_close(got.exp(), mix.float())


def test_the_losses_on_fixed_tensors_equal_the_formulas_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-0.2, -0.9, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    pref, tau = torch.tensor([0.8, 0.3]), 0.1
    seq = [-3.5, -1.0]  # Σ log π over the real tokens
    ratio = [[0.5, -1.0, 0.0], [-0.1, 0.2]]  # log π − log μ per real token
    kl_hat = [sum(r * l for r, l in zip(ratio[0], [-1.0, -2.0, -0.5])), sum(r * l for r, l in zip(ratio[1], [-0.3, -0.7]))]
    expected = torch.tensor([-(0.8 - 0.5) * seq[0] + tau * kl_hat[0], -(0.3 - 0.5) * seq[1] + tau * kl_hat[1]])
    loss = O.nash_md_loss(logp, ref, mask, pref, tau)
    torch.testing.assert_close(loss, expected)
    # its gradient per token: −(P − ½) + τ (log π − log μ), zero on padding
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.3 + 0.05, -0.3 - 0.1, -0.3], [0.2 - 0.01, 0.2 + 0.02, 0.0]]))
    logp.grad = None
    adv = [0.8 - 0.5 - tau * sum(ratio[0]), 0.3 - 0.5 - tau * sum(ratio[1])]
    pg = O.nash_md_pg_loss(logp, ref, mask, pref, tau)
    torch.testing.assert_close(pg, torch.tensor([-adv[0] * seq[0], -adv[1] * seq[1]]))
    pg.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-adv[0]] * 3, [-adv[1], -adv[1], 0.0]]))
    reward, baseline = torch.tensor([2.0, -1.0]), torch.tensor([1.5, 0.0])
    torch.testing.assert_close(O.rlhf_loss(logp, ref, mask, reward, baseline, tau),
                               torch.tensor([-0.5 * seq[0] + tau * kl_hat[0], 1.0 * seq[1] + tau * kl_hat[1]]))


def test_win_rate_interval_is_the_normal_interval_of_the_mean():
    p = torch.tensor([0.2, 0.6, 0.7, 0.9])
    mean, half = O.win_rate_interval(p)
    assert mean == pytest.approx(0.6)
    assert half == pytest.approx(1.96 * float(p.std()) / 2)


def test_bad_step_sizes_are_refused():
    with pytest.raises(ValueError, match="β = ητ"):
        O.nash_md_update(torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5]), torch.full((2, 2), 0.5), 20.0, 0.1)
    with pytest.raises(ValueError, match="τ must be > 0"):
        O.regularised_nash(RPS_LIKE, reference_policy("uniform", 3), 0.0)
