"""Reinforcement-learning pieces shared by the zoo's RL methods (MDPO, Go-Explore, Deep GA).

    make_env("CartPole-v1")                  a gymnasium id, or "package.module:callable" for your own
    pool = EnvPool(lambda: make_env(id), n)  n copies stepped in lockstep, seeded from a torch.Generator
    RunningNorm(shape)                       observation normalisation whose statistics are module buffers
    gae(...)                                 in zoo.mdpo.objective; rollouts are collected with EnvPool
    evaluate(act, make, n_episodes)          mean return of a policy on fixed seeds
    record_gif(act, make, path)              a short GIF of a policy (imageio, or Pillow)

EnvPool keeps the whole state of its environments in a few tensors (each running episode's seed and
its actions so far): loading them replays the running episodes, so a training run resumed from a
checkpoint continues every episode exactly where the unbroken run would be, and the checkpoint stays
free of pickles. This relies on the environment being deterministic given its reset seed and the
actions, as gymnasium's classic-control, Box2D, MuJoCo and ALE environments are.
"""
from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from zoo.errors import UserError

ATARI_PREFIXES = ("ALE/",)


def make_env(env_id: str, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """A gymnasium environment from a registered id or a ``package.module:callable`` entry point.

    Atari ids (``ALE/Pong-v5``) get the usual preprocessing (no frame skip inside ALE, then
    AtariPreprocessing: 84×84 grey frames, frame skip 4, noop starts; and a stack of 4 frames).
    """
    if ":" in env_id and not env_id.startswith(ATARI_PREFIXES):
        module_name, _, name = env_id.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as e:
            raise UserError(f"env {env_id!r}: cannot import the entry point ({e})") from e
        try:
            env = factory(render_mode=render_mode, **kwargs) if render_mode else factory(**kwargs)
        except TypeError as e:
            raise unknown_keyword(e, env_id, kwargs, factory) or UserError(
                f"env {env_id!r}: the entry point raised TypeError: {e} ({_where(e)})") from e
        except Exception as e:  # noqa: BLE001 - the user's code failed: say where, in one line
            raise UserError(f"env {env_id!r}: the entry point raised {type(e).__name__}: {e} "
                            f"({_where(e)})") from e
        if not isinstance(env, gym.Env):
            raise UserError(f"env {env_id!r}: the entry point returned {type(env).__name__}, not a gymnasium.Env")
        return env
    atari = env_id.startswith(ATARI_PREFIXES)
    if atari:
        try:
            import ale_py
        except ImportError as e:
            raise UserError(f"env {env_id!r} is an Atari game: install ale-py (pip install 'zoo[atari]')") from e
        gym.register_envs(ale_py)
        kwargs.setdefault("frameskip", 1)
    try:
        env = gym_make(env_id, kwargs, **({"render_mode": render_mode} if render_mode else {}))
    except gym.error.DependencyNotInstalled as e:
        raise UserError(f"env {env_id!r} needs a package that is not installed ({e}); MuJoCo tasks: "
                         "pip install 'zoo[mujoco]', Box2D tasks: pip install box2d==2.3.10") from e
    except gym.error.Error as e:
        raise UserError(f"env {env_id!r}: unknown to gymnasium ({e}); give a registered id such as CartPole-v1 "
                         "or 'package.module:callable' returning a gymnasium.Env") from e
    if atari:
        env = gym.wrappers.AtariPreprocessing(env, frame_skip=4, screen_size=84, grayscale_obs=True)
        env = gym.wrappers.FrameStackObservation(env, 4)
    return env


def gym_make(env_id: str, kwargs: dict[str, Any], **fixed: Any) -> gym.Env:
    """``gymnasium.make(env_id, **kwargs, **fixed)`` (``fixed`` wins), where a keyword of ``kwargs`` (the
    user's ``--model.env_kwargs``) that the environment does not take is a one-line error naming both."""
    try:
        return gym.make(env_id, **{**kwargs, **fixed})
    except TypeError as e:
        creator = None
        try:
            entry_point = gym.spec(env_id).entry_point
            creator = gym.envs.registration.load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
        except Exception:  # noqa: BLE001 - only used to list the keywords the environment takes
            pass
        error = unknown_keyword(e, env_id, kwargs, creator)
        if error is None:
            raise
        raise error from e


UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '(\w+)'")


def unknown_keyword(e: TypeError, env_id: str, kwargs: dict[str, Any], creator: Any = None) -> UserError | None:
    """The error for a TypeError that says a keyword of the user's ``kwargs`` is not one the environment
    takes (None for any other TypeError); it lists the keywords ``creator`` takes where its signature says."""
    match = UNEXPECTED_KEYWORD.search(str(e))
    if match is None or match.group(1) not in kwargs:
        return None
    takes = ""
    try:
        params = inspect.signature(creator).parameters.values() if creator is not None else []
        names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if names and not any(p.kind == p.VAR_KEYWORD for p in params):
            takes = f"; it takes {', '.join(names)}"
    except (TypeError, ValueError):  # no signature to read (a builtin)
        pass
    return UserError(f"--model.env_kwargs: {env_id} takes no keyword {match.group(1)!r}{takes}")


def _where(e: BaseException) -> str:
    """file:line of the innermost frame of an exception's traceback."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "unknown place"


def random_seed(generator: torch.Generator) -> int:
    return int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))


class EnvPool:
    """``n`` copies of one environment stepped in lockstep, resetting themselves when an episode ends.

    ``step`` returns the observations to act on next (a new episode's first one where an episode has
    just ended), and keeps the final observation of every ended episode in ``final_obs`` for
    bootstrapping. Finished episodes' returns and lengths collect in ``finished`` until read.
    """

    def __init__(self, make: Callable[[], gym.Env], n: int, name: str = "env") -> None:
        if n < 1:
            raise UserError(f"need at least one environment, got {n}")
        self.name = name
        self.envs = [make() for _ in range(n)]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.seeds = [0] * n
        self.actions: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.returns = np.zeros(n)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.obs: np.ndarray | None = None
        self.finished: list[tuple[float, int]] = []

    def __len__(self) -> int:
        return len(self.envs)

    def _check(self, obs: Any, i: int) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        if not np.isfinite(obs).all():
            raise UserError(f"env {self.name!r}: observation with NaN or ±inf (copy {i}, episode seed "
                             f"{self.seeds[i]}, step {self.lengths[i]}): {obs.ravel()[:8]}")
        return obs

    def _reset_one(self, i: int, seed: int) -> np.ndarray:
        self.seeds[i], self.actions[i] = seed, []
        self.returns[i], self.lengths[i] = 0.0, 0
        obs, _ = self.envs[i].reset(seed=seed)
        return self._check(obs, i)

    def reset(self, generator: torch.Generator) -> np.ndarray:
        self.obs = np.stack([self._reset_one(i, random_seed(generator)) for i in range(len(self))])
        return self.obs

    def step(self, actions: np.ndarray, generator: torch.Generator):
        """Step every copy; returns (next obs, rewards, terminated, truncated, final obs)."""
        if self.obs is None:
            self.reset(generator)
        n = len(self)
        rewards = np.zeros(n)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        final_obs = np.empty_like(self.obs)
        next_obs = np.empty_like(self.obs)
        for i, env in enumerate(self.envs):
            obs, r, term, trunc, _ = env.step(actions[i])
            if not np.isfinite(r):
                raise UserError(f"env {self.name!r}: reward {r} (copy {i}, episode seed {self.seeds[i]}, step "
                                f"{self.lengths[i]}); the environment must return finite rewards")
            self.actions[i].append(np.array(actions[i], copy=True))
            rewards[i], terminated[i], truncated[i] = r, term, trunc
            self.returns[i] += r
            self.lengths[i] += 1
            final_obs[i] = self._check(obs, i)
            if term or trunc:
                self.finished.append((float(self.returns[i]), int(self.lengths[i])))
                next_obs[i] = self._reset_one(i, random_seed(generator))
            else:
                next_obs[i] = final_obs[i]
        self.obs = next_obs
        return next_obs, rewards, terminated, truncated, final_obs

    def pop_finished(self) -> list[tuple[float, int]]:
        out, self.finished = self.finished, []
        return out

    # -- the state a checkpoint keeps ----------------------------------------------------------

    def state_dict(self) -> dict[str, Tensor]:
        if self.obs is None:
            return {}
        longest = max(len(a) for a in self.actions)
        shape = np.asarray(self.action_space.sample()).shape
        actions = np.zeros((len(self), longest, *shape), dtype=np.float64)
        for i, a in enumerate(self.actions):
            if a:
                actions[i, : len(a)] = np.stack(a)
        return {"seeds": torch.tensor(self.seeds, dtype=torch.long),
                "lengths": torch.tensor([len(a) for a in self.actions], dtype=torch.long),
                "actions": torch.from_numpy(actions)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Replay each running episode from its seed and actions."""
        if not state:
            self.obs = None
            return
        if len(state["seeds"]) != len(self):
            raise UserError(f"the checkpoint holds {len(state['seeds'])} environments, this run has {len(self)}")
        dtype = self.action_space.dtype if isinstance(self.action_space, gym.spaces.Box) else np.int64
        obs = []
        for i in range(len(self)):
            o = self._reset_one(i, int(state["seeds"][i]))
            for a in state["actions"][i, : int(state["lengths"][i])].numpy():
                a = a.astype(dtype)
                o, r, term, trunc, _ = self.envs[i].step(a if a.shape else a.item())
                self.actions[i].append(a)
                self.returns[i] += r
                self.lengths[i] += 1
                o = self._check(o, i)
            obs.append(o)
        self.obs = np.stack(obs)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def collect_rollout(pool: EnvPool, act: Callable[[Tensor], tuple[np.ndarray, dict[str, Tensor]]], n_steps: int,
                    generator: torch.Generator, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    """``n_steps`` steps of every environment of ``pool`` under ``act``, stacked into [T, N, ...] tensors.

    ``act(obs)`` maps a float tensor of observations [N, ...] to the actions for ``env.step`` (an array
    [N, ...]) and a dict of tensors to keep (log-probabilities, pre-squash actions, ...). Returns
    obs, next_obs (the state each step reached: an ended episode's final state), rewards,
    terminated, truncated, and the kept tensors.
    """
    if pool.obs is None:
        pool.reset(generator)
    out: dict[str, list[Tensor]] = {"obs": [], "next_obs": [], "rewards": [], "terminated": [], "truncated": []}
    for _ in range(n_steps):
        obs = torch.as_tensor(pool.obs, device=device)
        actions, keep = act(obs)
        _, rewards, terminated, truncated, final_obs = pool.step(actions, generator)
        out["obs"].append(obs)
        out["next_obs"].append(torch.as_tensor(final_obs, device=device))
        out["rewards"].append(torch.as_tensor(rewards, dtype=torch.float32, device=device))
        out["terminated"].append(torch.as_tensor(terminated, device=device))
        out["truncated"].append(torch.as_tensor(truncated, device=device))
        for k, v in keep.items():
            out.setdefault(k, []).append(v)
    return {k: torch.stack(v) for k, v in out.items()}


class ReplayBuffer:
    """A ring buffer of transitions (obs, action, reward, next_obs, terminated) held as tensors, so a
    checkpoint saves it as it is and a resumed run samples the very same batches."""

    KEYS = ("obs", "actions", "rewards", "next_obs", "terminated")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise UserError(f"the replay buffer needs a capacity ≥ 1, got {capacity}")
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.data: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return self.size

    def add(self, **batch: Tensor) -> None:
        """Append a batch of transitions (each tensor [n, ...]); the oldest are overwritten when full."""
        n = len(batch["obs"])
        device = batch["obs"].device
        if self.data and self.data["obs"].device != device:  # loaded from a checkpoint onto another device
            self.data = {k: v.to(device) for k, v in self.data.items()}
        if not self.data:
            self.data = {k: torch.zeros((self.capacity, *batch[k].shape[1:]), dtype=batch[k].dtype,
                                        device=batch[k].device) for k in self.KEYS}
        idx = (self.pos + torch.arange(n, device=batch["obs"].device)) % self.capacity
        for k in self.KEYS:
            self.data[k][idx] = batch[k].to(self.data[k].dtype)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        idx = torch.randint(self.size, (batch_size,), generator=generator, device=generator.device)
        return {k: v[idx.to(v.device)] for k, v in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        # clone: a slice would drag the whole preallocated storage into the checkpoint
        return {"pos": self.pos, "size": self.size, **{k: v[: self.size].cpu().clone() for k, v in self.data.items()}}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.pos, self.size = int(state["pos"]), int(state["size"])
        self.data = {}
        if self.size:
            self.data = {k: torch.zeros((self.capacity, *state[k].shape[1:]), dtype=state[k].dtype, device=device)
                         for k in self.KEYS}
            for k in self.KEYS:
                self.data[k][: self.size] = state[k].to(device)


class RunningNorm(nn.Module):
    """Observation normalisation (x − μ) / σ, clipped to ±clip, with running μ, σ² kept as buffers so
    that a saved policy normalises as it did in training. ``update`` merges a batch's statistics."""

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, enabled: bool = True) -> None:
        super().__init__()
        self.clip, self.enabled = clip, enabled
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        if not self.enabled:
            return
        x = x.detach().double().reshape(-1, *self.mean.shape)
        n = x.shape[0]
        mean, var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = mean - self.mean
        self.var.copy_((self.var * self.count + var * n + delta.pow(2) * self.count * n / total) / total)
        self.mean.add_(delta * n / total)
        self.count.copy_(total)

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        z = (x - self.mean.to(x.dtype)) / torch.sqrt(self.var.to(x.dtype) + 1e-8)
        return z.clamp(-self.clip, self.clip)


def gae(rewards: Tensor, values: Tensor, next_values: Tensor, terminated: Tensor, ended: Tensor,
        gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    r"""Generalised advantage estimation over a rollout of T steps of N environments ([T, N] each).

        δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t)
        A_t = δ_t + γ λ (1 − ended_t) A_{t+1}

    ``next_values[t]`` is V of the state reached by step t (the final state of the episode when it
    ended there, so a time-limit truncation bootstraps from it); ``ended`` = terminated or truncated
    cuts the recursion between episodes. Returns (advantages, value targets A + V).
    """
    not_term, not_end = 1.0 - terminated.float(), 1.0 - ended.float()
    deltas = rewards + gamma * not_term * next_values - values
    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * not_end[t] * running
        advantages[t] = running
    return advantages, advantages + values


def evaluate(act: Callable[[np.ndarray], np.ndarray], make: Callable[[], gym.Env], n_episodes: int = 10,
             seed: int = 1_000_000, max_steps: int = 100_000) -> np.ndarray:
    """Returns of ``n_episodes`` episodes (run side by side, seeds seed, seed+1, …) of ``act``, a
    function from a batch of observations to a batch of actions."""
    envs = [make() for _ in range(n_episodes)]
    obs = np.stack([np.asarray(e.reset(seed=seed + i)[0], dtype=np.float32) for i, e in enumerate(envs)])
    returns, alive = np.zeros(n_episodes), np.ones(n_episodes, dtype=bool)
    for _ in range(max_steps):
        actions = act(obs)
        for i in np.flatnonzero(alive):
            o, r, term, trunc, _ = envs[i].step(actions[i])
            returns[i] += r
            obs[i] = o
            alive[i] = not (term or trunc)
        if not alive.any():
            break
    for e in envs:
        e.close()
    return returns


def record_gif(act: Callable[[np.ndarray], np.ndarray], make: Callable[..., gym.Env], path: str | Path,
               seed: int = 0, max_frames: int = 300, fps: int = 30) -> Path:
    """Write a GIF of one episode of ``act``; ``make(render_mode="rgb_array")`` must build the env."""
    env = make(render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    frames = []
    try:
        frames.append(env.render())
        for _ in range(max_frames - 1):
            obs, _, term, trunc, _ = env.step(act(np.asarray(obs, dtype=np.float32)[None])[0])
            frames.append(env.render())
            if term or trunc:
                break
    except gym.error.DependencyNotInstalled as e:
        raise RuntimeError(f"rendering needs a package that is not installed ({e}); classic control: pip install pygame") from e
    finally:
        env.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import imageio.v2 as imageio

        imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    except ImportError:
        try:
            from PIL import Image
        except ImportError as e:
            raise RuntimeError("writing a GIF needs imageio or Pillow: pip install imageio") from e
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
