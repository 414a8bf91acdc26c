"""ParetoGNN's data: the generated graph, users' files, PyG's Cora, and clear errors on bad input."""
import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from zoo.paretognn import data as D
from zoo.paretognn.data import GraphDataError, GraphDataModule, contextual_sbm, load_user_graph

from ..conftest import ROOT, load_recipe

NO_EVAL = ["--data.downstream", "[]"]


def write(path, text):
    path.write_text(text)
    return path


def test_contextual_sbm_has_the_asked_degree_and_homophily():
    data = contextual_sbm(n_nodes=1500, n_classes=5, avg_degree=8.0, homophily=0.8, seed=0)
    src, dst = data.edge_index
    assert data.x.shape == (1500, 64) and int(data.y.max()) == 4
    assert (torch.bincount(data.y) == 300).all()
    assert data.edge_index.shape[1] / 1500 == pytest.approx(8.0, rel=0.05)
    assert (data.y[src] == data.y[dst]).float().mean().item() == pytest.approx(0.8, abs=0.03)
    assert not (src == dst).any()
    # undirected: every edge in both directions
    fwd = set(zip(src.tolist(), dst.tolist()))
    assert all((b, a) in fwd for a, b in fwd)
    # deterministic in the seed, different across seeds
    assert torch.equal(contextual_sbm(seed=0).edge_index, contextual_sbm(seed=0).edge_index)
    assert not torch.equal(contextual_sbm(seed=1).x, contextual_sbm(seed=0).x)


def test_datamodule_prepares_the_four_evaluations():
    dm = GraphDataModule(n_nodes=400, n_partitions=4)
    g = dm.graph
    assert dm.num_features == 64
    full = D.clean(contextual_sbm(n_nodes=400))
    n_und = full.edge_index.shape[1] // 2
    # held-out edges: 10 % val and 20 % test (the official split), gone from the graph that training sees,
    # with as many non-edges; the node tasks embed the whole graph
    assert g.link_test_pos.shape[1] == pytest.approx(0.2 * n_und, abs=1)
    assert g.link_val_pos.shape[1] == pytest.approx(0.1 * n_und, abs=1)
    assert g.link_test_neg.shape == g.link_test_pos.shape
    train = set(zip(*g.edge_index.tolist()))
    assert not any((a, b) in train or (b, a) in train for a, b in zip(*g.link_test_pos.tolist()))
    assert g.edge_index.shape[1] == 2 * (n_und - g.link_test_pos.shape[1] - g.link_val_pos.shape[1])
    assert torch.equal(g.full_edge_index, full.edge_index)
    assert sorted(g.partition.unique().tolist()) == [0, 1, 2, 3]
    assert torch.equal(g.partition, D.metis_partition(full.edge_index, 400, 4, 0))  # of the whole graph, as the official


def test_user_graph_from_csv(tmp_path):
    edges = write(tmp_path / "edges.csv", "source,target\n0,1\n1,2\n\n2,3\n")
    feats = write(tmp_path / "feats.csv", "1,0\n0,1\n1,1\n0.5,0.5\n")
    labels = write(tmp_path / "labels.csv", "0\n1\n0\n1\n")
    data = load_user_graph(edges, feats, labels)
    assert data.x.shape == (4, 2) and data.y.tolist() == [0, 1, 0, 1]
    assert data.edge_index.tolist() == [[0, 1, 2], [1, 2, 3]]
    np.save(tmp_path / "feats.npy", data.x.numpy())
    assert torch.equal(load_user_graph(edges, tmp_path / "feats.npy").x, data.x)


def test_user_graph_from_saved_pyg_data(tmp_path):
    d = contextual_sbm(n_nodes=100, seed=3)
    torch.save(d, tmp_path / "graph.pt")
    torch.save({"x": d.x, "edge_index": d.edge_index}, tmp_path / "dict.pt")
    dm = GraphDataModule(path=str(tmp_path / "graph.pt"), n_partitions=3, standardize=False)
    assert torch.equal(dm.graph.x, d.x) and torch.equal(dm.graph.y, d.y)
    torch.testing.assert_close(GraphDataModule(path=str(tmp_path / "graph.pt"), n_partitions=3).graph.x,
                               D.standardize_columns(d.x))
    assert torch.equal(load_user_graph(tmp_path / "dict.pt").edge_index, d.edge_index)


def test_features_are_standardised_per_column_unless_asked_not_to(tmp_path):
    """As the official loader's StandardScaler: every column to mean 0 and (population) std 1 over all
    nodes, a constant column to 0, for every source; ``--data.standardize false`` keeps them as loaded."""
    x = torch.tensor([[1.0, 5.0, 0.0, 3.0], [2.0, 5.0, 0.0, 3.0], [4.0, 5.0, 1.0, 3.0], [9.0, 5.0, 0.0, 3.0]])
    z = D.standardize_columns(x)
    want = (x[:, 0] - x[:, 0].mean()) / x[:, 0].std(correction=0)
    torch.testing.assert_close(z[:, 0], want)
    assert z[:, 1].eq(0).all() and z[:, 3].eq(0).all()  # constant columns: 0, no division by zero
    torch.testing.assert_close(z[:, 2], torch.tensor([-1.0, -1.0, 3.0, -1.0]) / 3 ** 0.5)
    assert D.standardize_columns(torch.tensor([[1, 2], [3, 2]])).dtype == torch.float32  # integer features too
    # a user's files, with a constant column
    edges = write(tmp_path / "edges.csv", "0,1\n1,2\n2,3\n")
    write(tmp_path / "feats.csv", "".join(",".join(str(v) for v in row.tolist()) + "\n" for row in x))
    dm = GraphDataModule(path=str(edges), features=str(tmp_path / "feats.csv"), downstream=["partition"], n_partitions=2)
    torch.testing.assert_close(dm.graph.x, z)
    raw = GraphDataModule(path=str(edges), features=str(tmp_path / "feats.csv"), downstream=["partition"],
                          n_partitions=2, standardize=False)
    assert torch.equal(raw.graph.x, x)
    # the generated graph, by default and through the recipe's flag
    tiny = ["--config", str(ROOT / "recipes/configs/paretognn/tiny.yaml"), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]
    generated = contextual_sbm(n_nodes=200, n_classes=4, n_features=16, seed=0).x
    std = load_recipe("paretognn").main(tiny, run=False).datamodule.graph.x
    assert std.mean(0).abs().max() < 1e-5 and (std.std(0, correction=0) - 1).abs().max() < 1e-5
    torch.testing.assert_close(std, D.standardize_columns(generated))
    kept = load_recipe("paretognn").main([*tiny, "--data.standardize", "false"], run=False).datamodule.graph.x
    assert torch.equal(kept, generated)


def test_bad_edges_name_the_file_and_line(tmp_path):
    feats = write(tmp_path / "feats.csv", "1,0\n0,1\n1,1\n")
    edges = write(tmp_path / "edges.csv", "0,1\n1,7\n")
    with pytest.raises(GraphDataError, match=r"edges\.csv: line 2: edge 1 -> 7 names a node outside 0\.\.2"):
        load_user_graph(edges, feats)
    negative = write(tmp_path / "neg.csv", "src,dst\n0,1\n-1,2\n")
    with pytest.raises(GraphDataError, match=r"neg\.csv: line 3: .*outside"):
        load_user_graph(negative, feats)
    three = write(tmp_path / "three.csv", "0,1\n0,1,2\n")
    with pytest.raises(GraphDataError, match=r"three\.csv: line 2: expected two node ids"):
        load_user_graph(three, feats)
    words = write(tmp_path / "words.csv", "0,1\nzero,one\n")
    with pytest.raises(GraphDataError, match=r"words\.csv: line 2: expected integers"):
        load_user_graph(words, feats)
    torch.save({"x": torch.ones(3, 2), "edge_index": torch.tensor([[0, 3], [1, 0]])}, tmp_path / "g.pt")
    with pytest.raises(GraphDataError, match=r"g\.pt: edge 1: edge 3 -> 0 names a node outside"):
        load_user_graph(tmp_path / "g.pt")


def test_nan_features_name_the_file_and_node(tmp_path):
    edges = write(tmp_path / "edges.csv", "0,1\n1,2\n")
    feats = write(tmp_path / "feats.csv", "1,0\nnan,1\n1,1\n")
    with pytest.raises(GraphDataError, match=r"feats\.csv: the features of node 1 .* contain NaN or inf"):
        load_user_graph(edges, feats)
    np.save(tmp_path / "inf.npy", np.array([[1.0], [np.inf], [0.0]]))
    with pytest.raises(GraphDataError, match=r"inf\.npy: the features of node 1"):
        load_user_graph(edges, tmp_path / "inf.npy")


def test_a_graph_without_edges_is_refused(tmp_path):
    feats = write(tmp_path / "feats.csv", "1,0\n0,1\n")
    with pytest.raises(GraphDataError, match=r"edges\.csv: the graph has no edges"):
        load_user_graph(write(tmp_path / "edges.csv", "source,target\n"), feats)
    torch.save({"x": torch.ones(2, 2), "edge_index": torch.zeros(2, 0, dtype=torch.long)}, tmp_path / "g.pt")
    with pytest.raises(GraphDataError, match=r"g\.pt: the graph has no edges"):
        load_user_graph(tmp_path / "g.pt")


def test_missing_labels_for_the_probe_name_the_file(tmp_path):
    edges = write(tmp_path / "edges.csv", "0,1\n1,2\n2,3\n3,0\n0,2\n")
    feats = write(tmp_path / "feats.csv", "1,0\n0,1\n1,1\n0,0\n")
    with pytest.raises(GraphDataError, match=r"edges\.csv: no node labels, but node classification and clustering need them"):
        GraphDataModule(path=str(edges), features=str(feats))
    # without those two tasks the same graph is fine
    dm = GraphDataModule(path=str(edges), features=str(feats), downstream=["partition"], n_partitions=2)
    assert dm.graph.y is None and dm.graph.partition.shape == (4,)
    labels = write(tmp_path / "labels.csv", "0\n1\n")
    with pytest.raises(GraphDataError, match=r"labels\.csv: 2 labels for 4 nodes"):
        GraphDataModule(path=str(edges), features=str(feats), labels=str(labels))
    negative = write(tmp_path / "negative.csv", "0\n1\n-1\n0\n")
    with pytest.raises(GraphDataError, match=r"negative\.csv: labels must be integers 0, 1"):
        GraphDataModule(path=str(edges), features=str(feats), labels=str(negative))


def test_other_bad_input(tmp_path):
    with pytest.raises(GraphDataError, match=r"nowhere\.csv: no such file"):
        load_user_graph(tmp_path / "nowhere.csv", tmp_path / "f.csv")
    edges = write(tmp_path / "edges.csv", "0,1\n")
    with pytest.raises(GraphDataError, match=r"edges\.csv: an edge-list CSV needs a feature file"):
        load_user_graph(edges)
    ragged = write(tmp_path / "ragged.csv", "1,0\n0\n")
    with pytest.raises(GraphDataError, match=r"ragged\.csv: rows have different numbers of columns"):
        load_user_graph(edges, ragged)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(GraphDataError, match=r"junk\.pt: not a saved PyG Data"):
        load_user_graph(tmp_path / "junk.pt")
    with pytest.raises(GraphDataError, match=r"unknown data set 'Karate'"):
        GraphDataModule(name="Karate")
    with pytest.raises(GraphDataError, match=r"--data.downstream: unknown \['regression'\]"):
        GraphDataModule(n_nodes=100, downstream=["regression"])


def test_offline_download_says_what_to_do(tmp_path, monkeypatch):
    from torch_geometric import datasets

    def offline(*args, **kwargs):
        raise OSError("Cannot connect to host github.com:443")

    monkeypatch.setattr(datasets, "Planetoid", offline)
    with pytest.raises(GraphDataError, match=r"--data.name Cora: could not load it .* Offline\? .*Cora/raw.*--data.path"):
        GraphDataModule(name="Cora", root=str(tmp_path))


def planetoid_raw():
    for d in D.shared_data_dirs():
        if (d / "planetoid" / "Cora" / "raw").is_dir():
            return d / "planetoid"
    return None


@pytest.mark.skipif(planetoid_raw() is None, reason="no local copy of shared/data/planetoid (set ZOO_SHARED_DATA)")
def test_real_cora_loads_offline(tmp_path):
    assert D.copy_shared_planetoid("Cora", tmp_path)  # PyG writes processed/ beside raw/
    dm = GraphDataModule(name="Cora", root=str(tmp_path), n_partitions=10)
    g = dm.graph
    assert g.x.shape == (2708, 1433) and int(g.y.max()) == 6
    # standardised columns (one of Cora's 1433 words occurs in no paper: that column is 0)
    constant = g.x.eq(0).all(0)
    assert int(constant.sum()) == 1
    assert g.x.mean(0).abs().max() < 1e-4 and (g.x[:, ~constant].std(0, correction=0) - 1).abs().max() < 1e-4
    # Cora has 5278 undirected edges; 30 % are held out for link prediction
    held = g.link_val_pos.shape[1] + g.link_test_pos.shape[1]
    assert held == pytest.approx(0.3 * 5278, abs=2)
    assert g.edge_index.shape[1] == 2 * (5278 - held)
    assert torch.bincount(g.partition, minlength=10).min() > 200  # METIS parts are balanced


def test_a_header_is_told_from_a_bad_first_row_by_its_content(tmp_path):
    feats = write(tmp_path / "feats.csv", "1,0\n0,1\n1,1\n")
    bad_first = write(tmp_path / "bad.csv", "0,x\n0,1\n1,2\n")
    with pytest.raises(GraphDataError, match=r"bad\.csv: line 1: expected integers, got '0,x'"):
        load_user_graph(bad_first, feats)
    headed = write(tmp_path / "headed.csv", "source,target\n0,1\n1,2\n")
    assert load_user_graph(headed, feats).edge_index.tolist() == [[0, 1], [1, 2]]
    second_header = write(tmp_path / "twice.csv", "source,target\n0,1\nsource,target\n")
    with pytest.raises(GraphDataError, match=r"twice\.csv: line 3: expected integers"):
        load_user_graph(second_header, feats)


def test_a_graph_too_small_for_the_evaluation_says_so_up_front(tmp_path):
    edges = write(tmp_path / "edges.csv", "0,1\n1,2\n2,3\n")
    feats = write(tmp_path / "feats.csv", "1,0\n0,1\n1,1\n0,0\n")
    labels = write(tmp_path / "labels.csv", "0\n1\n0\n1\n")
    with pytest.raises(GraphDataError, match=r"graph too small for the evaluation: its 3 edges leave 0 validation and "
                                             r"0 test edges .*its 4 nodes leave 1 training"):
        GraphDataModule(path=str(edges), features=str(feats), labels=str(labels), n_partitions=2)
    dm = GraphDataModule(path=str(edges), features=str(feats), downstream=["partition"], n_partitions=2)
    assert dm.graph.partition.numel() == 4


def test_a_name_and_a_path_together_are_refused(tmp_path):
    edges = write(tmp_path / "edges.csv", "0,1\n1,2\n")
    feats = write(tmp_path / "feats.csv", "1,0\n0,1\n1,1\n")
    with pytest.raises(GraphDataError, match=r"--data.path .*edges\.csv and --data.name Cora both name a graph"):
        GraphDataModule(name="Cora", path=str(edges), features=str(feats))
