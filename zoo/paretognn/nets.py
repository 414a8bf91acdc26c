"""ParetoGNN's networks: the shared GNN encoder (GCN, GAT or GraphSAGE from PyG) and the small
heads of the five pretext tasks. The heads follow ParetoGNN's code: an MLP projector for the
contrastive task, a bilinear discriminator for DGI, a mask token, an encoder-to-decoder linear map
and a one-layer GCN decoder for reconstruction, and a hidden layer plus a linear scorer on the
Hadamard product for links. CCA-SSG reads the encoder's output directly.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

Conv = Literal["gcn", "gat", "sage"]
Norm = Literal["batch", "layer", "none"]


def conv_layer(kind: Conv, in_dim: int, out_dim: int, heads: int = 4) -> nn.Module:
    if kind == "gcn":
        return GCNConv(in_dim, out_dim)
    if kind == "sage":
        return SAGEConv(in_dim, out_dim)
    if kind == "gat":
        if out_dim % heads:
            raise ValueError(f"--model.hidden_dims: GAT splits each width over {heads} heads; {out_dim} is not divisible")
        return GATConv(in_dim, out_dim // heads, heads=heads)
    raise ValueError(f"--model.conv: unknown {kind!r}; use gcn, gat or sage")


class Encoder(nn.Module):
    """[conv → norm → PReLU] per layer, the widths of ``hidden_dims``; the last width is the
    embedding size. Dropout between layers (ParetoGNN: none by default)."""

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], conv: Conv = "gcn", norm: Norm = "batch",
                 dropout: float = 0.0) -> None:
        super().__init__()
        dims = [in_dim, *hidden_dims]
        self.convs = nn.ModuleList(conv_layer(conv, a, b) for a, b in zip(dims[:-1], dims[1:]))
        # batch statistics always, also in eval mode: no running averages for the corrupted and masked
        # inputs of the pretext tasks to pollute, and the embeddings of a graph are those of its own statistics
        norm_of = {"batch": lambda d: nn.BatchNorm1d(d, track_running_stats=False), "layer": nn.LayerNorm,
                   "none": lambda _: nn.Identity()}
        if norm not in norm_of:
            raise ValueError(f"--model.norm: unknown {norm!r}; use batch, layer or none")
        self.norms = nn.ModuleList(norm_of[norm](b) for b in dims[1:])
        self.acts = nn.ModuleList(nn.PReLU() for _ in dims[1:])
        self.dropout = nn.Dropout(dropout)
        self.out_dim = dims[-1]

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        for i, (conv, norm, act) in enumerate(zip(self.convs, self.norms, self.acts)):
            if i:
                x = self.dropout(x)
            x = act(norm(conv(x, edge_index)))
        return x

    def forward_blocks(self, x: Tensor, blocks: list[tuple[Tensor, int]]) -> Tensor:
        """The encoder on neighbour-sampled blocks (views.neighbour_blocks): layer l reads its input
        nodes, passes messages along blocks[l]'s edges and keeps its first n_dst rows, the nodes the
        next layer needs (the output nodes come first at every layer); norms see only those rows."""
        if len(blocks) != len(self.convs):
            raise ValueError(f"{len(blocks)} sampled blocks for an encoder of {len(self.convs)} layers")
        for i, ((edge_index, n_dst), conv, norm, act) in enumerate(zip(blocks, self.convs, self.norms, self.acts)):
            if i:
                x = self.dropout(x)
            x = act(norm(conv(x, edge_index)[:n_dst]))
        return x


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class Heads(nn.Module):
    """The task-specific parameters; only the task that owns a head ever sends it a gradient."""

    def __init__(self, in_dim: int, emb_dim: int, predictor_dim: int) -> None:
        super().__init__()
        # recon: learnable [MASK] feature, re-mask map, GCN decoder back to the input features
        self.mask_token = nn.Parameter(torch.zeros(1, in_dim))
        self.enc_to_dec = nn.Linear(emb_dim, emb_dim, bias=False)
        self.decoder = GCNConv(emb_dim, in_dim)
        # ming: DGI's bilinear discriminator
        self.discriminator = nn.Parameter(torch.empty(emb_dim, emb_dim).uniform_(-1 / math.sqrt(emb_dim), 1 / math.sqrt(emb_dim)))
        # minsg: projector before InfoNCE
        self.projector = mlp(emb_dim, predictor_dim, emb_dim)
        # link: hidden layer then a linear scorer of h_u ⊙ h_v
        self.link_hidden = nn.Linear(emb_dim, predictor_dim)
        self.link_score = nn.Linear(predictor_dim, 1)

    def owned_by(self) -> dict[str, list[str]]:
        """Which task each head's parameters belong to (prefixes of this module's names)."""
        return {"recon": ["mask_token", "enc_to_dec", "decoder"], "ming": ["discriminator"],
                "minsg": ["projector"], "decor": [], "link": ["link_hidden", "link_score"]}

    def link_logits(self, h: Tensor, pairs: Tensor) -> Tensor:
        z = torch.relu(self.link_hidden(nn.functional.normalize(h, dim=1)))
        return self.link_score(z[pairs[0]] * z[pairs[1]]).squeeze(-1)
