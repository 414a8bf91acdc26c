"""Environments that go wrong, for the one-line error tests."""
import gymnasium as gym
import numpy as np


class NaNReward(gym.Env):
    """A 2-D point whose reward turns NaN at step 3."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), float("nan") if self.t >= 3 else 1.0, False, self.t >= 10, {}


def crashing_factory():
    return {}["no such key"]
