"""Small user environments for the save/restore protocol tests."""
import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """A corridor of ``length`` squares: actions 0 (left), 1 (right), 2 (stay). Reaching the right end
    pays 1 and ends the episode; 50 steps truncate it. Follows Go-Explore's save/restore protocol."""

    def __init__(self, length: int = 12) -> None:
        self.length = length
        self.action_space = gym.spaces.Discrete(3)
        self.observation_space = gym.spaces.Box(0, length, (2,), np.float32)
        self.pos, self.t = 0, 0

    def _obs(self):
        return np.array([self.pos, self.t], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = 0, 0
        return self._obs(), {}

    def step(self, action):
        self.pos = min(max(self.pos + (-1, 1, 0)[int(action)], 0), self.length - 1)
        self.t += 1
        at_end = self.pos == self.length - 1
        return self._obs(), float(at_end), at_end, self.t >= 50, {}

    def get_state(self) -> np.ndarray:
        return np.array([self.pos, self.t], np.uint8)

    def set_state(self, state):
        self.pos, self.t = int(state[0]), int(state[1])
        return self._obs()

    def cell(self):
        return (self.pos,)


class NoRestore(Corridor):
    """A corridor that cannot save its state."""

    get_state = None
    set_state = None


def corridor(**kwargs):
    return Corridor(**kwargs)


def no_restore(**kwargs):
    return NoRestore(**kwargs)
