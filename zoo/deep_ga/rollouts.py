"""Vectorised evaluation: many individuals' episodes side by side, each environment under its own θ.

``Evaluator.run(jobs, theta_of)`` plays one episode per job (an individual and an episode seed) on
``n_envs`` environments stepped in lockstep. Each environment slot holds one row of a [n_envs, P]
weight buffer; one batched forward pass (nets.FlatPolicy.forward_flat) acts for every slot, and a
slot whose episode ends takes the next job, so the environments stay busy until the queue is empty.
Weights are built only when a job starts (θ of a seed chain), never all at once.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from zoo.deep_ga.nets import FlatPolicy
from zoo.errors import UserError


class Evaluator:
    def __init__(self, make: Callable[[], gym.Env], n_envs: int, net: FlatPolicy, max_episode_steps: int | None = None,
                 name: str = "env") -> None:
        self.make, self.net, self.name = make, net, name
        self.envs: list[gym.Env] = [make()]
        self.n_envs, self.max_episode_steps = n_envs, max_episode_steps
        space = self.envs[0].action_space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if not self.discrete:
            self.low = torch.as_tensor(space.low, dtype=torch.float32).flatten()
            self.high = torch.as_tensor(space.high, dtype=torch.float32).flatten()
            self.act_shape = space.shape

    def to_actions(self, out: Tensor) -> np.ndarray:
        """Network outputs [B, n_out] -> env actions: argmax for Discrete, clipped to the box for Box."""
        if self.discrete:
            return out.argmax(-1).cpu().numpy()
        return torch.minimum(torch.maximum(out.float().cpu(), self.low), self.high).numpy().reshape(-1, *self.act_shape)

    def _observe(self, obs: Any, where: str) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.dtype != np.uint8:
            obs = obs.astype(np.float32)
            if not np.isfinite(obs).all():
                raise UserError(f"env {self.name!r}: observation with NaN or ±inf ({where})")
        return obs

    @staticmethod
    def behaviour(info: dict, obs: np.ndarray) -> np.ndarray:
        """b(θ): the env's ``info["bc"]`` at the episode's end (the maze: the final position), else
        the final observation."""
        bc = info.get("bc")
        return np.asarray(bc if bc is not None else obs, dtype=np.float64).ravel()

    @torch.no_grad()
    def run(self, jobs: Sequence[tuple[Any, int]], theta_of: Callable[[Any], Tensor],
            device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Play ``jobs`` [(individual, episode seed)]; returns (returns, lengths, behaviours) per job."""
        J = len(jobs)
        returns, lengths = np.zeros(J), np.zeros(J, dtype=np.int64)
        behaviours: list[np.ndarray] = [np.zeros(0)] * J
        if J == 0:
            return returns, lengths, behaviours
        n = min(self.n_envs, J)
        while len(self.envs) < n:
            self.envs.append(self.make())
        envs = self.envs[:n]  # slot i plays env i; slots are swapped when the queue runs dry
        thetas = torch.empty((n, self.net.num_params), device=device)
        job_of = [-1] * n
        obs: list[np.ndarray] = [np.zeros(0)] * n
        next_job = 0

        def start(slot: int) -> None:
            nonlocal next_job
            j = next_job
            next_job += 1
            job_of[slot] = j
            thetas[slot].copy_(theta_of(jobs[j][0]))
            o, _ = envs[slot].reset(seed=int(jobs[j][1]))
            obs[slot] = self._observe(o, f"job {j} reset")

        for slot in range(n):
            start(slot)
        active = n
        while active:
            x = torch.as_tensor(np.stack(obs[:active]), device=device)
            out = self.net.forward_flat(thetas[:active], x.unsqueeze(1)).squeeze(1)
            actions = self.to_actions(out)
            i = 0
            while i < active:
                j = job_of[i]
                o, r, term, trunc, info = envs[i].step(actions[i])
                if not np.isfinite(r):  # a NaN would rank every individual at random, silently
                    raise UserError(f"env {self.name!r}: reward {r} (episode seed {int(jobs[j][1])}, step "
                                    f"{lengths[j] + 1}); the environment must return finite rewards")
                returns[j] += r
                lengths[j] += 1
                obs[i] = self._observe(o, f"job {j} step {lengths[j]}")
                if self.max_episode_steps is not None and lengths[j] >= self.max_episode_steps:
                    trunc = True
                if term or trunc:
                    behaviours[j] = self.behaviour(info, obs[i])
                    if not np.isfinite(behaviours[j]).all():
                        raise UserError(f"env {self.name!r}: behaviour (info['bc']) with NaN or ±inf at the end of the "
                                        f"episode of seed {int(jobs[j][1])}: {behaviours[j][:8]}")
                    if next_job < J:
                        start(i)
                    else:  # move the last active slot here, so that slots [0, active) stay the busy ones
                        active -= 1
                        if i != active:
                            envs[i], envs[active] = envs[active], envs[i]
                            job_of[i], obs[i] = job_of[active], obs[active]
                            thetas[i].copy_(thetas[active])
                            actions[i] = actions[active]
                            job_of[active] = -1
                            continue  # step the slot moved here, which has not stepped yet
                i += 1
        self.envs[:n] = envs
        return returns, lengths, behaviours

    def close(self) -> None:
        for env in self.envs:
            env.close()
