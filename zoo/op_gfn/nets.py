"""The networks of a GFlowNet: MLPs over the encoded state (the torchgfn hypergrid architecture)."""
from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, n_hidden_layers: int, out_dim: int) -> nn.Sequential:
    """in → [Linear, ReLU] × n_hidden_layers → out."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(n_hidden_layers):
        layers += [nn.Linear(width, hidden_dim), nn.ReLU()]
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)
