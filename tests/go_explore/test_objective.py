"""Go-Explore's pieces checked by hand or by brute force."""
import math

import numpy as np
import pytest
import torch

from zoo.go_explore.objective import (
    area_resize,
    area_weights,
    count_weight,
    discounted_returns,
    downscale,
    erase_loops,
    half_frame,
    imitation_start,
    is_better,
    lagging,
    level_factor,
    move_start,
    propose_downscale,
    repeated_random_actions,
    representation_score,
    search_downscale,
    selection_probabilities,
    start_index,
    self_imitation_loss,
)


def brute_area(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    """Each output pixel: the integral of the piecewise-constant frame over its box, divided by the box area."""
    H, W = frame.shape
    out = np.zeros((h, w))
    for j in range(h):
        for k in range(w):
            y0, y1, x0, x1 = j * H / h, (j + 1) * H / h, k * W / w, (k + 1) * W / w
            total = 0.0
            for y in range(H):
                for x in range(W):
                    oy = max(0.0, min(y + 1, y1) - max(y, y0))
                    ox = max(0.0, min(x + 1, x1) - max(x, x0))
                    total += oy * ox * frame[y, x]
            out[j, k] = total / ((y1 - y0) * (x1 - x0))
    return out


def test_area_weights_are_integer_overlaps_that_sum_to_the_input_size():
    K = area_weights(5, 3)
    np.testing.assert_array_equal(K, [[3, 2, 0, 0, 0], [0, 1, 3, 1, 0], [0, 0, 0, 2, 3]])
    assert (area_weights(105, 11).sum(1) == 105).all()
    with pytest.raises(ValueError, match="shrinks"):
        area_weights(3, 5)


def test_area_resize_matches_the_area_integral_and_is_the_same_alone_or_batched():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (13, 9)).astype(np.uint8)
    for w, h in ((4, 5), (9, 13), (1, 1), (2, 7)):
        expected = np.floor(brute_area(frame, w, h) + 0.5 + 1e-9).astype(np.uint8)
        np.testing.assert_array_equal(area_resize(frame, w, h), expected)
    batch = rng.integers(0, 256, (64, 105, 80)).astype(np.uint8)
    together = area_resize(batch, 11, 8)
    alone = np.stack([area_resize(f, 11, 8) for f in batch])
    np.testing.assert_array_equal(together, alone)


def test_downscale_of_a_known_frame():
    # four 2×2 blocks of 0, 100, 200, 255 → their means, then ⌊8 · x / 255⌋
    frame = np.kron(np.array([[0, 100], [200, 255]], np.uint8), np.ones((2, 2), np.uint8))
    np.testing.assert_array_equal(downscale(frame, 2, 2, 8), [[0, 3], [6, 8]])
    # one pixel: the mean 138.75 rounds to 139; with 3 levels ⌊3 · 139 / 255⌋ = 1
    np.testing.assert_array_equal(downscale(frame, 1, 1, 3), [[1]])


def test_half_frame_averages_two_by_two_blocks():
    frame = np.array([[0, 1, 10, 10, 7], [2, 2, 10, 11, 7], [255, 255, 0, 0, 7]], np.uint8)
    np.testing.assert_array_equal(half_frame(frame), [[1, 10]])  # (0+1+2+2+2)//4 = 1, (41+2)//4 = 10


def test_representation_score_by_hand():
    assert representation_score(np.array([2, 2]), 4, 0.5) == pytest.approx(1.0)  # uniform over T = 2 cells
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)
    assert representation_score(np.array([3, 1]), 4, 0.5) == pytest.approx(h)
    # 4 cells for a target of 2: uniform, but penalised by sqrt(|4 − 2| / 2 + 1)
    assert representation_score(np.array([1, 1, 1, 1]), 4, 0.5) == pytest.approx(1 / math.sqrt(2))
    assert representation_score(np.array([4]), 4, 0.5) == 0.0


def test_propose_downscale_stays_in_bounds():
    rng = np.random.default_rng(1)
    for _ in range(500):
        w, h, d = propose_downscale((10, 8, 8), rng, 80, 105)
        assert 1 <= w <= 79 and 1 <= h <= 104 and 2 <= d <= 255


def test_search_downscale_finds_a_split_near_the_target():
    # 64 frames, each one flat grey level: the only thing to split on is intensity; T = 8 cells
    levels = np.repeat(np.linspace(0, 255, 8).astype(np.uint8), 8)
    frames = np.broadcast_to(levels[:, None, None], (64, 6, 6)).copy()
    params, score, n = search_downscale(frames, 300, 1 / 8, np.random.default_rng(0))
    assert n == 8 and score == pytest.approx(1.0)
    # the score it reports is the score of the parameters it returns
    counts = np.unique(downscale(frames, *params).reshape(64, -1), axis=0, return_counts=True)[1]
    assert representation_score(counts, 64, 1 / 8) == pytest.approx(score)


def test_selection_weights_by_formula():
    seen = torch.tensor([0, 3, 8])
    np.testing.assert_allclose(count_weight(seen, 1.0, 0.5), [1.0, 0.5, 1 / 3])
    np.testing.assert_allclose(count_weight(seen, 0.1, 1.0), [0.1, 0.025, 0.1 / 9])
    np.testing.assert_allclose(level_factor(torch.tensor([0, 1, 2]), 0.1), [0.01, 0.1, 1.0])
    p = selection_probabilities(torch.tensor([1.0, 3.0], dtype=torch.float64))
    np.testing.assert_allclose(p, [0.25, 0.75])
    with pytest.raises(ValueError, match="positive sum"):
        selection_probabilities(torch.zeros(3))


def test_update_rule_keeps_the_better_trajectory():
    assert is_better(1.0, 50, 0.0, 10)            # a higher score wins, however long
    assert is_better(1.0, 9, 1.0, 10)             # the same score in fewer steps wins
    assert not is_better(1.0, 10, 1.0, 10)        # a tie keeps the old
    assert not is_better(0.0, 1, 1.0, 10)         # a lower score loses, however short
    assert is_better(0.0, 10**6, -math.inf, math.inf)  # anything beats a new cell


def test_repeated_random_actions():
    rng = np.random.default_rng(0)
    a = repeated_random_actions(100_000, 5, 20.0, rng)
    assert a.min() >= 0 and a.max() == 4
    runs = np.diff(np.flatnonzero(np.diff(a) != 0))
    # runs of equal actions merge when the next draw repeats the action: mean run = 20 / (1 − 1/5) = 25
    assert runs.mean() == pytest.approx(25, rel=0.1)
    uniform = repeated_random_actions(100_000, 4, 1.0, rng)
    assert (uniform[1:] == uniform[:-1]).mean() == pytest.approx(0.25, abs=0.01)
    with pytest.raises(ValueError):
        repeated_random_actions(5, 3, 0.5, rng)


def test_backward_algorithm_pieces_by_hand():
    assert start_index(7, 1, 10, 0.2, u=0.5, v=0.9) == 7   # u ≥ frac_sample: in the window {7}
    assert start_index(7, 2, 10, 0.2, u=0.5, v=0.9) == 8   # in the window {7, 8}
    assert start_index(7, 1, 10, 0.2, u=0.1, v=0.9) == 9   # else uniform in {7, 8, 9}
    assert start_index(7, 5, 10, 0.2, u=0.5, v=0.99) == 9  # the window ends with the demonstration
    assert start_index(10, 5, 10, 0.2, u=0.5, v=0.5) == 10  # at the end: the end
    # W = 4, τ = 0.25 → τW = 1. All succeed: the cumulative rate reaches 1 at k = 0, so the start moves 3 back
    four = np.array([4, 4, 4, 4])
    assert move_start(20, four, four, 0.25, min_episodes=8) == 17
    # only the top points succeed: 0 + 0 + 0.5 + 1 reaches 1 at k = 3: no move
    assert move_start(20, np.array([0, 0, 2, 4]), four, 0.25, min_episodes=8) == 20
    # the bottom half succeeds at 1/2: 0.5 + 0.5 reaches 1 at k = 1: the start moves 2 back
    assert move_start(20, np.array([2, 2, 0, 0]), four, 0.25, min_episodes=8) == 18
    assert move_start(20, np.array([0, 0, 0, 0]), four, 0.25, min_episodes=8) == 20      # nothing succeeds
    assert move_start(20, four, four, 0.25, min_episodes=17) == 20                        # too few episodes
    assert move_start(2, four, four, 0.25, min_episodes=8) == 0                           # not past the start
    assert move_start(5, np.array([3]), np.array([3]), 0.2, min_episodes=1) == 5          # W = 1 never moves
    returns = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2], dtype=float)
    assert not lagging(0.0, 2, returns, allowed_lag=2, allowed_score_deficit=0)   # within the first lag
    assert not lagging(0.0, 4, returns, allowed_lag=2, allowed_score_deficit=0)   # min of returns[2:6] is 0
    assert lagging(0.0, 5, returns, allowed_lag=2, allowed_score_deficit=0)       # min of returns[3:7] is 1 > 0
    assert not lagging(0.0, 5, returns, allowed_lag=2, allowed_score_deficit=1)
    assert lagging(0.5, 12, returns, allowed_lag=2, allowed_score_deficit=0)      # past the end: the last scores


def test_erase_loops_by_hand():
    assert erase_loops(list("abcbd"), np.zeros(5)) == [0, 1, 3 + 1]            # b c b: the loop c goes
    assert erase_loops(list("abab"), np.zeros(4)) == [0, 3]                    # back at a, then b again
    assert erase_loops(list("abcab"), np.zeros(5)) == [0, 4]                   # the whole a b c loop goes
    assert erase_loops(list("abcd"), np.zeros(4)) == [0, 1, 2, 3]              # no loop
    assert erase_loops(list("abcbd"), np.array([0, 0, 1, 1, 1.0])) == [0, 1, 2, 3, 4]  # paid inside: kept


def test_erase_loops_keeps_a_walk_that_ends_where_the_trajectory_does():
    """Random walks on a ring of 7 places: the kept path visits no place twice, starts and ends where the
    walk does, and each kept step is a step the walk took from the same place (so replaying it is valid)."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        moves = rng.choice([-1, 1], size=int(rng.integers(1, 40)))
        places = [0, *np.cumsum(moves) % 7]
        path = erase_loops(places, np.zeros(len(places)))
        kept = [places[j] for j in path]
        assert path[0] == 0 and kept[-1] == places[-1]
        assert len(set(kept)) == len(kept)
        for prev, j in zip(path, path[1:]):
            assert places[j - 1] == places[prev]  # the action at j − 1 was taken from the place kept before j


def test_self_imitation_pieces_by_hand():
    assert discounted_returns(np.array([0.0, 0.0, 1.0]), 0.5) == pytest.approx([0.25, 0.5, 1.0])
    assert discounted_returns(np.array([1.0, 0.0, 2.0]), 1.0) == pytest.approx([3.0, 2.0, 2.0])
    assert len(discounted_returns(np.zeros(0), 0.9)) == 0
    # s = 20, up to 10 points before it: u picks p = 20 − ⌊u · 11⌋; the beginning when v < q
    assert imitation_start(20, 30, 10, 0.0, u=0.0, v=0.0) == 20
    assert imitation_start(20, 30, 10, 0.0, u=0.99, v=0.0) == 10
    assert imitation_start(3, 30, 10, 0.0, u=0.99, v=0.0) == 0          # not before the beginning
    # ρ = 0.3, p = 20, E = 30: n = 10, q = 0.3·10 / (30·0.7 + 0.3·10) = 3 / 24 = 0.125
    assert imitation_start(20, 30, 10, 0.3, u=0.0, v=0.124) == 0
    assert imitation_start(20, 30, 10, 0.3, u=0.0, v=0.126) == 20
    assert imitation_start(0, 0, 10, 0.3, u=0.5, v=0.0) == 0            # an empty demonstration
    # two replayed steps in a minibatch of n = 4: R − V_old = (0.5, −1) → only the first pulls, weighted 1 − 0.2
    log_prob = torch.tensor([math.log(0.25), math.log(0.5)], requires_grad=True)
    value = torch.tensor([0.1, 3.0], requires_grad=True)
    policy, value_loss = self_imitation_loss(log_prob, value, torch.tensor([0.5, 3.0]), torch.tensor([1.0, 2.0]),
                                             torch.tensor([0.8, 1.0]), n=4)
    assert float(policy) == pytest.approx(0.8 * math.log(4) * 0.5 / 4)
    assert float(value_loss) == pytest.approx(0.5 * 0.8 * 0.9 ** 2 / 4)   # (2 − 3)₊ = 0 for the second
    (policy + value_loss).backward()
    assert log_prob.grad.tolist() == pytest.approx([-0.8 * 0.5 / 4, 0.0])
    assert value.grad.tolist() == pytest.approx([-0.8 * 0.9 / 4, 0.0])   # V_old takes no part in it
