"""Graphs for ParetoGNN: the embedded contextual SBM, PyG's own data sets, or a user's graph.

    --data.name csbm                   a contextual stochastic block model generated locally (default)
    --data.name Cora|CiteSeer|PubMed   Planetoid        --data.name Computers|Photo   Amazon
    --data.name CS|Physics             Coauthor         --data.name WikiCS
    --data.name ogbn-arxiv             OGB (needs ``pip install ogb``)
    --data.root data/cache/pyg         where PyG keeps (or finds) the files: ROOT/<name>/raw, as PyG lays them out
    --data.path graph.pt               a saved PyG ``Data`` (x, edge_index, optional y), or a dict of those tensors
    --data.path edges.csv --data.features feats.csv [--data.labels labels.csv]
                                       an edge list (two integer columns, optional header) with one feature row
                                       per node (CSV or .npy) and optional integer labels (one per line, or .npy)

Every graph is made undirected, loses its self-loops, and is checked: node ids within range, finite
features, at least one edge, labels for every node where node classification or clustering is asked
for. A problem is an error naming the file and, where there is one, the line. Its features are then
standardised column by column over all nodes, as the official loader does (``--data.standardize``).

The data module then prepares the downstream evaluation of ParetoGNN's official code: held-out
edges for link prediction (PyG's RandomLinkSplit, 10 % / 20 % as the official link_gen.py; they
leave the graph that training sees) and METIS partitions of the whole graph for partition prediction.
Each training step receives the training graph; the module draws each pretext task's view of it
(see module.py).
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from zoo.errors import UserError
from zoo.paretognn.downstream import DOWNSTREAM, metis_partition

ROOT = Path(__file__).resolve().parents[2]
PLANETOID, AMAZON, COAUTHOR = ("Cora", "CiteSeer", "PubMed"), ("Computers", "Photo"), ("CS", "Physics")
NAMES = ("csbm", *PLANETOID, *AMAZON, *COAUTHOR, "WikiCS", "ogbn-arxiv")


class GraphDataError(UserError):
    """A graph file (or data set) that cannot be used, with the file and the problem in the message."""


def shared_data_dirs() -> list[Path]:
    """Where a local copy of public data sets may lie (tests and benchmarks use it when present):
    $ZOO_SHARED_DATA, then shared/data beside the repository or beside its parent folder."""
    env = os.environ.get("ZOO_SHARED_DATA")
    dirs = [Path(env)] if env else []
    dirs += [ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"]
    return [d for d in dirs if d.is_dir()]


def copy_shared_planetoid(name: str, root: str | Path) -> bool:
    """Copy a local shared copy of planetoid/<name>/raw to root/<name>/raw unless it is there
    (PyG writes processed/ beside raw/, and shared copies are read-only). True if root has it then."""
    import shutil

    target = Path(root) / name / "raw"
    if not target.is_dir():
        source = next((d / "planetoid" / name / "raw" for d in shared_data_dirs()
                       if (d / "planetoid" / name / "raw").is_dir()), None)
        if source is None:
            return False
        shutil.copytree(source, target)
    return True


# -- the embedded default ------------------------------------------------------------------

def contextual_sbm(n_nodes: int = 1500, n_classes: int = 5, n_features: int = 64, avg_degree: float = 8.0,
                   homophily: float = 0.6, feature_snr: float = 0.3, seed: int = 0) -> Data:
    """A contextual stochastic block model (Deshpande et al. 2018): balanced classes; an edge
    between two nodes with probability p_in within a class and p_out across, chosen so that the
    expected degree is ``avg_degree`` and a fraction ``homophily`` of edges stays within a class;
    features x_v = μ_{y_v} + ε with μ_c a random direction of norm ``feature_snr`` and ε ~ N(0, I/d)
    (noise of norm about 1). Neither the features nor the structure alone recovers the classes well.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_nodes) % n_classes
    y = y[torch.randperm(n_nodes, generator=g)]
    size = n_nodes / n_classes
    p_in = homophily * avg_degree / size
    p_out = (1 - homophily) * avg_degree / (n_nodes - size)
    if not (0 <= p_in <= 1 and 0 <= p_out <= 1):
        raise GraphDataError(f"csbm: avg_degree {avg_degree} and homophily {homophily} give edge probabilities "
                             f"p_in={p_in:.3g}, p_out={p_out:.3g} outside [0, 1]")
    # sample the upper triangle block by block to keep memory at O(n · block)
    rows, cols = [], []
    block = max(1, 2_000_000 // n_nodes)
    for start in range(0, n_nodes, block):
        r = torch.arange(start, min(start + block, n_nodes))
        same = y[r, None] == y[None, :]
        p = torch.where(same, p_in, p_out)
        hit = (torch.rand(p.shape, generator=g) < p) & (r[:, None] < torch.arange(n_nodes)[None, :])
        i, j = hit.nonzero(as_tuple=True)
        rows.append(r[i])
        cols.append(j)
    edge_index = to_undirected(torch.stack([torch.cat(rows), torch.cat(cols)]), num_nodes=n_nodes)
    means = torch.randn(n_classes, n_features, generator=g)
    means = feature_snr * means / means.norm(dim=1, keepdim=True)
    x = means[y] + torch.randn(n_nodes, n_features, generator=g) / math.sqrt(n_features)
    return Data(x=x, edge_index=edge_index, y=y)


# -- PyG's data sets -----------------------------------------------------------------------

def load_pyg(name: str, root: str | Path) -> Data:
    """One of PyG's node-level data sets, downloaded into (or read from) ``root``."""
    from torch_geometric import datasets

    root = Path(root)
    try:
        if name in PLANETOID:
            ds = datasets.Planetoid(str(root), name)
        elif name in AMAZON:
            ds = datasets.Amazon(str(root), name)
        elif name in COAUTHOR:
            ds = datasets.Coauthor(str(root), name)
        elif name == "WikiCS":
            ds = datasets.WikiCS(str(root / "WikiCS"), is_undirected=True)
        elif name == "ogbn-arxiv":
            try:
                from ogb.nodeproppred import PygNodePropPredDataset
            except ImportError as e:
                raise GraphDataError("--data.name ogbn-arxiv needs the ogb package: pip install ogb") from e
            ds = PygNodePropPredDataset("ogbn-arxiv", root=str(root))
        else:
            raise GraphDataError(f"--data.name: unknown data set {name!r}; use one of {list(NAMES)} or --data.path")
    except (OSError, RuntimeError) as e:  # URLError is an OSError; PyG wraps some failures in RuntimeError
        raise GraphDataError(
            f"--data.name {name}: could not load it into {root} ({type(e).__name__}: {e}). Offline? Put the "
            f"raw files where PyG looks for them ({root}/{name}/raw for Planetoid, Amazon and Coauthor), point "
            "--data.root at a folder that has them, or pass your own graph with --data.path") from e
    data = ds[0]
    if data.y is not None:
        data.y = data.y.view(-1)
    return Data(x=data.x.float(), edge_index=data.edge_index, y=data.y)


# -- a user's own graph --------------------------------------------------------------------

def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _read_rows(path: Path, kind: type) -> tuple[list[list], list[int]]:
    """Rows of a CSV file parsed as ``kind`` and their line numbers. A first line of names only (no
    cell is a number: ``source,target``) is a header; any other line that does not parse is an
    error naming it. Blank lines are skipped."""
    rows, lines = [], []
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if not rows and not lines and lineno == 1 and not any(_is_number(c.strip()) for c in row):
                lines.append(0)  # the header: remembered only so that no later line is taken for one
                continue
            try:
                rows.append([kind(c) for c in row])
                lines.append(lineno)
            except ValueError:
                want = "integers" if kind is int else "numbers"
                raise GraphDataError(f"{path}: line {lineno}: expected {want}, got {','.join(row)!r}") from None
    return rows, [n for n in lines if n > 0]


def _read_matrix(path: Path, kind: type) -> Tensor:
    if not path.exists():
        raise GraphDataError(f"{path}: no such file")
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False))
    if path.suffix == ".pt":
        return torch.load(path, map_location="cpu", weights_only=True)
    rows, _ = _read_rows(path, kind)
    if not rows:
        raise GraphDataError(f"{path}: no rows")
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise GraphDataError(f"{path}: rows have different numbers of columns {sorted(widths)}")
    return torch.tensor(rows, dtype=torch.long if kind is int else torch.float)


def load_user_graph(path: str | Path, features: str | Path | None = None, labels: str | Path | None = None) -> Data:
    """A saved PyG Data / dict of tensors (.pt), or an edge-list CSV with a features file."""
    path = Path(path)
    if not path.exists():
        raise GraphDataError(f"{path}: no such file (--data.path)")
    if path.suffix == ".pt":
        from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
        from torch_geometric.data.storage import GlobalStorage

        try:
            with torch.serialization.safe_globals([Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same error for the user
            raise GraphDataError(f"{path}: not a saved PyG Data or dict of tensors readable without unpickling code ({e})") from e
        obj = obj.to_dict() if isinstance(obj, Data) else obj
        if not isinstance(obj, dict) or "edge_index" not in obj or "x" not in obj:
            raise GraphDataError(f"{path}: expected a PyG Data or a dict with at least 'x' and 'edge_index'")
        data = Data(x=obj["x"], edge_index=obj["edge_index"], y=obj.get("y"))
        sources = {"x": path, "edge_index": path, "y": path}
    else:
        if features is None:
            raise GraphDataError(f"{path}: an edge-list CSV needs a feature file too (--data.features)")
        rows, lines = _read_rows(path, int)
        bad = next((i for i, r in enumerate(rows) if len(r) != 2), None)
        if bad is not None:
            raise GraphDataError(f"{path}: line {lines[bad]}: expected two node ids 'source,target', got {rows[bad]}")
        edge_index = torch.tensor(rows, dtype=torch.long).reshape(-1, 2).T
        data = Data(x=_read_matrix(Path(features), float).float(), edge_index=edge_index)
        if labels is not None:
            data.y = _read_matrix(Path(labels), int).view(-1)
        sources = {"x": Path(features), "edge_index": path, "y": labels and Path(labels)}
        validate_graph(data, sources, lines=lines)
        return data
    validate_graph(data, sources)
    if data.y is not None:
        data.y = data.y.view(-1).long()
    return data


def validate_graph(data: Data, sources: dict[str, Path | str | None], lines: list[int] | None = None) -> None:
    """Raise GraphDataError naming the file (and line) for unusable input; ``lines`` are the line
    numbers of the edges when they come from a CSV file."""
    x, ei = data.x, data.edge_index
    src = sources.get("edge_index")
    at = (lambda i: f"line {lines[i]}") if lines else (lambda i: f"edge {i}")
    if x is None or x.dim() != 2 or x.shape[0] == 0:
        raise GraphDataError(f"{sources.get('x')}: features must be a matrix with one row per node, got shape "
                             f"{None if x is None else tuple(x.shape)}")
    n = x.shape[0]
    if not torch.isfinite(x).all():
        row = int((~torch.isfinite(x)).any(1).nonzero()[0])
        raise GraphDataError(f"{sources.get('x')}: the features of node {row} (its row {row}, counting from 0) "
                             "contain NaN or inf")
    if ei is None or ei.numel() == 0:
        raise GraphDataError(f"{src}: the graph has no edges; ParetoGNN's pretext tasks learn from the structure")
    if ei.dim() != 2 or ei.shape[0] != 2:
        raise GraphDataError(f"{src}: edge_index must have shape [2, E], got {tuple(ei.shape)}")
    if ei.is_floating_point():
        raise GraphDataError(f"{src}: edge_index must hold integer node ids, got {ei.dtype}")
    out = ((ei < 0) | (ei >= n)).any(0)
    if out.any():
        i = int(out.nonzero()[0])
        raise GraphDataError(f"{src}: {at(i)}: edge {ei[0, i].item()} -> {ei[1, i].item()} names a node outside "
                             f"0..{n - 1} (the features have {n} rows)")
    y = getattr(data, "y", None)
    if y is not None and y.numel() != n:
        raise GraphDataError(f"{sources.get('y')}: {y.numel()} labels for {n} nodes")
    if y is not None and (y.is_floating_point() and not torch.equal(y, y.round()) or (y < 0).any()):
        raise GraphDataError(f"{sources.get('y')}: labels must be integers 0, 1, …, one per node")


def standardize_columns(x: Tensor, block: int = 256) -> Tensor:
    """Each column of ``x`` to zero mean and unit variance over the rows (the population standard
    deviation, as scikit-learn's StandardScaler, which the official loader fits on all nodes); a
    constant column becomes 0. Statistics in float64, ``block`` columns at a time to bound the memory."""
    out = torch.empty(x.shape, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    for start in range(0, x.shape[1], block):
        cols = x[:, start:start + block].double()
        constant = (cols == cols[:1]).all(0)
        std = torch.where(constant, 1.0, cols.std(0, correction=0))
        out[:, start:start + block] = ((cols - cols.mean(0)) / std).masked_fill(constant, 0.0)
    return out


def clean(data: Data) -> Data:
    """Undirected, no self-loops, no duplicate edges."""
    ei, _ = remove_self_loops(data.edge_index.long())
    data.edge_index = coalesce(to_undirected(ei, num_nodes=data.num_nodes), num_nodes=data.num_nodes)
    return data


# -- the evaluation bundle -----------------------------------------------------------------

def prepare_evaluation(data: Data, downstream: Sequence[str], seed: int, val_edges: float = 0.1,
                       test_edges: float = 0.2, n_partitions: int = 10, source: str = "") -> Data:
    """The training graph plus what the four downstream tasks need, fixed by ``seed`` (the official
    link_gen.py's split: 10 % of the undirected edges for validation, 20 % for test):

    edge_index        the training graph: the whole graph without the held-out edges
    full_edge_index   the whole graph, which the node tasks embed (as the official node-task model)
    link_prediction   held-out positive edges (val, test) and as many non-edges
    partition         METIS partitions of the whole graph into ``n_partitions`` parts

    The node tasks draw their own random 20/80 splits at evaluation (downstream.linear_probe).
    """
    unknown = [t for t in downstream if t not in DOWNSTREAM]
    if unknown:
        raise GraphDataError(f"--data.downstream: unknown {unknown}; use some of {list(DOWNSTREAM)}")
    if {"node_classification", "clustering"} & set(downstream) and getattr(data, "y", None) is None:
        raise GraphDataError(f"{source}: no node labels, but node classification and clustering need them: "
                             "pass --data.labels FILE, or leave them out of --data.downstream")
    check_size(data, downstream, val_edges, test_edges, n_partitions, source)
    out = Data(x=data.x, edge_index=data.edge_index, full_edge_index=data.edge_index, y=getattr(data, "y", None),
               downstream=list(downstream))
    if "link_prediction" in downstream:
        from torch_geometric.transforms import RandomLinkSplit

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            link_split = RandomLinkSplit(num_val=val_edges, num_test=test_edges, is_undirected=True,
                                         add_negative_train_samples=False, split_labels=True)
            train, val, test = link_split(Data(x=data.x, edge_index=data.edge_index))
        out.edge_index = train.edge_index
        out.link_val_pos, out.link_val_neg = val.pos_edge_label_index, val.neg_edge_label_index
        out.link_test_pos, out.link_test_neg = test.pos_edge_label_index, test.neg_edge_label_index
    if "partition" in downstream:
        out.partition = metis_partition(data.edge_index, data.num_nodes, n_partitions, seed)
    if out.edge_index.numel() == 0:
        raise GraphDataError(f"{source}: no edges left for training after holding out the link-prediction edges")
    return out


def check_size(data: Data, downstream: Sequence[str], val_edges: float, test_edges: float, n_partitions: int,
               source: str) -> None:
    """A graph too small for the evaluation splits is refused up front, saying what is short."""
    n, n_edges = data.num_nodes, data.edge_index.shape[1] // 2  # undirected edges
    short = []
    if "link_prediction" in downstream:
        n_val, n_test = int(math.floor(val_edges * n_edges)), int(math.floor(test_edges * n_edges))
        if min(n_val, n_test) < 1 or n_edges - n_val - n_test < 1:
            short.append(f"its {n_edges} edges leave {n_val} validation and {n_test} test edges for link prediction "
                         f"(--data.val_edges {val_edges}, --data.test_edges {test_edges})")
    if {"node_classification", "clustering"} & set(downstream):
        n_train = int(round(0.2 * n))  # the probes' random 20/80 splits
        if min(n_train, n - n_train) < 2 * int(data.y.max()) + 2:
            short.append(f"its {n} nodes leave {n_train} training and {n - n_train} test nodes for the probes' "
                         "20/80 splits: too few for two per class")
    if "partition" in downstream and n < 2 * n_partitions:
        short.append(f"its {n} nodes are too few for {n_partitions} partitions (--data.n_partitions)")
    if short:
        raise GraphDataError(f"{source}: graph too small for the evaluation: " + "; ".join(short) +
                             ". Use a larger graph, or leave those tasks out of --data.downstream")


class Repeat(Dataset):
    """The same graph ``n`` times: each training step receives the whole training graph."""

    def __init__(self, graph: Data, n: int) -> None:
        self.graph, self.n = graph, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Data:
        return self.graph


class GraphDataModule(L.LightningDataModule):
    def __init__(
        self,
        name: str | None = None,
        root: str = "data/cache/pyg",
        path: str | None = None,
        features: str | None = None,
        labels: str | None = None,
        downstream: Sequence[str] = DOWNSTREAM,
        n_nodes: int = 1500,
        n_classes: int = 5,
        n_features: int = 64,
        avg_degree: float = 8.0,
        homophily: float = 0.6,
        feature_snr: float = 0.3,
        data_seed: int = 0,
        val_edges: float = 0.1,
        test_edges: float = 0.2,
        n_partitions: int = 10,
        standardize: bool = True,
        steps_per_epoch: int = 50,
    ) -> None:
        """
        Args:
            name: ``csbm`` (generated; the default when no path is given), or a PyG data set: Cora, CiteSeer,
                PubMed, Computers, Photo, CS, Physics, WikiCS, ogbn-arxiv. Not together with ``path``.
            root: folder of PyG's data sets (ROOT/<name>/raw holds the raw files).
            path: a user's graph instead: a saved PyG Data (.pt) or an edge-list CSV.
            features: with an edge-list CSV, the node features (CSV rows or .npy), one row per node.
            labels: optional node labels (CSV, one integer per line, or .npy).
            downstream: the evaluation tasks to prepare: node_classification, clustering, link_prediction, partition.
            n_nodes: csbm: number of nodes.
            n_classes: csbm: number of classes (blocks).
            n_features: csbm: feature dimension.
            avg_degree: csbm: expected degree.
            homophily: csbm: expected fraction of edges within a class.
            feature_snr: csbm: norm of the class means (noise has norm about 1).
            data_seed: seed of the generated graph, the held-out edges and the partitions.
            val_edges: fraction of edges held out to select the link predictor (official: 0.1).
            test_edges: fraction of edges held out to test it (official: 0.2).
            n_partitions: METIS parts for partition prediction.
            standardize: each feature column to zero mean and unit variance over all nodes, as the official
                loader's StandardScaler; a constant column becomes 0. False keeps the features as loaded.
            steps_per_epoch: training steps between two downstream evaluations.
        """
        super().__init__()
        self.save_hyperparameters()
        if path is not None and name is not None:
            raise GraphDataError(f"--data.path {path} and --data.name {name} both name a graph: give one of them "
                                 "(a config that sets data.name needs --data.name null beside --data.path)")
        if path is not None:
            raw, self.source = load_user_graph(path, features, labels), str(path if labels is None else labels)
        elif name in (None, "csbm"):
            raw, self.source = contextual_sbm(n_nodes, n_classes, n_features, avg_degree, homophily, feature_snr,
                                              data_seed), "csbm"
        else:
            raw, self.source = load_pyg(name, root), f"--data.name {name}"
            validate_graph(raw, {"x": self.source, "edge_index": self.source, "y": self.source})
        if standardize:
            raw.x = standardize_columns(raw.x)
        self.graph = prepare_evaluation(clean(raw), tuple(downstream), data_seed, val_edges, test_edges,
                                        n_partitions, self.source)

    @property
    def num_features(self) -> int:
        return self.graph.x.shape[1]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Repeat(self.graph, self.hparams.steps_per_epoch), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(Repeat(self.graph, 1), batch_size=None)

    test_dataloader = val_dataloader
