"""OP-GFN math against hand computations and brute-force references."""
import itertools
import math

import pytest
import torch

from zoo.op_gfn.data import HyperGrid, MultiObjectiveGrid, make_env
from zoo.op_gfn.objective import (
    backward_kl_to_uniform,
    db_log_reward,
    detailed_balance,
    exact_terminal_distribution,
    hypervolume,
    l1_distance,
    order_agreement,
    order_preserving_loss,
    pairwise_order_targets,
    pareto_mask,
    pareto_targets,
    tb_log_reward,
    trajectory_balance,
)

t = torch.tensor


def test_trajectory_balance_of_a_two_step_trajectory_by_hand():
    # s0 -(P_F=0.5)-> s1 -(P_F=0.25)-> s2 -(stop, P_F=0.8)-> sf ; P_B(s1|s2)=0.5, P_B(s0|s1)=1 ; R(s2)=2, log Z=0.3
    log_pf = t([math.log(0.5) + math.log(0.25) + math.log(0.8)])
    log_pb = t([math.log(0.5) + math.log(1.0)])
    expected = (0.3 + math.log(0.5 * 0.25 * 0.8) - math.log(2.0) - math.log(0.5)) ** 2
    assert trajectory_balance(t(0.3), log_pf, log_pb, t([math.log(2.0)])).item() == pytest.approx(expected, rel=1e-6)


def test_trajectory_balance_averages_over_the_batch():
    log_pf, log_pb, log_r = t([-1.0, -2.0]), t([-0.5, 0.0]), t([0.0, -1.0])
    per = [(1.0 - 1.0 - 0.0 + 0.5) ** 2, (1.0 - 2.0 + 1.0 - 0.0) ** 2]
    assert trajectory_balance(t(1.0), log_pf, log_pb, log_r).item() == pytest.approx(sum(per) / 2)


def test_detailed_balance_of_a_two_step_trajectory_by_hand():
    # transitions s0→s1, s1→s2 and the stop s2→sf read as F(sf)·P_B := R(s2)
    F = {"s0": 3.0, "s1": 2.0, "s2": 1.5}
    pf = {"s0s1": 0.6, "s1s2": 0.7, "stop": 0.4}
    pb = {"s1s0": 1.0, "s2s1": 0.5}
    R = 0.9
    r1 = math.log(F["s0"]) + math.log(pf["s0s1"]) - math.log(F["s1"]) - math.log(pb["s1s0"])
    r2 = math.log(F["s1"]) + math.log(pf["s1s2"]) - math.log(F["s2"]) - math.log(pb["s2s1"])
    r3 = math.log(F["s2"]) + math.log(pf["stop"]) - math.log(R)
    expected = (r1**2 + r2**2 + r3**2) / 3
    log = lambda xs: t([math.log(x) for x in xs])  # noqa: E731
    got = detailed_balance(log([F["s0"], F["s1"], F["s2"]]), log([pf["s0s1"], pf["s1s2"], pf["stop"]]),
                           log([F["s1"], F["s2"], R]), t([math.log(pb["s1s0"]), math.log(pb["s2s1"]), 0.0]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_learned_log_rewards():
    assert tb_log_reward(t([-2.0]), t([-0.5])).item() == pytest.approx(-2.0 + 0.5)
    assert db_log_reward(t([0.7]), t([-0.2])).item() == pytest.approx(0.5)


def test_log_Z_cancels_in_the_order_loss():
    """Why OP-TB learns no log Z: adding it to every candidate's log R̂ leaves L_OP unchanged."""
    log_r_hat, targets = t([[0.3, -1.2, 0.8]]), t([[0.5, 0.0, 0.5]])
    assert order_preserving_loss(log_r_hat + 4.2, targets).item() == pytest.approx(
        order_preserving_loss(log_r_hat, targets).item(), rel=1e-6)


def test_backward_kl_to_uniform_by_hand():
    # state 1: two parents, P_B = (0.8, 0.2), U = (½, ½): KL(U‖P_B) = ½ log(½/0.8) + ½ log(½/0.2)
    # state 2: three actions of which two are parents, P_B = (0.5, 0.5) on them: KL = 0
    # state 3: one parent, P_B = 1 → clamped to 1 − ε as the official code: KL = −log(1 − ε)
    eps = torch.finfo(torch.float32).eps
    log_pb = torch.log(t([[0.8, 0.2, 0.0], [0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]))
    parents = t([[True, True, False], [True, False, True], [False, True, False]])
    per_state = [0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2), 0.0, -math.log(1 - eps)]
    got = backward_kl_to_uniform(log_pb, parents)
    assert got.item() == pytest.approx(sum(per_state) / 3, rel=1e-5)
    # the official form: torch's KLDivLoss(log P_B, U) with batchmean, masked actions have U = 0
    uniform = parents.float() / parents.sum(-1, keepdim=True)
    official = torch.nn.KLDivLoss(reduction="batchmean")(log_pb.exp().clamp(eps, 1 - eps).log(), uniform)
    assert got.item() == pytest.approx(official.item(), rel=1e-5)
    assert backward_kl_to_uniform(torch.log(t([[0.5, 0.5]])), t([[True, True]])).item() == pytest.approx(0.0, abs=1e-6)


def test_order_agreement_by_hand():
    # rewards 3 > 2 > 1 = 1: ordered pairs (a,b), (a,c), (a,d), (b,c), (b,d); c, d tie and do not count
    r = t([[3.0], [2.0], [1.0], [1.0]])
    assert order_agreement(t([0.4, 0.3, 0.2, 0.1]), r).item() == pytest.approx(1.0)
    # b below c: (b, c) disagrees; b equal to d: (b, d) counts ½ → (3 + 0 + ½) / 5
    assert order_agreement(t([0.5, 0.1, 0.3, 0.1]), r).item() == pytest.approx(3.5 / 5)
    # Pareto order on two objectives: (2,2) ≻ (1,1); (2,0) and (0,2) are incomparable with the others but
    # (2,2) ≻ (2,0) and (2,2) ≻ (0,2); (1,1) and (2,0) incomparable
    obj = t([[2.0, 2.0], [1.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    assert order_agreement(t([0.1, 0.2, 0.3, 0.4]), obj).item() == pytest.approx(0.0)
    assert order_agreement(t([0.4, 0.2, 0.3, 0.1]), obj).item() == pytest.approx(1.0)


def test_pairwise_targets_strict_orders_and_ties():
    got = pairwise_order_targets(t([2.0, 1.0, 1.0, 5.0]), t([1.0, 2.0, 1.0, 5.0 + 1e-9]))
    assert got.tolist() == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]]


def test_order_preserving_loss_of_a_pair_is_binary_cross_entropy():
    a, b = 0.7, -0.4
    sig = 1 / (1 + math.exp(-(a - b)))
    for y in (1.0, 0.5, 0.0):
        expected = -(y * math.log(sig) + (1 - y) * math.log(1 - sig))
        got = order_preserving_loss(t([[a, b]]), t([[y, 1 - y]]))
        assert got.item() == pytest.approx(expected, rel=1e-6)


def test_order_preserving_loss_is_minimised_by_ranking_the_better_candidate_higher():
    targets = t([[1.0, 0.0]])
    assert order_preserving_loss(t([[3.0, 0.0]]), targets) < order_preserving_loss(t([[0.0, 3.0]]), targets)


def test_pareto_mask_on_a_hand_made_set():
    points = t([[1.0, 2.0], [2.0, 1.0], [1.0, 1.0], [2.0, 1.0], [0.0, 3.0], [0.5, 0.5], [1.0, 2.0]])
    # (1,1) is dominated by (1,2); (0.5,0.5) by everything else; duplicates of front points stay
    assert pareto_mask(points).tolist() == [True, True, False, True, True, False, True]
    target = pareto_targets(points)
    assert target.tolist() == pytest.approx([0.2, 0.2, 0.0, 0.2, 0.2, 0.0, 0.2])


def test_pareto_mask_agrees_with_brute_force():
    g = torch.Generator().manual_seed(0)
    points = torch.randint(0, 5, (40, 3), generator=g).float()
    brute = [not any((q >= p).all() and (q > p).any() for q in points) for p in points]
    assert pareto_mask(points).tolist() == brute


def test_hypervolume_by_hand_in_2d():
    # union of [0,1]×[0,3], [0,2]×[0,2], [0,3]×[0,1] = 3 + 2 + 1
    pts = t([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [1.0, 1.0]])
    assert hypervolume(pts, t([0.0, 0.0])).item() == pytest.approx(6.0)
    assert hypervolume(pts, t([1.0, 1.0])).item() == pytest.approx(1.0)  # only (2,2) lies above (1,1)


def test_hypervolume_in_3d_agrees_with_counting_unit_cubes():
    g = torch.Generator().manual_seed(1)
    pts = torch.randint(1, 5, (6, 3), generator=g).float()
    cubes = sum(1 for c in itertools.product(range(4), repeat=3)
                if any((p >= t(c) + 1).all() for p in pts))
    assert hypervolume(pts, t([0.0, 0.0, 0.0])).item() == pytest.approx(cubes)


def test_l1_distance():
    assert l1_distance(t([0.5, 0.5, 0.0]), t([0.25, 0.25, 0.5])).item() == pytest.approx(1.0)


def test_hypergrid_reward_at_known_states():
    env = HyperGrid(ndim=2, height=8)
    r = env.objectives(t([[1, 1], [6, 1], [0, 0], [3, 3], [0, 3]]))[:, 0]
    # modes: both coordinates in the band 0.3 < |x/7 − 0.5| < 0.4, i.e. x ∈ {1, 6}
    assert r.tolist() == pytest.approx([2.6, 2.6, 0.6, 0.1, 0.1])
    assert (env.objectives(env.all_states())[:, 0] == env.objectives(env.all_states())[:, 0].max()).sum() == 4
    assert env.mode_region(t([[1, 1], [6, 1], [1, 6], [6, 6]])).tolist() == [0, 1, 2, 3]


def test_modes_are_counted_by_corner_on_larger_grids():
    env = HyperGrid(ndim=2, height=32)
    r = env.objectives(env.all_states())[:, 0]
    best = env.all_states()[r == r.max()]
    assert len(best) == 36  # x ∈ {4, 5, 6, 25, 26, 27} in each coordinate: a 3×3 block per corner
    assert env.mode_region(best).unique().tolist() == [0, 1, 2, 3]


def test_exact_distribution_agrees_with_enumerating_every_trajectory():
    env = HyperGrid(ndim=2, height=3)
    states = env.all_states()
    g = torch.Generator().manual_seed(0)
    mask = env.forward_mask(states)
    log_pf = torch.randn(states.shape[0], env.n_actions, generator=g).masked_fill(~mask, -math.inf).log_softmax(-1)
    children = torch.zeros(states.shape[0], env.n_actions - 1, dtype=torch.long)
    for a in range(env.n_actions - 1):
        ok = mask[:, a]
        children[ok, a] = env.index(env.step(states[ok], torch.full((int(ok.sum()),), a)))
    exact = exact_terminal_distribution(log_pf, children, 0, env.max_length)

    brute = torch.zeros(states.shape[0])

    def walk(i, p):
        brute[i] += p * log_pf[i, -1].exp()
        for a in range(env.n_actions - 1):
            if mask[i, a]:
                walk(int(children[i, a]), p * log_pf[i, a].exp())

    walk(0, 1.0)
    torch.testing.assert_close(exact, brute)
    assert exact.sum().item() == pytest.approx(1.0)


def test_moo_grid_objectives_are_normalised_and_the_front_is_nontrivial():
    env = MultiObjectiveGrid(height=32, objectives=("branin", "currin"))
    obj = env.objectives(env.all_states())
    assert obj.shape == (32 * 32, 2)
    assert obj.max() <= 1.01 and obj.min() >= -0.1
    assert 2 < pareto_mask(obj).sum() < 100


@pytest.mark.parametrize("kwargs, flag", [
    ({"env": "no_such_env"}, "--model.env"),
    ({"env": "hypergrid", "height": 1}, "--model.height"),
    ({"env": "hypergrid", "R0": float("nan")}, "--model.R0"),
    ({"env": "hypergrid", "R1": -1.0}, "--model.R1"),
    ({"env": "moo_grid", "objectives": ("branin", "nope")}, "--model.objectives"),
    ({"env": "nosuchmodule:Env"}, "--model.env"),
])
def test_bad_environment_arguments_name_the_flag(kwargs, flag):
    args = {"env": "hypergrid", "ndim": 2, "height": 8, "R0": 0.1, "R1": 0.5, "R2": 2.0,
            "objectives": ("branin", "currin"), "env_kwargs": None, **kwargs}
    with pytest.raises(ValueError, match=flag):
        make_env(**args)
