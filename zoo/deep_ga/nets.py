"""Policies as functions of a flat weight vector θ, evaluated for B different θ at once.

The GA never backpropagates: a network is its layout (the shape of each weight) and a forward
pass of a batch of B environments, each under its own θ_b (rows of a [B, P] tensor), as the
official code's batched ("indexed") matmul does. Linear layers use a batched matmul, convolutions a
grouped convolution with one group per θ_b.

    MLP        vector observations: Linear → act → … → Linear (the outputs)
    AtariNet   the network of Mnih et al. 2013 (``dqn``: conv 16×8×8/4, conv 32×4×4/2, fc 256, about
               1 M weights at 18 actions) or 2015 (``dqn_large``: conv 32/64/64, fc 512, about 4 M), SAME
               padding as the official TensorFlow code, inputs scaled from bytes to [0, 1]

Initialisation follows the official code: each weight is std/√fan_in times N(0, 1) (std 1, and 0.1
for the output layer), biases 0; ``init_scale`` holds that per-parameter factor s of θ⁰ = s ⊙ ε.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


class FlatPolicy(nn.Module):
    """A layout of named weight shapes in one flat vector θ; subclasses define ``forward_flat``."""

    def __init__(self) -> None:
        super().__init__()
        self.layout: list[tuple[str, tuple[int, ...], float]] = []  # (name, shape, init std/√fan_in)

    def add(self, name: str, shape: tuple[int, ...], scale: float) -> None:
        self.layout.append((name, shape, scale))

    @property
    def num_params(self) -> int:
        return sum(math.prod(shape) for _, shape, _ in self.layout)

    def init_scale(self) -> Tensor:
        """s of θ⁰ = s ⊙ ε, one factor per entry of θ."""
        return torch.cat([torch.full((math.prod(shape),), scale) for _, shape, scale in self.layout])

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Views of θ [B, P] as {name: [B, *shape]}."""
        out, offset = {}, 0
        for name, shape, _ in self.layout:
            n = math.prod(shape)
            out[name] = theta[:, offset: offset + n].view(theta.shape[0], *shape)
            offset += n
        return out

    def forward_flat(self, theta: Tensor, obs: Tensor) -> Tensor:
        raise NotImplementedError


def batched_linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x [B, n, in] @ w [B, in, out] + b [B, out], each row under its own weights."""
    return torch.baddbmm(b.unsqueeze(1), x, w)


class MLP(FlatPolicy):
    def __init__(self, obs_dim: int, out_dim: int, hidden_sizes: Sequence[int], activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: choose one of {sorted(ACTIVATIONS)}")
        self.activation = ACTIVATIONS[activation]
        sizes = [obs_dim, *hidden_sizes, out_dim]
        self.n_layers = len(sizes) - 1
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            std = 0.1 if i == self.n_layers - 1 else 1.0
            self.add(f"w{i}", (n_in, n_out), std / math.sqrt(n_in))
            self.add(f"b{i}", (n_out,), 0.0)

    def forward_flat(self, theta: Tensor, obs: Tensor) -> Tensor:
        """θ [B, P], obs [B, n, obs_dim] (n observations per policy) -> outputs [B, n, out_dim]."""
        p = self.unflatten(theta.to(obs.dtype))
        x = obs
        for i in range(self.n_layers):
            x = batched_linear(x, p[f"w{i}"], p[f"b{i}"])
            if i < self.n_layers - 1:
                x = self.activation(x)
        return x


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (left, right) of one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class AtariNet(FlatPolicy):
    """The DQN convolutional network, for [C, 84, 84] byte frames."""

    ARCHS = {"dqn": ([(16, 8, 4), (32, 4, 2)], 256), "dqn_large": ([(32, 8, 4), (64, 4, 2), (64, 3, 1)], 512)}

    def __init__(self, obs_shape: Sequence[int], n_actions: int, arch: str = "dqn") -> None:
        super().__init__()
        if arch not in self.ARCHS:
            raise ValueError(f"arch {arch!r}: choose one of {sorted(self.ARCHS)}")
        convs, hidden = self.ARCHS[arch]
        channels, height, width = obs_shape
        self.convs = []
        for i, (out, kernel, stride) in enumerate(convs):
            pad = same_padding(height, kernel, stride) + same_padding(width, kernel, stride)
            self.convs.append((kernel, stride, (pad[2], pad[3], pad[0], pad[1])))
            self.add(f"conv{i}.w", (out, channels, kernel, kernel), 1.0 / math.sqrt(channels * kernel * kernel))
            self.add(f"conv{i}.b", (out,), 0.0)
            channels, height, width = out, math.ceil(height / stride), math.ceil(width / stride)
        flat = channels * height * width
        self.add("fc.w", (flat, hidden), 1.0 / math.sqrt(flat))
        self.add("fc.b", (hidden,), 0.0)
        self.add("out.w", (hidden, n_actions), 0.1 / math.sqrt(hidden))
        self.add("out.b", (n_actions,), 0.0)

    def forward_flat(self, theta: Tensor, obs: Tensor) -> Tensor:
        """θ [B, P], obs [B, n, C, H, W] bytes -> logits [B, n, n_actions]."""
        B, n = obs.shape[:2]
        x = obs.float().div(255.0)
        p = self.unflatten(theta.float())
        # one group per policy: [n, B·C, H, W] convolved with [B·out, C, k, k]
        x = x.transpose(0, 1).reshape(n, B * obs.shape[2], *obs.shape[3:])
        for i, (_, stride, pad) in enumerate(self.convs):
            w, b = p[f"conv{i}.w"], p[f"conv{i}.b"]
            x = F.conv2d(F.pad(x, pad), w.reshape(-1, *w.shape[2:]), b.reshape(-1), stride=stride, groups=B)
            x = torch.relu(x)
        x = x.reshape(n, B, -1).transpose(0, 1)  # [B, n, features]
        x = torch.relu(batched_linear(x, p["fc.w"], p["fc.b"]))
        return batched_linear(x, p["out.w"], p["out.b"])
