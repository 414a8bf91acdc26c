"""Each pretext task's own view of the graph, drawn as ParetoGNN's official collator draws them
(src/data_train.py, ``Universal_Collator``; the settings of its scripts in brackets):

    recon   the whole graph, or a GraphSAINT node sample of ``recon_nodes`` nodes     [whole graph]
    ming    the whole graph, or the k-hop subgraph around ``batch_size`` random nodes   [whole graph]
    minsg   the k-hop subgraph around ``batch_size`` random nodes when the graph has more than
            ``batch_size × minsg_multiplier`` nodes, else the whole graph             [k = 3, × 5]
    decor   a GraphSAINT node sample of ``decor_nodes`` nodes, or the whole graph when smaller [10 000]
    link    ``link_edges`` random edges with uniform non-edges, each endpoint's computation
            graph neighbour-sampled layer by layer (``fanouts``)             [10 edges; 15, 10]

The samplers draw from the module's generator (resumable, per rank). PyG's NeighborLoader and
GraphSAINT samplers need pyg-lib or torch-sparse, which do not install from PyPI for current torch,
and draw from the global stream; PyG's ``k_hop_subgraph`` and ``subgraph`` are used as they are.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import k_hop_subgraph, subgraph


def induced(x: Tensor, edge_index: Tensor, nodes: Tensor) -> tuple[Tensor, Tensor]:
    """(features, relabelled edges) of the subgraph induced by ``nodes``."""
    ei, _ = subgraph(nodes, edge_index, relabel_nodes=True, num_nodes=x.shape[0])
    return x[nodes], ei


def saint_nodes(edge_index: Tensor, n_nodes: int, budget: int, g: torch.Generator) -> Tensor:
    """GraphSAINT's node sampler (DGL's SAINTSampler('node')): ``budget`` draws with replacement,
    each node with probability ∝ its degree (at least 1); the distinct nodes, sorted."""
    degree = torch.bincount(edge_index[0], minlength=n_nodes).float().clamp_min(1)
    drawn = torch.multinomial(degree.to(g.device), budget, replacement=True, generator=g)
    return drawn.unique().to(edge_index.device)


def khop_view(x: Tensor, edge_index: Tensor, n_seeds: int, k: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """The subgraph induced by the k-hop neighbourhood of ``n_seeds`` random nodes (DGL's khop_in_subgraph)."""
    seeds = torch.randperm(x.shape[0], generator=g, device=g.device)[:n_seeds].to(x.device)
    nodes, ei, _, _ = k_hop_subgraph(seeds, k, edge_index, relabel_nodes=True, num_nodes=x.shape[0])
    return x[nodes], ei


def neighbour_blocks(edge_index: Tensor, n_nodes: int, seeds: Tensor, fanouts: list[int],
                     g: torch.Generator) -> tuple[Tensor, list[tuple[Tensor, int]]]:
    """Layer-wise neighbour sampling (GraphSAGE's, DGL's MultiLayerNeighborSampler): from the output
    nodes ``seeds`` inwards, each node of a layer keeps up to ``fanouts[l]`` of its neighbours, drawn
    uniformly without replacement.

    Returns (nodes [M], blocks): the global ids of every node involved, the seeds first and each
    layer's output nodes a prefix of its input nodes; blocks[l] = (edges of layer l in the local ids,
    the number of its output nodes), the input layer first.
    """
    src, dst = edge_index
    order = torch.argsort(dst, stable=True)
    neighbours = src[order]
    ptr = torch.zeros(n_nodes + 1, dtype=torch.long, device=src.device)
    ptr[1:] = torch.cumsum(torch.bincount(dst, minlength=n_nodes), 0)
    local = torch.full((n_nodes,), -1, dtype=torch.long, device=src.device)
    nodes = seeds
    local[nodes] = torch.arange(nodes.numel(), device=src.device)
    blocks = []
    for fanout in reversed(fanouts):
        degree = ptr[nodes + 1] - ptr[nodes]
        owner = torch.repeat_interleave(torch.arange(nodes.numel(), device=src.device), degree)
        first = torch.cumsum(degree, 0) - degree
        slot = torch.arange(owner.numel(), device=src.device) - first[owner]
        nbr = neighbours[ptr[nodes][owner] + slot]
        # a random order within each node's neighbours; keep the first ``fanout``
        key = torch.rand(owner.numel(), generator=g, device=g.device, dtype=torch.float64).to(src.device)
        perm = torch.argsort(owner.double() + key)
        rank = torch.arange(perm.numel(), device=src.device) - first[owner[perm]]
        keep = perm[rank < fanout]
        new = nbr[keep][local[nbr[keep]] < 0].unique()
        local[new] = nodes.numel() + torch.arange(new.numel(), device=src.device)
        blocks.append((torch.stack([local[nbr[keep]], owner[keep]]), nodes.numel()))
        nodes = torch.cat([nodes, new])
    return nodes, blocks[::-1]


def link_batch(edge_index: Tensor, n_nodes: int, n_pos: int, neg_ratio: int,
               g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n_pos`` random edges (without replacement) and ``neg_ratio`` uniform non-edges per edge (DGL's
    GlobalUniform: neither an edge nor a self-loop), global ids [2, ·] each."""
    dev = edge_index.device
    pos = edge_index[:, torch.randperm(edge_index.shape[1], generator=g, device=g.device)[:n_pos].to(dev)]
    keys = edge_index[0] * n_nodes + edge_index[1]
    want = pos.shape[1] * neg_ratio
    neg = torch.empty(2, 0, dtype=torch.long, device=dev)
    while neg.shape[1] < want:
        cand = torch.randint(n_nodes, (2, 2 * (want - neg.shape[1]) + 16), generator=g, device=g.device).to(dev)
        ok = (cand[0] != cand[1]) & ~torch.isin(cand[0] * n_nodes + cand[1], keys)
        neg = torch.cat([neg, cand[:, ok]], 1)
    return pos, neg[:, :want]
