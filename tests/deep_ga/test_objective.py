"""The Deep GA's equations against hand computations: seed chains, truncation, elitism, novelty."""
import math

import torch

from zoo.deep_ga.nets import MLP, AtariNet
from zoo.deep_ga.objective import (
    elite_candidates,
    epsilon,
    initial_theta,
    mutate,
    novelty,
    rank_by,
    select_elite,
    theta_from_chain,
    truncation_selection,
)


def test_epsilon_is_a_seeded_standard_normal():
    torch.testing.assert_close(epsilon(7, 1000), epsilon(7, 1000), rtol=0, atol=0)
    assert not torch.equal(epsilon(7, 1000), epsilon(8, 1000))
    x = epsilon(3, 200_000)
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01


def test_chain_rebuilds_the_evolved_theta_bit_for_bit():
    scale = MLP(8, 4, [16]).init_scale()
    theta = initial_theta(11, scale)
    for seed in (5, 99, 2**31 - 2):  # evolve step by step, as the GA does
        theta = mutate(theta, seed, 0.02)
    torch.testing.assert_close(theta_from_chain((11, 5, 99, 2**31 - 2), scale, 0.02), theta, rtol=0, atol=0)
    # by hand: θ = s ⊙ ε(τ0) + σ (ε(τ1) + ε(τ2) + ε(τ3)), up to float rounding of the sum's order
    by_hand = scale * epsilon(11, len(scale)) + 0.02 * (epsilon(5, len(scale)) + epsilon(99, len(scale)) + epsilon(2**31 - 2, len(scale)))
    torch.testing.assert_close(theta, by_hand, rtol=1e-6, atol=1e-6)


def test_initialisation_scales_weights_by_fan_in_and_zeroes_biases():
    net = MLP(4, 2, [3])
    theta = initial_theta(0, net.init_scale())
    p = net.unflatten(theta[None])
    assert torch.equal(p["b0"], torch.zeros(1, 3)) and torch.equal(p["b1"], torch.zeros(1, 2))
    torch.testing.assert_close(p["w0"][0], (epsilon(0, net.num_params)[:12] / 2).view(4, 3))  # std 1/√4
    assert math.isclose(net.init_scale()[-8].item(), 0.1 / math.sqrt(3), rel_tol=1e-6)  # the output layer: 0.1/√fan_in


def test_truncation_and_elitism_on_a_hand_made_fitness_list():
    fitness = torch.tensor([3.0, 9.0, 1.0, 9.0, 5.0, -2.0])
    assert rank_by(fitness).tolist() == [1, 3, 4, 0, 2, 5]  # ties keep the lower index first
    assert truncation_selection(fitness, 3).tolist() == [1, 3, 4]
    assert elite_candidates(fitness, 3, has_elite=False).tolist() == [1, 3, 4]
    assert elite_candidates(fitness, 3, has_elite=True).tolist() == [1, 3]  # the elite is the third
    returns = torch.tensor([[1.0, 3.0], [4.0, 0.0], [2.5, 2.5]])  # means 2, 2, 2.5
    assert select_elite(returns) == 2
    assert select_elite(torch.tensor([[1.0], [1.0]])) == 0


def test_novelty_on_a_hand_made_archive():
    archive = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [6.0, 8.0]])
    # b0: distances 0, 5, 10 -> k=2: (0 + 5)/2; b1: distances 10, 5, 8.944 -> (5 + 8.944)/2
    got = novelty(b, archive, k=2)
    torch.testing.assert_close(got, torch.tensor([2.5, (5 + math.hypot(4, 8)) / 2], dtype=torch.float64))
    # the population is part of the reference set, each point's own row excluded
    reference = torch.cat([archive, b])
    got = novelty(b, reference, k=1, self_index=torch.tensor([3, 4]))
    torch.testing.assert_close(got, torch.tensor([0.0, 5.0], dtype=torch.float64))
    assert novelty(b, archive, k=10).shape == (2,)  # fewer than k neighbours: the mean of all


def test_batched_policies_match_one_at_a_time():
    torch.manual_seed(0)
    for net, obs in ((MLP(5, 3, [7, 6]), torch.randn(4, 2, 5)),
                     (AtariNet((4, 84, 84), 6, "dqn"), torch.randint(0, 256, (3, 2, 4, 84, 84), dtype=torch.uint8))):
        thetas = torch.stack([initial_theta(s, net.init_scale()) + 0.01 * epsilon(s + 1, net.num_params) for s in range(len(obs))])
        together = net.forward_flat(thetas, obs)
        alone = torch.cat([net.forward_flat(thetas[i: i + 1], obs[i: i + 1]) for i in range(len(obs))])
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_dqn_sizes_match_the_paper():
    assert 1_000_000 < AtariNet((4, 84, 84), 18, "dqn").num_params < 1_100_000
    assert 4_000_000 < AtariNet((4, 84, 84), 18, "dqn_large").num_params < 4_100_000
