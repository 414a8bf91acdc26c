"""The phase-2 policy and value networks: MLPs for vector observations (MiniGrid's encoded grid), and the
Nature-DQN convolutional trunk for stacks of 84×84 Atari frames, as the official robustification uses."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden_sizes:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class MLPActorCritic(nn.Module):
    """π(·|s) = softmax(MLP_π(s)) and V(s) = MLP_V(s), two separate networks (as MDPO's on-policy learner)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.policy = mlp(obs_dim, hidden_sizes, n_actions)
        self.value = mlp(obs_dim, hidden_sizes, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        return self.policy(x).float(), self.value(x).float().squeeze(-1)


class CNNActorCritic(nn.Module):
    """Nature-DQN trunk (32×8×8/4, 64×4×4/2, 64×3×3/1, 512) shared by a policy and a value head."""

    def __init__(self, frames: int, n_actions: int, hidden: int = 512) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(frames, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, hidden), nn.ReLU())
        self.policy = nn.Linear(hidden, n_actions)
        self.value = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x)
        return self.policy(h).float(), self.value(h).float().squeeze(-1)


def actor_critic(obs_shape: tuple[int, ...], n_actions: int, hidden_sizes: Sequence[int]) -> nn.Module:
    """A CNN for stacks of 84×84 frames [k, 84, 84], else an MLP over the flattened observation."""
    if len(obs_shape) == 3 and obs_shape[1:] == (84, 84):
        return CNNActorCritic(obs_shape[0], n_actions)
    return MLPActorCritic(int(torch.tensor(obs_shape).prod()), n_actions, hidden_sizes)
