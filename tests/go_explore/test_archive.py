"""The archive: the update rule on hand-made exploration records, the counts behind the weights, the
neighbour terms, re-keying, the checkpoint round trip, and an exploration in a known corridor."""
import io

import numpy as np
import pytest
import torch

from zoo.go_explore.archive import Archive, CellFunction, Downscaling, explore
from zoo.go_explore.data import make_game

S = np.zeros(2, np.uint8)  # a stand-in state


def acts(*a):
    return np.array(a, np.uint8)


def record(start_key, seen, candidates, done=None, rooms=()):
    return {"start_key": start_key, "seen": seen, "candidates": candidates, "done": done, "frames": [],
            "rooms": set(rooms), "steps": 10}


def small_archive():
    archive = Archive()
    archive.add((0,), 0.0, 0, S, acts(), None)
    return archive


def test_apply_keeps_the_better_of_two_trajectories_to_the_same_cell():
    archive = small_archive()
    slow = ((5,), 0.0, 9, S, acts(*[1] * 9), None)
    fast = ((5,), 0.0, 5, S + 1, acts(*[1] * 5), None)
    richer = ((5,), 1.0, 12, S + 2, acts(*[2] * 12), None)
    n_new, n_better = archive.apply([record((0,), [(0,), (5,)], [slow]), record((0,), [(0,), (5,)], [fast])])
    assert (n_new, n_better) == (1, 1)
    i = archive.index[(5,)]
    assert archive.length[i] == 5 and archive.actions[i].tolist() == [1] * 5 and archive.states[i][0] == 1
    archive.apply([record((0,), [(5,)], [slow])])  # a slower way back changes nothing
    assert archive.length[i] == 5
    archive.apply([record((0,), [(5,)], [richer])])  # a higher score wins, however long
    assert archive.score[i] == 1.0 and archive.length[i] == 12
    assert archive.best() == (1.0, 12, archive.actions[i])


def test_apply_counts_choices_and_sightings_and_resets_updated_cells():
    archive = small_archive()
    archive.apply([record((0,), [(0,), (1,)], [((1,), 0.0, 1, S, acts(1), None)])])
    # the start was chosen and seen once; cell 1 is new: its counts restart at 0
    assert (archive.chosen[0], archive.seen[0], archive.since_new[0]) == (1, 1, 0)
    assert (archive.chosen[1], archive.seen[1], archive.since_new[1]) == (0, 0, 0)
    archive.apply([record((0,), [(0,), (1,)], [])] * 3)  # three explorations that found nothing
    assert (archive.chosen[0], archive.seen[0], archive.since_new[0]) == (4, 4, 3)
    assert archive.seen[1] == 3
    weights = archive.weights(seen=(1.0, 0.5))
    np.testing.assert_allclose(weights, [1 / np.sqrt(5), 1 / 2])
    weights = archive.weights(seen=(1.0, 0.5), chosen=(0.5, 1.0), since_new=(2.0, 0.5))
    np.testing.assert_allclose(weights, [1 / np.sqrt(5) + 0.5 / 5 + 2 / 2, 1 / 2 + 0.5 + 2])


def test_done_keeps_the_best_finished_trajectory():
    archive = small_archive()
    archive.apply([record((0,), [(0,)], [], done=(1.0, 30, acts(*[0] * 30)))])
    archive.apply([record((0,), [(0,)], [], done=(1.0, 20, acts(*[0] * 20)))])
    archive.apply([record((0,), [(0,)], [], done=(0.0, 5, acts(*[0] * 5)))])
    assert (archive.done_score, archive.done_length) == (1.0, 20)
    assert archive.best()[:2] == (1.0, 20)  # better than every cell (all score 0)


def test_neighbour_and_level_weights_by_hand():
    archive = Archive(("level", "keys", "x", "y"))
    for key in [(0, 0, 0, 0), (0, 0, 1, 0), (0, 0, 2, 0), (0, 1, 1, 0), (1, 0, 0, 1)]:
        archive.add(key, 0.0, 0, S, acts(), None)
    w = archive.weights(seen=(0.0, 0.5), horiz=1.0)
    # x spans 0..2: (0,0,0,0) lacks x=-1 (outside the range, not counted) and has x=1 → 0;
    # (0,0,1,0) has both → 0; (0,0,2,0) → 0; (0,1,1,0): x=0 and x=2 with 1 key missing → 2; (1,0,0,1): x=1 missing → 1
    np.testing.assert_allclose(w, [0, 0, 0, 2, 1])
    w = archive.weights(seen=(0.0, 0.5), vert=1.0)
    # y spans 0..1: (…, y=0) lack y=1 except where present; (1,0,0,1) lacks y=0 at level 1
    np.testing.assert_allclose(w, [1, 1, 1, 1, 1])
    w = archive.weights(seen=(0.0, 0.5), high_keys=1.0)
    # no cell at the same place holds more keys, except (0,0,1,0), beaten by (0,1,1,0)
    np.testing.assert_allclose(w, [1, 0, 1, 1, 1])
    w = archive.weights(seen=(1.0, 0.5), low_level=0.1)
    np.testing.assert_allclose(w, [0.1, 0.1, 0.1, 0.1, 1.0])


def test_rekey_merges_cells_keeping_the_better():
    archive = Archive()
    frames = [np.full((4, 4), v, np.uint8) for v in (10, 20, 200)]
    for i, (f, length) in enumerate(zip(frames, (7, 3, 5))):
        archive.add(bytes([i]), 0.0, length, S, acts(*[i] * length), f)
        archive.seen[i] = 10 + i
    cells = CellFunction("downscaled", (1, 1, 2))  # two cells: dark (10, 20 → 0) and light (200 → 1)
    archive.rekey(cells.of_frame)
    assert len(archive) == 2
    dark = archive.index[bytes([0])]
    assert archive.length[dark] == 3 and archive.seen[dark] == 11  # the shorter one, with its own counts
    assert archive.length[archive.index[bytes([1])]] == 5


def test_state_dict_round_trip_through_a_weights_only_checkpoint():
    for archive in (Archive(("x", "y")), Archive()):
        domain = bool(archive.fields)
        for i in range(3):
            key = (i, i + 1) if domain else bytes([i, 2 * i])
            archive.add(key, float(i), i + 1, np.arange(5 + i, dtype=np.uint8), acts(*range(i + 1)),
                        None if domain else np.full((3, 2), i, np.uint8))
            archive.seen[i], archive.chosen[i] = i, 2 * i
        archive.done_score, archive.done_length, archive.done_actions = 2.5, 9, acts(1, 2)
        archive.rooms = {1, 4}
        buf = io.BytesIO()
        torch.save({"archive": archive.state_dict()}, buf)
        buf.seek(0)
        restored = Archive()
        restored.load_state_dict(torch.load(buf, weights_only=True)["archive"])
        assert restored.keys == archive.keys and restored.index == archive.index
        assert restored.score == archive.score and restored.length == archive.length
        assert restored.seen == archive.seen and restored.chosen == archive.chosen
        for a, b in zip(restored.states + restored.actions, archive.states + archive.actions):
            np.testing.assert_array_equal(a, b)
        assert (restored.done_score, restored.done_length, restored.rooms) == (2.5, 9, {1, 4})
        assert restored.fields == archive.fields


def test_explore_in_a_corridor_finds_cells_with_their_shortest_trajectories():
    game = make_game("tests.go_explore.envs:corridor")
    archive = Archive(game.cell_fields)
    game.reset()
    archive.add(game.cell(), 0.0, 0, game.get_state(), acts(), None)
    rec = explore(game, archive, 0, np.random.default_rng(0), CellFunction("domain"), 30, 1.0)
    archive.apply([rec])
    for key, i in archive.index.items():
        # the stored state is the cell's, and replaying its actions from reset reaches it
        game.set_state(archive.states[i])
        assert game.cell() == key
        game.reset()
        for a in archive.actions[i]:
            game.step(int(a))
        assert game.cell() == key and len(archive.actions[i]) == archive.length[i] >= key[0]
    assert len(archive) > 2


def test_downscaling_keeps_the_most_recent_distinct_frames():
    ds = Downscaling(max_frames=2, first=100)
    a, b, c = (np.full((2, 2), v, np.uint8) for v in (1, 2, 3))
    ds.add([a, b, a, c])
    np.testing.assert_array_equal(ds.sample(), np.stack([b, c]))
    ds.params = (3, 2, 8)
    restored = Downscaling(max_frames=2, first=0)
    restored.load_state_dict(ds.state_dict())
    assert restored.params == (3, 2, 8) and restored.next_at == 100
    np.testing.assert_array_equal(restored.sample(), ds.sample())
