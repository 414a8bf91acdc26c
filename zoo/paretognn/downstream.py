"""ParetoGNN's four downstream tasks, on frozen node embeddings (the paper's Section 5 protocol).

    node_classification   a linear probe (multinomial logistic regression) on a random node split;
                          weight decay chosen on the validation nodes; test accuracy
    clustering            k-means with k = number of classes; NMI against the labels
    link_prediction       a linear scorer of h_u ⊙ h_v trained on the training edges against uniform
                          non-edges; the epoch chosen by validation AUC; test AUC and Hits@20
    partition             a linear probe predicting each node's METIS partition; test accuracy

Embeddings are L2-normalised first, as in ParetoGNN's evaluator. Every random choice here (k-means
starts, negative edges) comes from a generator seeded by ``seed``, so the evaluation is a function of
the embeddings. Metrics are torchmetrics'.

METIS: PyG's own METIS needs torch-sparse or pyg-lib, neither of which installs from PyPI for
current torch; pymetis (METIS 5 itself, a PyPI wheel) computes the partitions. Without pymetis, a
documented fallback grows balanced parts by breadth-first search (``bfs_partition``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import BinaryAUROC, MulticlassAccuracy
from torchmetrics.clustering import NormalizedMutualInfoScore

DOWNSTREAM = ("node_classification", "clustering", "link_prediction", "partition")
HEADLINE = ("eval/node_acc", "eval/nmi", "eval/link_auc", "eval/partition_acc")


def linear_probe(x: Tensor, y: Tensor, split: Tensor, weight_decays: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2),
                 epochs: int = 200, lr: float = 0.05) -> Tensor:
    """Test accuracy of the logistic regression whose weight decay scores best on the validation
    nodes (split: 0 train, 1 val, 2 test). Full-batch Adam from zero weights: deterministic."""
    n_classes = int(y.max()) + 1
    acc = MulticlassAccuracy(num_classes=n_classes, average="micro").to(x.device)
    tr, va, te = (split == 0), (split == 1), (split == 2)
    best_val, best_test = -1.0, torch.zeros((), device=x.device)
    for wd in weight_decays:
        lin = torch.nn.Linear(x.shape[1], n_classes).to(x.device)
        torch.nn.init.zeros_(lin.weight), torch.nn.init.zeros_(lin.bias)
        opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=wd)
        with torch.enable_grad():
            for _ in range(epochs):
                opt.zero_grad()
                F.cross_entropy(lin(x[tr]), y[tr]).backward()
                opt.step()
        with torch.no_grad():
            pred = lin(x).argmax(1)
            val = float(acc(pred[va], y[va]))
            if val > best_val:
                best_val, best_test = val, acc(pred[te], y[te])
    return best_test


def kmeans(x: Tensor, k: int, generator: torch.Generator, n_init: int = 5, iters: int = 100) -> Tensor:
    """Lloyd's k-means with k-means++ starts; the assignment of the run with the least inertia."""
    best, best_inertia = None, float("inf")
    for _ in range(n_init):
        centres = x[torch.randint(x.shape[0], (1,), generator=generator, device=generator.device).to(x.device)]
        for _ in range(1, k):  # k-means++: the next centre with probability ∝ squared distance
            d2 = torch.cdist(x, centres).min(1).values.pow(2)
            i = torch.multinomial(d2 / d2.sum(), 1, generator=generator) if d2.sum() > 0 else torch.zeros(1, dtype=torch.long, device=x.device)
            centres = torch.cat([centres, x[i]])
        for _ in range(iters):
            assign = torch.cdist(x, centres).argmin(1)
            new = torch.zeros_like(centres).index_add_(0, assign, x)
            count = torch.bincount(assign, minlength=k).clamp_min(1)[:, None].to(x.dtype)
            new = torch.where(torch.bincount(assign, minlength=k)[:, None] > 0, new / count, centres)
            if torch.allclose(new, centres):
                break
            centres = new
        assign = torch.cdist(x, centres).argmin(1)
        inertia = float((x - centres[assign]).pow(2).sum())
        if inertia < best_inertia:
            best, best_inertia = assign, inertia
    return best


def clustering_nmi(x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
    pred = kmeans(x, int(y.max()) + 1, generator)
    return NormalizedMutualInfoScore(average_method="arithmetic").to(x.device)(pred, y)


def hits_at_k(pos_scores: Tensor, neg_scores: Tensor, k: int = 20) -> Tensor:
    """OGB's Hits@K for links: the fraction of positive edges scored above the K-th best negative."""
    if neg_scores.numel() < k:
        return torch.ones((), device=pos_scores.device)
    threshold = neg_scores.topk(k).values[-1]
    return (pos_scores > threshold).float().mean()


def link_prediction(x: Tensor, train_pos: Tensor, val_pos: Tensor, val_neg: Tensor, test_pos: Tensor,
                    test_neg: Tensor, generator: torch.Generator, epochs: int = 100, lr: float = 0.01,
                    weight_decay: float = 0.01, eval_every: int = 10) -> tuple[Tensor, Tensor]:
    """(test AUC, test Hits@20) of ParetoGNN's link predictor: Linear(h_u ⊙ h_v) on frozen h,
    BCE against as many uniform non-edges per epoch, the epoch with the best validation AUC."""
    lin = torch.nn.Linear(x.shape[1], 1).to(x.device)
    torch.nn.init.zeros_(lin.weight), torch.nn.init.zeros_(lin.bias)
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=weight_decay)
    auroc = BinaryAUROC().to(x.device)

    def score(pairs: Tensor) -> Tensor:
        return lin(x[pairs[0]] * x[pairs[1]]).squeeze(-1)

    def auc_of(pos: Tensor, neg: Tensor) -> Tensor:
        s = torch.cat([score(pos), score(neg)])
        labels = torch.cat([torch.ones(pos.shape[1]), torch.zeros(neg.shape[1])]).long().to(x.device)
        return auroc(s, labels)

    best_val, best = -1.0, (torch.zeros(()), torch.zeros(()))
    n = x.shape[0]
    train_pos = train_pos[:, train_pos[0] < train_pos[1]]  # each undirected edge once: h_u ⊙ h_v is symmetric
    for epoch in range(1, epochs + 1):
        neg = torch.randint(n, train_pos.shape, generator=generator, device=generator.device).to(x.device)
        with torch.enable_grad():
            opt.zero_grad()
            logits = torch.cat([score(train_pos), score(neg)])
            labels = torch.cat([torch.ones(train_pos.shape[1]), torch.zeros(neg.shape[1])]).to(x.device)
            F.binary_cross_entropy_with_logits(logits, labels).backward()
            opt.step()
        if epoch % eval_every == 0 or epoch == epochs:
            with torch.no_grad():
                val = float(auc_of(val_pos, val_neg))
                if val > best_val:
                    best_val = val
                    best = (auc_of(test_pos, test_neg), hits_at_k(score(test_pos), score(test_neg), 20))
    return best


def bfs_partition(edge_index: Tensor, n_nodes: int, n_parts: int, seed: int = 0) -> Tensor:
    """The fallback partitioner: grow each part breadth-first from a random unassigned node until
    it holds ⌈n / n_parts⌉ nodes (balanced, connected where the graph allows). Cruder than METIS's
    multilevel cut minimisation, but like it, it groups nodes that are close in the graph."""
    g = torch.Generator().manual_seed(seed)
    src, dst = edge_index.cpu()
    order = torch.argsort(src)
    src, dst = src[order], dst[order]
    ptr = torch.zeros(n_nodes + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(src, minlength=n_nodes), 0)
    nbrs, ptr = dst.tolist(), ptr.tolist()
    part = [-1] * n_nodes
    size = -(-n_nodes // n_parts)
    unassigned = torch.randperm(n_nodes, generator=g).tolist()
    current, filled, frontier = 0, 0, []
    for start in unassigned:
        if part[start] != -1:
            continue
        frontier.append(start)
        part[start] = current
        filled += 1
        while frontier:
            if filled >= size:
                break
            v = frontier.pop(0)
            for u in nbrs[ptr[v]:ptr[v + 1]]:
                if part[u] == -1 and filled < size:
                    part[u] = current
                    filled += 1
                    frontier.append(u)
        if filled >= size:
            current, filled, frontier = min(current + 1, n_parts - 1), 0, []
    return torch.tensor(part)


def metis_partition(edge_index: Tensor, n_nodes: int, n_parts: int, seed: int = 0) -> Tensor:
    """METIS partitions (pymetis) of an undirected graph; the BFS fallback without pymetis."""
    try:
        import pymetis
    except ImportError:
        return bfs_partition(edge_index, n_nodes, n_parts, seed)
    src, dst = edge_index.cpu()
    order = torch.argsort(src * n_nodes + dst)
    src, dst = src[order], dst[order]
    xadj = torch.zeros(n_nodes + 1, dtype=torch.long)
    xadj[1:] = torch.cumsum(torch.bincount(src, minlength=n_nodes), 0)
    options = pymetis.Options(seed=seed)
    _, parts = pymetis.part_graph(n_parts, xadj=xadj.numpy(), adjncy=dst.numpy(), options=options)
    return torch.as_tensor(parts, dtype=torch.long)


def evaluate(h: Tensor, graph, seed: int = 0) -> dict[str, Tensor]:
    """The downstream metrics of embeddings ``h`` [N, d] on the ``graph`` that data.py prepared, for
    the tasks it was prepared for; ``eval/mean`` averages the four headline ones (accuracy, NMI, AUC,
    partition accuracy), as ParetoGNN's eval.py. Safe to call under Lightning's inference mode."""
    with torch.inference_mode(False):
        return _evaluate(F.normalize(h.detach().float(), dim=1).clone(), graph, seed)


def _evaluate(h: Tensor, graph, seed: int) -> dict[str, Tensor]:
    g = torch.Generator(device=h.device).manual_seed(seed)
    out: dict[str, Tensor] = {}
    tasks = graph.downstream
    if "node_classification" in tasks:
        out["eval/node_acc"] = linear_probe(h, graph.y, graph.split)
    if "clustering" in tasks:
        out["eval/nmi"] = clustering_nmi(h, graph.y, g)
    if "link_prediction" in tasks:
        out["eval/link_auc"], out["eval/link_hits20"] = link_prediction(
            h, graph.edge_index, graph.link_val_pos, graph.link_val_neg, graph.link_test_pos, graph.link_test_neg, g)
    if "partition" in tasks:
        out["eval/partition_acc"] = linear_probe(h, graph.partition, graph.split)
    present = [out[k] for k in HEADLINE if k in out]
    if present:
        out["eval/mean"] = torch.stack([v.float().to(h.device) for v in present]).mean()
    return out
