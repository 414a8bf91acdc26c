"""Small gymnasium environments for MDPO's bad-input tests."""
import gymnasium as gym
import numpy as np


class NaNAfter(gym.Env):
    """A 2-D point whose observation turns NaN at step 3."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(2, np.nan if self.t >= 3 else 0.1 * self.t, np.float32)
        return obs, 1.0, False, self.t >= 10, {}


class MultiDiscreteActions(NaNAfter):
    action_space = gym.spaces.MultiDiscrete([2, 3])


def not_an_env():
    return object()


class Painted(NaNAfter):
    """Renders an 8×8 RGB frame whose colour follows the step, without pygame."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 1.0, False, self.t >= 6, {}

    def render(self):
        return np.full((8, 8, 3), 40 * self.t, np.uint8)
