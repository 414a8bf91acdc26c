"""The downstream evaluation: the official evaluator's steps, metrics by hand, and each task on inputs
whose answer is known."""
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import v_measure_score
from sklearn.model_selection import GridSearchCV, ShuffleSplit, train_test_split
from sklearn.multiclass import OneVsRestClassifier

from zoo.paretognn.data import GraphDataModule
from zoo.paretognn.downstream import (
    bfs_partition,
    clustering_nmi,
    evaluate,
    hits_at_k,
    linear_probe,
    link_prediction,
    metis_partition,
    sample_non_edges,
)


def test_hits_at_k_by_hand():
    neg = torch.tensor([0.9, 0.5, 0.4, 0.1])
    pos = torch.tensor([1.0, 0.6, 0.45, 0.3])
    # the 2nd best negative is 0.5: positives above it are 1.0 and 0.6
    assert hits_at_k(pos, neg, k=2).item() == pytest.approx(0.5)
    assert hits_at_k(pos, neg, k=1).item() == pytest.approx(0.25)
    assert hits_at_k(pos, neg, k=4).item() == pytest.approx(1.0)


def blobs(n_per=60, k=3, dim=8, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 3
    y = torch.arange(k).repeat_interleave(n_per)
    return centres[y] + spread * torch.randn(k * n_per, dim, generator=g), y


def test_linear_probe_is_the_official_fit_logistic_regression():
    """One repeat of the official evaluator written out (src/evaluator.py): L2-normalised rows, a
    20/80 split with RandomState(1), one-vs-rest liblinear on one-hot targets, C from 2^-10…2^10 by
    GridSearchCV over 5 half/half ShuffleSplits, test accuracy of the argmax."""
    x, y = blobs(spread=2.0)  # overlapping: the choice of C matters
    X = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    onehot = np.eye(3, dtype=bool)[y.numpy()]
    x_tr, x_te, y_tr, y_te = train_test_split(X, onehot, test_size=0.8, random_state=np.random.RandomState(1))
    clf = GridSearchCV(OneVsRestClassifier(LogisticRegression(solver="liblinear", max_iter=10000)),
                       param_grid=dict(estimator__C=2.0 ** np.arange(-10, 11)), n_jobs=1,
                       cv=ShuffleSplit(n_splits=5, test_size=0.5, random_state=0))
    clf.fit(x_tr, y_tr)
    official = (clf.predict_proba(x_te).argmax(1) == y_te.argmax(1)).mean()
    assert linear_probe(x, y, seed=0, repeats=1) == pytest.approx(official)
    assert 0.4 < official < 1.0


def test_linear_probe_separable_vs_noise():
    x, y = blobs(spread=0.5)
    assert linear_probe(x, y, repeats=1) == pytest.approx(1.0)
    noise = torch.randn(180, 8, generator=torch.Generator().manual_seed(2))
    assert linear_probe(noise, y, repeats=1) < 0.6


def test_clustering_is_the_official_mean_of_five_kmeans():
    x, y = blobs(spread=1.5)
    X = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    official = np.mean([v_measure_score(y.numpy(), KMeans(n_clusters=3, random_state=i, n_init=10).fit(X).predict(X))
                        for i in range(5)])
    assert clustering_nmi(x, y, seed=0) == pytest.approx(official)
    sep, _ = blobs()
    assert clustering_nmi(sep, y) == pytest.approx(1.0, abs=1e-6)
    noise = torch.randn(180, 8, generator=torch.Generator().manual_seed(1))
    assert clustering_nmi(noise, y) < 0.1


def test_training_non_edges_avoid_edges_and_held_out_pairs():
    forbidden = torch.tensor([[0, 1, 2, 5], [1, 2, 3, 4]])
    pairs = sample_non_edges(6, 200, forbidden, torch.Generator().manual_seed(0))
    assert pairs.shape == (2, 200) and (pairs[0] < pairs[1]).all()
    taken = {(0, 1), (1, 2), (2, 3), (4, 5)}
    assert not any(p in taken for p in zip(*pairs.tolist()))


def test_link_prediction_separates_real_edges_from_noise():
    dm = GraphDataModule(n_nodes=600, n_partitions=4, homophily=0.95)
    g = dm.graph
    onehot = torch.nn.functional.one_hot(g.y).float()  # edges mostly join nodes of one class
    args = (g.edge_index, g.link_val_pos, g.link_val_neg, g.link_test_pos, g.link_test_neg)
    auc, hits = link_prediction(onehot + 0.01, *args)
    assert auc > 0.85 and 0 <= hits <= 1
    noise = torch.randn(600, 5, generator=torch.Generator().manual_seed(0))
    auc_noise, _ = link_prediction(noise, *args)
    assert auc_noise < 0.65
    assert link_prediction(onehot + 0.01, *args) == (auc, hits)  # seeded: the same numbers twice


def two_cliques_chain(n_blocks=4, size=10):
    """Dense blocks joined in a chain by single edges: the best partition is the blocks."""
    edges = []
    for b in range(n_blocks):
        nodes = range(b * size, (b + 1) * size)
        edges += [(i, j) for i in nodes for j in nodes if i != j]
        if b:
            edges += [(b * size - 1, b * size), (b * size, b * size - 1)]
    return torch.tensor(edges).T, n_blocks * size


@pytest.mark.parametrize("partitioner", [metis_partition, bfs_partition])
def test_partitions_are_balanced_and_follow_the_structure(partitioner):
    edge_index, n = two_cliques_chain()
    parts = partitioner(edge_index, n, 4, 0)
    assert parts.shape == (n,) and torch.bincount(parts, minlength=4).tolist() == [10, 10, 10, 10]
    cut = (parts[edge_index[0]] != parts[edge_index[1]]).sum().item() // 2
    assert cut <= 6  # METIS finds the 3 bridges; BFS growth crosses a few more at most
    random_cut = (torch.randint(4, (n,))[edge_index[0]] != torch.randint(4, (n,))[edge_index[1]]).sum() // 2
    assert cut < random_cut


def test_evaluate_scores_informative_embeddings_above_noise():
    dm = GraphDataModule(n_nodes=300, n_partitions=4, feature_snr=1.0)
    g = dm.graph
    noise = torch.randn_like(g.x)
    informative = evaluate(g.x, g.x, g, repeats=1)
    mixed = evaluate(g.x, noise, g, repeats=1)  # the node tasks read h_node, link prediction h_link
    noisy = evaluate(noise, noise, g, repeats=1)
    assert set(informative) == {"eval/node_acc", "eval/nmi", "eval/link_auc", "eval/link_hits20",
                                "eval/partition_acc", "eval/mean"}
    for k in ("eval/node_acc", "eval/nmi", "eval/mean"):
        assert informative[k] > noisy[k] + 0.2, k
    parts = [informative[k] for k in ("eval/node_acc", "eval/nmi", "eval/link_auc", "eval/partition_acc")]
    assert informative["eval/mean"].item() == pytest.approx(torch.stack(parts).mean().item())
    assert mixed["eval/node_acc"] == informative["eval/node_acc"] and mixed["eval/nmi"] == informative["eval/nmi"]
    assert mixed["eval/link_auc"] == noisy["eval/link_auc"]
