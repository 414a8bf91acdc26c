"""The environments Go-Explore runs in, behind one small interface, ``Game``.

Go-Explore returns to a cell by restoring the state it saved there, so an environment must be able to
save its whole state and restore it exactly. ``make_game`` builds a Game from ``--model.env``:

    ALE/MontezumaRevenge-v5, ALE/Pitfall-v5, ALE/…     AtariGame: the emulator's cloneState/restoreState
    MiniGrid-MultiRoom-N4-S5-v0, MiniGrid-…             MiniGridGame: the positions and states of the
                                                        grid's objects, the agent and the step count
    any other gymnasium id or package.module:callable   ProtocolGame, if the environment (``env.unwrapped``)
                                                        follows the save/restore protocol below

The save/restore protocol for your own environment (a gymnasium.Env with Discrete actions):

    env.get_state() -> np.ndarray      everything that decides what happens next, as one uint8 array
                                       (include any step counter your env truncates episodes with: the
                                       env is stepped through env.unwrapped, without TimeLimit)
    env.set_state(state) -> obs        put the env back in that state; returns the observation there
    env.cell() -> tuple[int, ...]      optional: a domain-knowledge cell (--model.cell domain)

Without ``cell()``, cells are downscaled grey frames of the observation (an image observation) or of
``env.render()`` (render_mode="rgb_array"). Restoring a state and playing the same actions must give the
same observations and rewards: Go-Explore's phase 1 assumes a deterministic environment, and phase 2
adds the stochasticity (sticky actions, no-op starts) the final policy must withstand.

A game's ``step(action, u)`` returns (reward, terminated, truncated); ``u`` holds uniform draws for sticky
actions (one per emulator frame): where u < ``sticky``, the previous action is repeated instead, as ALE
v5 does with repeat_action_probability. With ``u`` None no action sticks (phase 1).
"""
from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium as gym
import numpy as np

from zoo.errors import UserError
from zoo.go_explore.objective import area_resize
from zoo.rl import gym_make, make_env

# RAM addresses (the official code reads the same quantities from the screen; see docs/go_explore.md)
KEY_BITS = 0x2 | 0x4 | 0x8  # Montezuma's inventory bits that are keys (the official KEY_BITS)
ATARI_CELLS = {
    # game: (fields, function of the RAM)
    "montezuma_revenge": (("level", "room", "keys", "x", "y"),
                          lambda ram: (int(ram[57]), int(ram[3]), bin(int(ram[65]) & KEY_BITS).count("1"),
                                       int(ram[42]) // 8, int(ram[43]) // 8)),
    "pitfall": (("room", "x", "y"), lambda ram: (int(ram[1]), int(ram[97]) // 8, int(ram[105]) // 8)),
}
ATARI_ROOM = {"montezuma_revenge": 3, "pitfall": 1}


class Game:
    """What Go-Explore needs of an environment (see the module docstring). Subclasses set the attributes."""

    n_actions: int
    noop_action: int = 0
    frameskip: int = 1           # emulator frames per step (the draws ``u`` a sticky step takes)
    frame_stack: int = 1         # observations the policy sees at once
    obs_scale: float = 1.0       # the policy sees observation · obs_scale
    cell_fields: tuple[str, ...] = ()

    def __init__(self, sticky: float = 0.0) -> None:
        self.sticky = sticky

    def reset(self) -> None:
        """Back to the state the game was built in (``self.initial``, which subclasses save)."""
        self.set_state(self.initial)

    def sticky_action(self, action: int, u: np.ndarray | None) -> int:
        """The action played in a one-frame step: the previous one where u[0] < ``sticky``, else ``action``."""
        a = self.last if u is not None and u[0] < self.sticky else int(action)
        self.last = a
        return a

    def step(self, action: int, u: np.ndarray | None = None) -> tuple[float, bool, bool]:
        raise NotImplementedError

    def get_state(self) -> np.ndarray:
        raise NotImplementedError

    def set_state(self, state: np.ndarray) -> None:
        raise NotImplementedError

    def cell(self) -> tuple[int, ...]:
        raise UserError(f"{type(self).__name__} has no domain-knowledge cell: use --model.cell downscaled")

    def place(self) -> bytes:
        """The current state without its clock (step counters), so that a trajectory that comes back to
        the same situation can be seen to: what loop erasure of the demonstration compares. By default
        the whole state, in which nothing ever repeats where the state counts time (the emulator's)."""
        return self.get_state().tobytes()

    def frame(self) -> np.ndarray:
        """The grey frame [H, W] (uint8) that downscaled cells are made from."""
        raise NotImplementedError

    def observation(self) -> np.ndarray:
        """What the phase-2 policy sees of the current state (one frame of its stack)."""
        raise NotImplementedError

    def room(self) -> int:
        """The room the agent is in, where the game has rooms (reported as rooms found), else −1."""
        return -1

    def render(self) -> np.ndarray:
        """An RGB picture of the current state (for the GIF of the best trajectory)."""
        raise NotImplementedError


def grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, as OpenCV's RGB2GRAY: 0.299 R + 0.587 G + 0.114 B, rounded."""
    return np.rint(rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)


class AtariGame(Game):
    """An ALE game driven frame by frame: ``frameskip`` frames per step, no sticky actions inside ALE
    (phase 1 sets repeat_action_probability = 0; phase 2's stickiness comes from ``u``), the episode ends
    at game over, at ALE's frame limit, and (``end_on_life_loss``) when a life is lost."""

    frameskip = 4
    frame_stack = 4
    obs_scale = 1 / 255

    def __init__(self, env_id: str, sticky: float = 0.0, end_on_life_loss: bool = True, **kwargs: Any) -> None:
        super().__init__(sticky)
        try:
            import ale_py
        except ImportError:
            raise UserError(f"--model.env {env_id} is an Atari game: install ale-py (pip install 'zoo[atari]')") from None
        gym.register_envs(ale_py)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("frameskip", "repeat_action_probability")}
        try:  # Go-Explore drives the emulator frame by frame itself
            self.ale_env = gym_make(env_id, kwargs, frameskip=1, repeat_action_probability=0.0,
                                    obs_type="grayscale").unwrapped
        except gym.error.Error as e:
            raise UserError(f"--model.env {env_id}: unknown to ale-py ({e})") from None
        self.ale_env.reset(seed=0)
        self.ale = self.ale_env.ale
        self.actions = list(self.ale_env._action_set)
        self.n_actions = len(self.actions)
        self.end_on_life_loss = end_on_life_loss
        self.game = self.ale_env._game
        self.cell_fields, self._cell = ATARI_CELLS.get(self.game, ((), None))
        self.last = self.actions[0]
        self.initial = self.get_state()

    def step(self, action: int, u: np.ndarray | None = None) -> tuple[float, bool, bool]:
        lives = self.ale.lives()
        reward = 0.0
        chosen = self.actions[int(action)]
        for f in range(self.frameskip):
            a = self.last if u is not None and u[f] < self.sticky else chosen
            reward += self.ale.act(a)
            self.last = a
        terminated = self.ale.game_over(with_truncation=False) or (self.end_on_life_loss and self.ale.lives() < lives)
        return reward, terminated, self.ale.game_truncated()

    def get_state(self) -> np.ndarray:
        emulator = np.frombuffer(self.ale.cloneState().serialize(), dtype=np.uint8)
        return np.concatenate([emulator, np.array([self.actions.index(self.last)], np.uint8)])

    def set_state(self, state: np.ndarray) -> None:
        import ale_py

        self.ale.restoreState(ale_py.ALEState(np.ascontiguousarray(state[:-1]).tobytes()))
        self.last = self.actions[int(state[-1])]

    def cell(self) -> tuple[int, ...]:
        if self._cell is None:
            raise UserError(f"--model.cell domain: no domain-knowledge cell is written for the Atari game "
                            f"{self.game!r} (only {sorted(ATARI_CELLS)}); use --model.cell downscaled")
        return self._cell(self.ale.getRAM())

    def frame(self) -> np.ndarray:
        return self.ale.getScreenGrayscale()

    def observation(self) -> np.ndarray:
        return area_resize(self.frame(), 84, 84)

    def room(self) -> int:
        return int(self.ale.getRAM()[ATARI_ROOM[self.game]]) if self.game in ATARI_ROOM else -1

    def render(self) -> np.ndarray:
        return self.ale.getScreenRGB()


class MiniGridGame(Game):
    """A MiniGrid layout (the one ``env_seed`` generates). Its state is the agent's position, direction
    and step count, and where each movable or changeable object is (in the grid, carried, or gone) with
    its door state; restoring moves the same objects back, so code that compares objects by identity
    (KeyCorridor's ball) still works. The domain cell is the agent's position, the object it carries and
    whether each door is locked (whether an unlocked door stands open or shut is left out: toggled at
    random, it would multiply the cells by 2 per door without marking progress; docs/go_explore.md
    measures both). The policy sees MiniGrid's own egocentric 7×7 view (object, colour, state codes / 10)
    with one-hot codes of the agent's direction, x, y and carried object: the view generalises across
    places ("the goal is ahead"), the position tells places that look alike apart."""

    noop_action = 6  # "done", which does nothing in these tasks
    MUTABLE = ("door", "key", "ball", "box")

    def __init__(self, env_id: str, env_seed: int = 0, sticky: float = 0.0, **kwargs: Any) -> None:
        super().__init__(sticky)
        import minigrid  # noqa: F401  (registers the MiniGrid ids)
        try:
            self.env = gym_make(env_id, kwargs).unwrapped
        except gym.error.Error as e:
            raise UserError(f"--model.env {env_id}: unknown to minigrid ({e})") from None
        self.env.reset(seed=env_seed)
        self.n_actions = int(self.env.action_space.n)
        grid = self.env.grid
        self.objects = []
        for k, obj in enumerate(grid.grid):
            if obj is not None and obj.type in self.MUTABLE:
                obj.cur_pos = (k % grid.width, k // grid.width)  # some layouts (MultiRoom's doors) leave it unset
                self.objects.append(obj)
                if obj.contains is not None:
                    self.objects.append(obj.contains)
        self.doors = [o for o in self.objects if o.type == "door"]
        self.cell_fields = ("x", "y", "carrying", *(f"door{i}_locked" for i in range(len(self.doors))))
        self.last = 0
        self.initial = self.get_state()

    def step(self, action: int, u: np.ndarray | None = None) -> tuple[float, bool, bool]:
        _, reward, terminated, truncated, _ = self.env.step(self.sticky_action(action, u))
        return float(reward), bool(terminated), bool(truncated)

    def _where(self, obj) -> tuple[int, int, int]:
        """(0, x, y) in the grid, (1, 0, 0) carried, (2, 0, 0) elsewhere (inside a box, or gone)."""
        if self.env.carrying is obj:
            return 1, 0, 0
        pos = obj.cur_pos
        if pos is not None and pos[0] >= 0 and self.env.grid.get(int(pos[0]), int(pos[1])) is obj:
            return 0, int(pos[0]), int(pos[1])
        return 2, 0, 0

    def get_state(self) -> np.ndarray:
        env = self.env
        head = [int(env.agent_pos[0]), int(env.agent_pos[1]), int(env.agent_dir), env.step_count & 255,
                env.step_count >> 8, self.last]
        body = []
        for obj in self.objects:
            body += [*self._where(obj), obj.encode()[2]]
        return np.array(head + body, dtype=np.uint8)

    def set_state(self, state: np.ndarray) -> None:
        env, grid = self.env, self.env.grid
        s = [int(v) for v in state]
        for obj in self.objects:  # take every object out of the grid, then put each where the state says
            where, x, y = self._where(obj)
            if where == 0:
                grid.set(x, y, None)
        env.carrying = None
        for k, obj in enumerate(self.objects):
            where, x, y, code = s[6 + 4 * k: 10 + 4 * k]
            if where == 0:
                grid.set(x, y, obj)
                obj.cur_pos = (x, y)
            elif where == 1:
                env.carrying = obj
                obj.cur_pos = np.array([-1, -1])
            else:
                obj.cur_pos = None
            if obj.type == "door":
                obj.is_open, obj.is_locked = code == 0, code == 2
        env.agent_pos, env.agent_dir = (s[0], s[1]), s[2]
        env.step_count = s[3] + (s[4] << 8)
        self.last = s[5]

    def place(self) -> bytes:
        state = self.get_state()  # without the step count (3, 4) and the last action (5, for sticky actions)
        return np.concatenate([state[:3], state[6:]]).tobytes()

    def cell(self) -> tuple[int, ...]:
        env = self.env
        carrying = next((k + 1 for k, o in enumerate(self.objects) if o is env.carrying), 0)
        return (int(env.agent_pos[0]), int(env.agent_pos[1]), carrying, *(int(d.is_locked) for d in self.doors))

    def frame(self) -> np.ndarray:
        return grey(self.env.get_frame(highlight=False, tile_size=8))

    def observation(self) -> np.ndarray:
        env = self.env
        view = env.gen_obs()["image"].reshape(-1).astype(np.float32) / 10
        codes = np.zeros(4 + env.width + env.height + len(self.objects) + 1, np.float32)
        carrying = next((k + 1 for k, o in enumerate(self.objects) if o is env.carrying), 0)
        for offset in (env.agent_dir, 4 + env.agent_pos[0], 4 + env.width + env.agent_pos[1],
                       4 + env.width + env.height + carrying):
            codes[offset] = 1.0
        return np.concatenate([view, codes])

    def render(self) -> np.ndarray:
        return self.env.get_frame(highlight=False, tile_size=16)


class ProtocolGame(Game):
    """A user's gymnasium environment that follows the save/restore protocol (module docstring)."""

    def __init__(self, env: gym.Env, name: str, env_seed: int = 0, sticky: float = 0.0) -> None:
        super().__init__(sticky)
        self.env, self.name = env.unwrapped, name
        missing = [m for m in ("get_state", "set_state") if not callable(getattr(self.env, m, None))]
        if missing:
            raise UserError(f"--model.env {name}: {type(self.env).__name__} cannot save and restore its state: it "
                            f"lacks {' and '.join(m + '()' for m in missing)}, which Go-Explore needs to return to a "
                            "cell. Implement get_state() -> np.ndarray (uint8) and set_state(state) -> observation "
                            "(docs/go_explore.md, 'Your own environment')")
        if not isinstance(self.env.action_space, gym.spaces.Discrete):
            raise UserError(f"--model.env {name}: Go-Explore explores with random discrete actions; the action "
                            f"space is {self.env.action_space}")
        self.n_actions = int(self.env.action_space.n)
        self.obs, _ = self.env.reset(seed=env_seed)
        self.has_cell = callable(getattr(self.env, "cell", None))
        if self.has_cell:
            self.cell_fields = tuple(f"c{i}" for i in range(len(self.env.cell())))
        self.last = 0
        self.initial = self.get_state()

    def step(self, action: int, u: np.ndarray | None = None) -> tuple[float, bool, bool]:
        self.obs, reward, terminated, truncated, _ = self.env.step(self.sticky_action(action, u))
        return float(reward), bool(terminated), bool(truncated)

    def get_state(self) -> np.ndarray:
        state = np.asarray(self.env.get_state())
        if state.dtype != np.uint8 or state.ndim != 1:
            raise UserError(f"--model.env {self.name}: get_state() must return a 1-D uint8 array (bytes of the "
                            f"state), got {state.dtype} of shape {state.shape}")
        return np.concatenate([state, np.array([self.last], np.uint8)])

    def set_state(self, state: np.ndarray) -> None:
        self.obs = self.env.set_state(state[:-1].copy())
        self.last = int(state[-1])

    def cell(self) -> tuple[int, ...]:
        if not self.has_cell:
            raise UserError(f"--model.cell domain: {type(self.env).__name__} has no cell() method; use "
                            "--model.cell downscaled, or give the env a cell() -> tuple[int, ...]")
        return tuple(int(v) for v in self.env.cell())

    def frame(self) -> np.ndarray:
        obs = np.asarray(self.obs)
        if obs.dtype == np.uint8 and (obs.ndim == 2 or (obs.ndim == 3 and obs.shape[-1] in (1, 3, 4))):
            return obs if obs.ndim == 2 else grey(obs) if obs.shape[-1] >= 3 else obs[..., 0]
        return grey(self.render())

    def observation(self) -> np.ndarray:
        return np.asarray(self.obs).reshape(-1)

    def render(self) -> np.ndarray:
        frame = self.env.render()
        if frame is None:
            raise UserError(f"--model.env {self.name}: render() returned nothing; build the env with "
                            "render_mode='rgb_array' (--model.env_kwargs '{render_mode: rgb_array}')")
        return np.asarray(frame)


def make_game(env: str, env_kwargs: dict[str, Any] | None = None, env_seed: int = 0, sticky: float = 0.0,
              end_on_life_loss: bool = True) -> Game:
    """The Game for ``--model.env`` (see the module docstring); unknown ids fail naming the flag."""
    kwargs = dict(env_kwargs or {})
    if env.startswith("ALE/"):
        return AtariGame(env, sticky=sticky, end_on_life_loss=end_on_life_loss, **kwargs)
    if env.startswith("MiniGrid-") or env.startswith("BabyAI-"):
        if importlib.util.find_spec("minigrid") is None:
            raise UserError(f"--model.env {env} is a MiniGrid task: install minigrid (pip install 'zoo[go_explore]')")
        return MiniGridGame(env, env_seed=env_seed, sticky=sticky, **kwargs)
    try:
        made = make_env(env, **kwargs)
    except ValueError as e:  # a message that names its flag already is kept as it is
        raise UserError(str(e) if str(e).startswith("--model.") else f"--model.env {env}: {e}") from None
    return ProtocolGame(made, env, env_seed=env_seed, sticky=sticky)
