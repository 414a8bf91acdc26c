"""The games: restoring a state and replaying the same actions gives the same observations and score,
cells are what they say, and an environment that cannot save its state is refused clearly."""
import numpy as np
import pytest

from zoo.errors import UserError
from zoo.go_explore.archive import CellFunction
from zoo.go_explore.data import MiniGridGame, make_game
from zoo.go_explore.objective import downscale, half_frame
from zoo.go_explore.robustify import shorten

pytest.importorskip("minigrid")
ENVS = ["MiniGrid-MultiRoom-N4-S5-v1", "MiniGrid-KeyCorridorS4R3-v0", "tests.go_explore.envs:corridor"]
try:
    import ale_py  # noqa: F401

    ENVS.append("ALE/MontezumaRevenge-v5")
except ImportError:
    pass


def play(game, actions):
    out = []
    for a in actions:
        reward, terminated, truncated = game.step(int(a))
        out.append((reward, terminated, truncated, game.cell() if game.cell_fields else None,
                    game.observation().copy()))
        if terminated or truncated:
            break
    return out


@pytest.mark.parametrize("env", ENVS)
def test_restore_then_replay_is_deterministic(env):
    game = make_game(env, env_seed=3)
    rng = np.random.default_rng(0)
    actions = rng.integers(game.n_actions, size=400)
    game.reset()
    play(game, actions[:60])
    state = game.get_state()
    first = play(game, actions[60:])
    play(game, rng.integers(game.n_actions, size=50))  # wander off, then come back
    game.set_state(state)
    second = play(game, actions[60:])
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        assert a[:4] == b[:4]
        np.testing.assert_array_equal(a[4], b[4])
    # reset is the state the layout starts in
    game.reset()
    assert play(game, actions[:60])[-1][3] == play(make_and_reset(env), actions[:60])[-1][3]


def make_and_reset(env):
    game = make_game(env, env_seed=3)
    game.reset()
    return game


def test_minigrid_restores_the_same_objects_so_keycorridor_still_pays():
    """KeyCorridor pays for picking up *its* ball (compared by identity): a restored state must hold it."""
    game = MiniGridGame("MiniGrid-KeyCorridorS4R3-v0", env_seed=0)
    ball = game.env.obj
    state = game.get_state()
    game.set_state(state)
    assert game.env.obj is ball and any(o is ball for o in game.env.grid.grid)


def test_minigrid_cell_is_position_carried_object_and_locked_doors():
    game = MiniGridGame("MiniGrid-KeyCorridorS4R3-v0", env_seed=0)
    x, y, carrying, *doors = game.cell()
    assert (x, y) == tuple(game.env.agent_pos) and carrying == 0
    assert game.cell_fields[:3] == ("x", "y", "carrying") and len(doors) == len(game.doors) > 1
    assert doors == [int(d.is_locked) for d in game.doors] and sum(doors) == 1  # one locked door, the ball's
    # carry the key and unlock that door: the cell says so
    locked = next(d for d in game.doors if d.is_locked)
    key = next(k for k, o in enumerate(game.objects) if o.type == "key")
    game.env.carrying = game.objects[key]
    assert game.cell()[2] == key + 1
    dx, dy = locked.cur_pos
    for d, (ox, oy) in enumerate(((-1, 0), (0, -1), (1, 0), (0, 1))):  # stand before the door, facing it
        if game.env.grid.get(dx + ox, dy + oy) is None:
            game.env.agent_pos, game.env.agent_dir = (dx + ox, dy + oy), d
            break
    game.step(5)  # toggle: the key unlocks (and opens) the door
    assert not locked.is_locked and sum(game.cell()[3:]) == 0
    game.step(5)  # shut it again: an unlocked door shut or open is the same cell
    assert not locked.is_open and sum(game.cell()[3:]) == 0


@pytest.mark.skipif("ALE/MontezumaRevenge-v5" not in ENVS, reason="ale-py is not installed")
def test_montezuma_domain_cell_reads_the_ram():
    game = make_game("ALE/MontezumaRevenge-v5")
    game.reset()
    # the start of the game: level 0, room 1, no keys, RAM x = 77, y = 235 on the 8-unit grid
    assert game.cell_fields == ("level", "room", "keys", "x", "y")
    assert game.cell() == (0, 1, 0, 77 // 8, 235 // 8)
    assert game.room() == 1 and game.n_actions == 18


def test_the_cell_function_on_a_known_frame():
    class Frame:
        def frame(self):
            return np.kron(np.array([[0, 100], [200, 255]], np.uint8), np.ones((4, 4), np.uint8))

    cells = CellFunction("downscaled", (2, 2, 8))
    key, half = cells(Frame())
    np.testing.assert_array_equal(half, np.kron(np.array([[0, 100], [200, 255]], np.uint8), np.ones((2, 2), np.uint8)))
    assert key == bytes([0, 3, 6, 8])
    assert key == downscale(half_frame(Frame().frame()), 2, 2, 8).tobytes()
    assert CellFunction("downscaled")(Frame())[0] == b""  # before parameters are chosen: one cell


def test_an_env_that_cannot_save_its_state_is_refused_clearly():
    with pytest.raises(UserError, match="cannot save and restore its state: it lacks get_state\\(\\) and set_state\\(\\)"):
        make_game("tests.go_explore.envs:no_restore")


def test_unknown_ids_are_refused_naming_the_flag():
    with pytest.raises(UserError, match="--model.env NoSuchEnv-v0"):
        make_game("NoSuchEnv-v0")
    with pytest.raises(UserError, match="--model.env MiniGrid-NoSuchRoom-v0"):
        make_game("MiniGrid-NoSuchRoom-v0")
    if "ALE/MontezumaRevenge-v5" in ENVS:
        with pytest.raises(UserError, match="--model.env ALE/NoSuchGame-v5"):
            make_game("ALE/NoSuchGame-v5")
        with pytest.raises(UserError, match="no domain-knowledge cell"):
            make_game("ALE/Pong-v5").cell()


def test_shorten_cuts_a_loop_and_arrives_sooner_with_a_higher_score():
    """Empty-5x5: forward, forward, right, forward, forward reaches the goal. Played with a turn left and
    back, and a full turn, inserted, the loops go and the goal's reward (1 − 0.9 t/T) is higher."""
    game = make_game("MiniGrid-Empty-5x5-v0")
    direct = np.array([2, 2, 1, 2, 2])
    wandering = np.array([2, 0, 1, 2, 0, 0, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(shorten(game, wandering), direct)
    game.reset()
    assert sum(game.step(int(a))[0] for a in direct) > 0
    np.testing.assert_array_equal(shorten(game, direct), direct)  # nothing to cut


@pytest.mark.parametrize("env", ["MiniGrid-MultiRoom-N4-S5-v1", "MiniGrid-KeyCorridorS4R3-v0"])
def test_shorten_ends_in_the_same_place(env):
    game = make_game(env, env_seed=1)
    rng = np.random.default_rng(1)
    actions = rng.integers(3, size=120)  # turns and moves, so the walk comes back on itself
    short = shorten(game, actions)
    assert len(short) < len(actions)
    ends = []
    for played in (actions, short):
        game.reset()
        for a in played:
            game.step(int(a))
        ends.append(game.place())
    assert ends[0] == ends[1]


def test_a_game_whose_state_counts_time_is_not_shortened():
    game = make_game("tests.go_explore.envs:corridor")
    actions = np.array([1, 0, 1, 0, 1, 1])  # the state holds the step count: no state repeats
    np.testing.assert_array_equal(shorten(game, actions), actions)
