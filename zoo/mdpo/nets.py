"""The networks of MDPO: MLP policies (categorical; Gaussian with a state-independent or a
state-dependent log σ, squashed by tanh outside), a state-value critic and a Q critic, and the
orthogonal initialisation that the official on-policy code (stable-baselines' MlpPolicy) uses."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: str = "tanh") -> nn.Sequential:
    """in → [Linear, activation] per hidden size → Linear → out."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden_sizes:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


@torch.no_grad()
def orthogonal_init(net: nn.Sequential, out_gain: float) -> nn.Sequential:
    """Orthogonal weights and zero biases: gain √2 for the hidden layers, ``out_gain`` for the last one
    (0.01 for a policy's head, so that the first policy is nearly uniform; 1 for a value head)."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        nn.init.orthogonal_(layer.weight, gain=out_gain if i == len(linears) - 1 else 2 ** 0.5)
        nn.init.zeros_(layer.bias)
    return net


class CategoricalPolicy(nn.Module):
    """π(·|s) = softmax(logits(s))."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: Sequence[int], activation: str) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, n_actions, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).float()


class GaussianPolicy(nn.Module):
    """u ∼ N(μ(s), σ²) with log σ a free parameter (``state_dependent_std=False``, the on-policy
    choice) or a second head clamped to [−20, 2] (the off-policy, SAC-like choice)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str,
                 state_dependent_std: bool = False, log_std_init: float = 0.0) -> None:
        super().__init__()
        self.state_dependent_std = state_dependent_std
        self.net = mlp(obs_dim, hidden_sizes, 2 * act_dim if state_dependent_std else act_dim, activation)
        self.log_std = None if state_dependent_std else nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(x).float()
        if self.state_dependent_std:
            mean, log_std = out.chunk(2, dim=-1)
            return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return out, self.log_std + torch.zeros_like(out)  # broadcast (not a view: views of a leaf trip hooks)


class QNetwork(nn.Module):
    """Q(s, a) from the concatenation [s, a]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], activation: str) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden_sizes, 1, activation)

    def forward(self, x: Tensor, a: Tensor) -> Tensor:
        return self.net(torch.cat([x, a], dim=-1)).float().squeeze(-1)
