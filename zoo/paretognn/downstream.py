"""ParetoGNN's four downstream tasks on frozen node embeddings, by the official evaluator (eval.py and
src/evaluator.py of jumxglhf/ParetoGNN), with scikit-learn as there.

    node_classification   ``fit_logistic_regression``: embeddings L2-normalised; ``repeats`` random
                          20 % / 80 % train/test splits (seeds 1, 2, …); on each, one-vs-rest
                          liblinear logistic regression with C chosen from 2^-10 … 2^10 by
                          GridSearchCV over 5 random half/half splits of the training nodes; the
                          mean test accuracy
    clustering            ``fit_node_clustering``: k-means (k = number of classes, n_init 10) with
                          random states 0 … 4; the mean NMI (v-measure)
    link_prediction       ``fit_link_predictor``: a linear scorer of h_u ⊙ h_v, Adam (lr 0.01, weight
                          decay 0.01), batches of up to 10 240 training edges with as many non-edges,
                          up to 200 epochs, stopped after 50 epochs without a better validation AUC
                          (eval.py's es_metric='auc'); test AUC and Hits@20 at the best epoch, mean of 2 runs
    partition             the node-classification probe on METIS partitions (10 parts)

Differences from the official evaluator, each for a reason: the random states of the grid search's
splits, of the link scorer's initialisation and of its non-edges come from ``seed`` (the official
code leaves them unseeded), so that the evaluation is a function of the embeddings; a graph with
fewer training edges than one batch trains the link scorer on all of them (the official loader drops
the incomplete batch and would train on none); ``n_jobs`` is 1 (the official -1 gives the same
numbers on more cores).

METIS: PyG's own METIS needs torch-sparse or pyg-lib, neither of which installs from PyPI for
current torch; pymetis (METIS 5 itself, a PyPI wheel) computes the partitions. Without pymetis, a
documented fallback grows balanced parts by breadth-first search (``bfs_partition``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

DOWNSTREAM = ("node_classification", "clustering", "link_prediction", "partition")
HEADLINE = ("eval/node_acc", "eval/nmi", "eval/link_auc", "eval/partition_acc")


def sklearn():
    """scikit-learn, which the official evaluation is written in; a clear error where it is missing."""
    try:
        import sklearn  # noqa: F401
    except ImportError as e:
        from zoo.errors import UserError

        raise UserError("ParetoGNN's downstream evaluation needs scikit-learn, as the official evaluator: "
                        "pip install scikit-learn (or the zoo's graphs extra: pip install -e '.[graphs]')") from e
    import sklearn.cluster
    import sklearn.linear_model
    import sklearn.metrics
    import sklearn.model_selection
    import sklearn.multiclass

    return sklearn


def linear_probe(x: Tensor, y: Tensor, seed: int = 0, repeats: int = 10) -> float:
    """Mean test accuracy of the official probe over ``repeats`` random 20/80 splits (seeds seed+1, …)."""
    sk = sklearn()
    X, labels = F.normalize(x.detach().float(), dim=1).cpu().numpy(), y.cpu().numpy()
    onehot = np.eye(int(labels.max()) + 1, dtype=bool)[labels]  # as the official: C chosen on one-hot targets
    accuracies = []
    for r in range(repeats):
        x_tr, x_te, y_tr, y_te = sk.model_selection.train_test_split(
            X, onehot, test_size=0.8, random_state=np.random.RandomState(seed + 1 + r))
        search = sk.model_selection.GridSearchCV(
            sk.multiclass.OneVsRestClassifier(sk.linear_model.LogisticRegression(solver="liblinear", max_iter=10000)),
            param_grid={"estimator__C": 2.0 ** np.arange(-10, 11)}, n_jobs=1,
            cv=sk.model_selection.ShuffleSplit(n_splits=5, test_size=0.5, random_state=seed + r))
        search.fit(x_tr, y_tr)
        accuracies.append(float((search.predict_proba(x_te).argmax(1) == y_te.argmax(1)).mean()))
    return float(np.mean(accuracies))


def clustering_nmi(x: Tensor, y: Tensor, seed: int = 0, runs: int = 5) -> float:
    """Mean NMI (v-measure) of ``runs`` k-means clusterings with k = number of classes.

    n_init 10 is written out: it is the default of the scikit-learn the official code ran on (newer
    versions run k-means++ once)."""
    sk = sklearn()
    X, labels = F.normalize(x.detach().float(), dim=1).cpu().numpy(), y.cpu().numpy()
    k = int(labels.max()) + 1
    scores = [sk.metrics.v_measure_score(labels, sk.cluster.KMeans(n_clusters=k, random_state=seed + i, n_init=10)
                                         .fit_predict(X)) for i in range(runs)]
    return float(np.mean(scores))


def hits_at_k(pos_scores: Tensor, neg_scores: Tensor, k: int = 20) -> Tensor:
    """OGB's Hits@K for links: the fraction of positive edges scored above the K-th best negative."""
    if neg_scores.numel() < k:
        return torch.ones((), device=pos_scores.device)
    threshold = neg_scores.topk(k).values[-1]
    return (pos_scores > threshold).float().mean()


def sample_non_edges(n_nodes: int, count: int, forbidden: Tensor, generator: torch.Generator) -> Tensor:
    """``count`` uniform node pairs u < v that are not in ``forbidden`` [2, F] (either direction), [2, count]."""
    bad = set((torch.minimum(forbidden[0], forbidden[1]) * n_nodes + torch.maximum(forbidden[0], forbidden[1])).tolist())
    out: list[int] = []
    while len(out) < count:
        pairs = torch.randint(n_nodes, (2, 2 * (count - len(out)) + 16), generator=generator)
        lo, hi = pairs.min(0).values, pairs.max(0).values
        keys = (lo * n_nodes + hi)[lo < hi].tolist()
        out += [k for k in keys if k not in bad][: count - len(out)]
    keys = torch.tensor(out, dtype=torch.long)
    return torch.stack([keys // n_nodes, keys % n_nodes])


def link_prediction(x: Tensor, train_pos: Tensor, val_pos: Tensor, val_neg: Tensor, test_pos: Tensor, test_neg: Tensor,
                    seed: int = 0, repeats: int = 2, epochs: int = 200, patience: int = 50, batch_size: int = 10240,
                    lr: float = 0.01, weight_decay: float = 0.01, neg_ratio: int = 1) -> tuple[float, float]:
    """(test AUC, test Hits@20) of the official link predictor, means over ``repeats`` runs.

    train_pos holds the training graph's edges (both directions or one); each undirected edge is
    used once. Training non-edges avoid every edge and the held-out pairs, as the official split."""
    sk = sklearn()
    x = F.normalize(x.detach().float(), dim=1).cpu()
    n = x.shape[0]
    train_pos = train_pos.cpu()
    train_pos = torch.unique(torch.stack([train_pos.min(0).values, train_pos.max(0).values]), dim=1)
    train_pos = train_pos[:, train_pos[0] < train_pos[1]]
    forbidden = torch.cat([train_pos, val_pos.cpu(), val_neg.cpu(), test_pos.cpu(), test_neg.cpu()], dim=1)
    val_pairs, test_pairs = torch.cat([val_pos, val_neg], 1).cpu(), torch.cat([test_pos, test_neg], 1).cpu()
    val_labels = np.r_[np.ones(val_pos.shape[1]), np.zeros(val_neg.shape[1])]
    test_labels = np.r_[np.ones(test_pos.shape[1]), np.zeros(test_neg.shape[1])]
    g = torch.Generator().manual_seed(seed)
    batch = min(batch_size, train_pos.shape[1])
    n_batches = train_pos.shape[1] // batch
    aucs, hits = [], []
    with torch.enable_grad():
        for _ in range(repeats):
            scorer = torch.nn.Linear(x.shape[1], 1)
            bound = 1 / math.sqrt(x.shape[1])  # nn.Linear's own initialisation, from the generator
            torch.nn.init.kaiming_uniform_(scorer.weight, a=math.sqrt(5), generator=g)
            torch.nn.init.uniform_(scorer.bias, -bound, bound, generator=g)
            opt = torch.optim.Adam(scorer.parameters(), lr=lr, weight_decay=weight_decay)
            negatives = sample_non_edges(n, n_batches * batch * neg_ratio, forbidden, g)
            labels = torch.cat([torch.ones(batch), torch.zeros(batch * neg_ratio)])
            best_val, best, wait = 0.0, (0.5, 0.0), 0
            for _ in range(epochs):
                perm = torch.randperm(train_pos.shape[1], generator=g)
                for i in range(n_batches):  # batch i always takes the i-th block of non-edges, as the official
                    pairs = torch.cat([train_pos[:, perm[i * batch:(i + 1) * batch]],
                                       negatives[:, i * batch * neg_ratio:(i + 1) * batch * neg_ratio]], 1)
                    opt.zero_grad()
                    logits = scorer(x[pairs[0]] * x[pairs[1]]).squeeze(-1)
                    F.binary_cross_entropy_with_logits(logits, labels, pos_weight=torch.tensor(float(neg_ratio))).backward()
                    opt.step()
                with torch.no_grad():
                    val_scores = scorer(x[val_pairs[0]] * x[val_pairs[1]]).squeeze(-1)
                    val = float(sk.metrics.roc_auc_score(val_labels, val_scores.numpy()))
                    if val >= best_val:
                        best_val, wait = val, 0
                        s = scorer(x[test_pairs[0]] * x[test_pairs[1]]).squeeze(-1)
                        n_pos = test_pos.shape[1]
                        best = (float(sk.metrics.roc_auc_score(test_labels, s.numpy())),
                                float(hits_at_k(s[:n_pos], s[n_pos:], 20)))
                    else:
                        wait += 1
                if wait >= patience:
                    break
            aucs.append(best[0])
            hits.append(best[1])
    return float(np.mean(aucs)), float(np.mean(hits))


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


def evaluate(h_node: Tensor, h_link: Tensor, graph, seed: int = 0, repeats: int = 10) -> dict[str, Tensor]:
    """The downstream metrics on the ``graph`` that data.py prepared, for the tasks it was prepared
    for: the node tasks on ``h_node`` (embeddings of the whole graph, as the official node-task
    model sees it), link prediction on ``h_link`` (embeddings of the graph without the held-out
    edges). ``eval/mean`` averages accuracy, NMI, AUC and partition accuracy, as the official eval.py.
    ``repeats``: random splits of the two probes. Safe to call under Lightning's inference mode and
    autocast (the probes run in float32)."""
    out: dict[str, float] = {}
    tasks = graph.downstream
    with torch.inference_mode(False), torch.autocast(h_link.device.type, enabled=False):
        if "node_classification" in tasks:
            out["eval/node_acc"] = linear_probe(h_node, graph.y, seed, repeats)
        if "clustering" in tasks:
            out["eval/nmi"] = clustering_nmi(h_node, graph.y, seed)
        if "link_prediction" in tasks:
            out["eval/link_auc"], out["eval/link_hits20"] = link_prediction(
                h_link, graph.edge_index, graph.link_val_pos, graph.link_val_neg, graph.link_test_pos,
                graph.link_test_neg, seed)
        if "partition" in tasks:
            out["eval/partition_acc"] = linear_probe(h_node, graph.partition, seed, repeats)
    present = [out[k] for k in HEADLINE if k in out]
    if present:
        out["eval/mean"] = float(np.mean(present))
    return {k: torch.tensor(v, dtype=torch.float32, device=h_node.device) for k, v in out.items()}
