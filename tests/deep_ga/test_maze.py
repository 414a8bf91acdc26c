"""The hard maze: sensors against a hand computation, walls that stop the robot, the reward at the end."""
import gymnasium as gym
import numpy as np

import zoo.deep_ga  # noqa: F401  (registers zoo/HardMaze-v0)
from zoo.deep_ga.data import GOAL, START, HardMaze


def test_sensors_at_the_start_by_hand():
    obs, info = HardMaze().reset(seed=0)
    assert obs.shape == (11,) and obs[0] == 1.0
    # the 90° rangefinder points down (+y) from (36, 184) to the wall (7, 202)-(195, 198): y = 202 − 4·29/188
    np.testing.assert_allclose(obs[1 + 4], (202 - 4 * 29 / 188 - 184) / 100, rtol=1e-5)
    # the goal (31, 20) lies straight up (−y), i.e. at 270° from the heading 0°: the fourth radar slice
    assert obs[7:].tolist() == [0.0, 0.0, 0.0, 1.0]
    np.testing.assert_allclose(info["bc"], START)
    assert np.isclose(info["distance"], np.hypot(START[0] - GOAL[0], START[1] - GOAL[1]))


def test_walls_stop_the_robot_and_the_reward_comes_at_the_end():
    env = gym.make("zoo/HardMaze-v0", steps=120)
    env.reset(seed=0)
    total, ys = 0.0, []
    for t in range(120):  # full speed ahead with no turn: east, into the maze's inner wall
        obs, reward, term, trunc, info = env.step(np.array([0.0, 0.5], dtype=np.float32))
        total += reward
        ys.append(info["bc"][1])
        assert not term and (reward == 0.0) == (t < 119) and trunc == (t == 119)
    x, y = info["bc"]
    assert 36 < x < 195 and np.allclose(ys, 184.0)  # moved east, never through the walls
    assert total == -info["distance"]
