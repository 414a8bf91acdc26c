"""Cell selection as array operations: the same weights, best trajectory and draws as the cell-by-cell
definitions, on archives with many cells."""
import numpy as np
import pytest
import torch

from zoo.go_explore.archive import Archive, _neighbour_weights_by_cell, neighbour_weights
from zoo.go_explore.objective import draw_cell, is_better, selection_probabilities

FIELDS = ("level", "room", "keys", "x", "y")


def random_archive(n, seed, ranges=(3, 24, 5, 20, 25), scores=10):
    rng = np.random.default_rng(seed)
    archive = Archive(FIELDS)
    while len(archive) < n:
        key = tuple(int(rng.integers(r)) for r in ranges)
        if key not in archive.index:
            archive.add(key, float(rng.integers(scores)), int(rng.integers(1, 30)), np.zeros(2, np.uint8),
                        rng.integers(0, 18, int(rng.integers(1, 5))).astype(np.uint8), None)
    return archive


@pytest.mark.parametrize("ranges", [(3, 24, 5, 20, 25), (1, 2, 2, 4, 3), (3, 1000, 5, 40, 30), (2, 10**6, 3, 10**6, 10**6)],
                         ids=["montezuma", "dense", "a sorted search", "too wide to number"])
@pytest.mark.parametrize("weights", [(0.1, 0.0, 1.0), (0.3, 0.2, 0.0), (0.0, 0.5, 2.0)])
def test_neighbour_weights_equal_the_cell_by_cell_definition(ranges, weights):
    n = min(2000, int(np.prod(ranges, dtype=np.float64)) // 2)
    archive = random_archive(n, seed=n, ranges=ranges)
    rows = archive.rows()
    assert rows.shape == (n, 5) and [tuple(r) for r in rows] == archive.keys
    expected = _neighbour_weights_by_cell(rows, FIELDS, *weights)
    assert np.array_equal(neighbour_weights(rows, FIELDS, *weights), np.array(expected))
    assert sum(expected) > 0  # the terms are exercised


def test_rows_grow_with_the_archive_and_start_again_after_a_reload():
    archive = random_archive(50, seed=1)
    first = archive.rows().copy()
    more = random_archive(300, seed=2)
    for k, s, l, st, a, f in zip(more.keys, more.score, more.length, more.states, more.actions, more.frames):
        archive.add(k, s, l, st, a, f)
    assert np.array_equal(archive.rows()[:50], first)
    assert [tuple(r) for r in archive.rows()] == archive.keys
    restored = Archive()
    restored.load_state_dict(archive.state_dict())
    assert [tuple(r) for r in restored.rows()] == archive.keys


def test_best_is_the_cell_by_cell_search_ties_included():
    for seed in range(20):
        archive = random_archive(200, seed=seed, scores=3)  # many ties of score, and of length
        archive.done_score, archive.done_length = float(seed % 4), 5 + seed % 3
        score, length, actions = archive.done_score, archive.done_length, archive.done_actions
        for i in range(len(archive)):
            if is_better(archive.score[i], archive.length[i], score, length):
                score, length, actions = archive.score[i], archive.length[i], archive.actions[i]
        got = archive.best()
        assert (got[0], got[1]) == (score, length) and got[2] is actions


def test_draw_cell_draws_each_cell_in_proportion_to_its_weight():
    weights = torch.tensor([0.0, 1.0, 0.0, 3.0, 6.0, 0.0], dtype=torch.float64)
    cdf = selection_probabilities(weights).cumsum(0)
    g = torch.Generator().manual_seed(0)
    counts = np.bincount([draw_cell(cdf, g) for _ in range(20_000)], minlength=6)
    assert counts[[0, 2, 5]].sum() == 0  # a cell of weight 0 is never drawn
    np.testing.assert_allclose(counts / 20_000, (weights / weights.sum()).numpy(), atol=0.01)


def test_draw_cell_never_falls_past_the_last_cell_with_weight(monkeypatch):
    cdf = torch.tensor([0.25, 1.0, 1.0], dtype=torch.float64)  # the last cell has weight 0
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor(1.0, dtype=torch.float64))  # u rounded up to 1
    assert draw_cell(cdf) == 1
