"""The downstream evaluation: metrics by hand, and each task on inputs whose answer is known."""
import pytest
import torch

from zoo.paretognn.data import GraphDataModule
from zoo.paretognn.downstream import (
    bfs_partition,
    clustering_nmi,
    evaluate,
    hits_at_k,
    kmeans,
    linear_probe,
    link_prediction,
    metis_partition,
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


def test_kmeans_and_nmi_recover_separated_blobs():
    x, y = blobs()
    g = torch.Generator().manual_seed(0)
    pred = kmeans(x, 3, g)
    # the same partition up to the names of the clusters
    assert all(len(pred[y == c].unique()) == 1 for c in range(3)) and len(pred.unique()) == 3
    assert clustering_nmi(x, y, g).item() == pytest.approx(1.0, abs=1e-6)
    noise = torch.randn(180, 8, generator=torch.Generator().manual_seed(1))
    assert clustering_nmi(noise, y, g).item() < 0.1


def test_linear_probe_separable_vs_noise():
    x, y = blobs(spread=0.5)
    split = torch.arange(180) % 5  # 0 train, 1 val, 2-4 test
    split[split > 2] = 2
    assert linear_probe(x, y, split).item() == pytest.approx(1.0)
    noise = torch.randn(180, 8, generator=torch.Generator().manual_seed(2))
    assert linear_probe(noise, y, split).item() < 0.6


def test_link_prediction_separates_real_edges_from_noise():
    dm = GraphDataModule(n_nodes=600, n_partitions=4, homophily=0.95)
    g = dm.graph
    gen = torch.Generator().manual_seed(0)
    onehot = torch.nn.functional.one_hot(g.y).float()  # edges mostly join nodes of one class
    auc, hits = link_prediction(torch.nn.functional.normalize(onehot + 0.01, dim=1), g.edge_index, g.link_val_pos,
                                g.link_val_neg, g.link_test_pos, g.link_test_neg, gen)
    assert auc.item() > 0.85 and 0 <= hits.item() <= 1
    noise = torch.randn(600, 5, generator=gen)
    auc_noise, _ = link_prediction(noise, g.edge_index, g.link_val_pos, g.link_val_neg, g.link_test_pos,
                                   g.link_test_neg, gen)
    assert auc_noise.item() < 0.65


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
    dm = GraphDataModule(n_nodes=500, n_partitions=4, feature_snr=1.0)
    g = dm.graph
    informative = evaluate(g.x, g)
    noise = evaluate(torch.randn_like(g.x), g)
    assert set(informative) == {"eval/node_acc", "eval/nmi", "eval/link_auc", "eval/link_hits20",
                                "eval/partition_acc", "eval/mean"}
    for k in ("eval/node_acc", "eval/nmi", "eval/mean"):
        assert informative[k] > noise[k] + 0.2, k
    parts = [informative[k] for k in ("eval/node_acc", "eval/nmi", "eval/link_auc", "eval/partition_acc")]
    assert informative["eval/mean"].item() == pytest.approx(torch.stack(parts).mean().item())
    # a function of the embeddings: the same numbers twice
    assert evaluate(g.x, g)["eval/mean"].item() == informative["eval/mean"].item()
