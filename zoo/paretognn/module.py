"""ParetoGNN (Ju et al., ICLR 2023): one GNN encoder self-supervised by five pretext tasks whose
gradients are reconciled by multiple-gradient descent.

Each training step draws every task's own view of the graph, as the official collator does
(``views = per_task``, zoo/paretognn/views.py: the whole graph or a GraphSAINT sample for
reconstruction and CCA-SSG, k-hop subgraphs around random nodes for InfoNCE and DGI, a
neighbour-sampled mini-batch of edges for link prediction), computes each task's loss on its view,
and takes each task's gradient with respect to all parameters. The encoder's trainable part of those
gradients, L2-normalised, goes to the min-norm solver (objective.min_norm_weights); the step then
follows Σ_t α_t ∇L_t — the raw gradients weighted by α, each head receiving its own task's gradient
times its weight, exactly as ParetoGNN's code, which backpropagates Σ_t α_t L_t.

    weighting = mgda    α from the min-norm solver (ParetoGNN)
    weighting = equal   α_t = 1/T (the multi-task baseline)
    tasks = [link]      any subset of recon, ming, minsg, decor, link; one task is a single-task model
    views = shared      every task on one node-induced subgraph of ``subgraph_nodes`` nodes per step

Manual optimisation: the per-task gradients come from torch.autograd.grad and are averaged across
processes in one all-reduce, so under DDP every rank solves for the same α and takes the same step.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.utils import subgraph

from zoo.errors import CheckpointError
from zoo.module import ZooModule
from zoo.paretognn.downstream import evaluate
from zoo.paretognn.nets import Conv, Encoder, Heads, Norm
from zoo.paretognn.objective import (
    TASKS,
    cca_ssg_loss,
    dgi_loss,
    infonce_loss,
    link_reconstruction_loss,
    mgda_weights,
    scaled_cosine_error,
)
from zoo.paretognn.views import induced, khop_view, link_batch, neighbour_blocks, saint_nodes

# manual optimisation saves the weights after the step, which is what resuming needs
warnings.filterwarnings("ignore", "Using ModelCheckpoint with manual optimization")
warnings.filterwarnings("ignore", "Sparse invariant checks are implicitly disabled")  # torchmetrics' NMI


# -- augmentations, drawn from the module's own random stream -------------------------------

def drop_edges(edge_index: Tensor, p: float, g: torch.Generator) -> Tensor:
    """Each directed edge kept with probability 1 − p (DGL's DropEdge, as ParetoGNN)."""
    if p <= 0:
        return edge_index
    keep = torch.rand(edge_index.shape[1], generator=g, device=g.device) >= p
    return edge_index[:, keep.to(edge_index.device)]


def mask_features(x: Tensor, p: float, g: torch.Generator) -> Tensor:
    """Whole feature columns zeroed with probability p (DGL's FeatMask, as ParetoGNN)."""
    if p <= 0:
        return x
    keep = torch.rand(x.shape[1], generator=g, device=g.device) >= p
    return x * keep.to(x.device, x.dtype)


def drop_entries(x: Tensor, p: float, g: torch.Generator) -> Tensor:
    """Inverted dropout of single entries from the generator (F.dropout draws from the global RNG)."""
    if p <= 0:
        return x
    keep = torch.rand(x.shape, generator=g, device=g.device) >= p
    return x * keep.to(x.device, x.dtype) / (1 - p)


def split_link_targets(edge_index: Tensor, n_nodes: int, fraction: float, neg_ratio: int,
                       g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(message-passing edges, positive pairs, negative pairs): a ``fraction`` of the undirected
    edges becomes the positives and leaves the graph in both directions; negatives are uniform."""
    und = edge_index[:, edge_index[0] < edge_index[1]]
    chosen = torch.rand(und.shape[1], generator=g, device=g.device).to(und.device) < fraction
    if not chosen.any():
        chosen[torch.randint(und.shape[1], (1,), generator=g, device=g.device).to(und.device)] = True
    pos = und[:, chosen]
    lo, hi = edge_index.min(0).values, edge_index.max(0).values
    hidden = torch.isin(lo * n_nodes + hi, pos[0] * n_nodes + pos[1])
    neg = torch.randint(n_nodes, (2, pos.shape[1] * neg_ratio), generator=g, device=g.device).to(und.device)
    return edge_index[:, ~hidden], pos, neg


class ParetoGNN(ZooModule):
    curve_metrics = ("eval/mean", "eval/node_acc", "eval/nmi", "eval/link_auc", "eval/partition_acc", "train/loss")
    scales_fp16_gradients = False  # the step's gradient is assembled by hand from per-task autograd.grad

    def __init__(
        self,
        in_channels: int = 64,
        hidden_dims: Sequence[int] = (256, 128),
        conv: Conv = "gcn",
        norm: Norm = "batch",
        dropout: float = 0.0,
        predictor_dim: int = 512,
        tasks: Sequence[str] = TASKS,
        weighting: Literal["mgda", "equal"] = "mgda",
        grad_norm: Literal["l2", "loss", "none"] = "l2",
        views: Literal["per_task", "shared"] = "per_task",
        batch_size: int = 1024,
        link_edges: int = 10,
        khop: int = 3,
        minsg_multiplier: int = 5,
        ming_multiplier: int = 0,
        decor_nodes: int = 10000,
        recon_nodes: int = 0,
        link_fanouts: Sequence[int] = (15, 10, 5),
        subgraph_nodes: int = 0,
        lr: float = 5e-4,
        weight_decay: float = 1e-5,
        recon_mask_rate: float = 0.5,
        recon_edge_drop: float = 0.35,
        sce_alpha: float = 3.0,
        minsg_edge_drop: float = 0.3,
        minsg_feat_drop: float = 0.3,
        tau: float = 0.1,
        contrast_nodes: int = 0,
        decor_edge_drop: float = 0.2,
        decor_feat_drop: float = 0.2,
        decor_lambda: float = 1e-3,
        link_fraction: float = 0.2,
        link_neg_ratio: int = 1,
        link_feat_drop: float = 0.4,
        eval_seed: int = 0,
        eval_repeats: int = 10,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            in_channels: node feature width (set from the data by the recipe).
            hidden_dims: widths of the encoder's layers; the last is the embedding size.
            conv: gcn (default), gat (4 heads) or sage.
            norm: batch (batch statistics, also at evaluation), layer or none.
            dropout: dropout between encoder layers.
            predictor_dim: width of the task heads' hidden layers.
            tasks: pretext tasks, any of recon (GraphMAE), ming (DGI), minsg (InfoNCE), decor (CCA-SSG), link.
            weighting: mgda (min-norm weights, ParetoGNN) or equal (1/T each).
            grad_norm: how task gradients are scaled before the solver: l2 (ParetoGNN), loss or none.
            views: per_task (each task its own view of the graph, as the official collator) or shared
                (every task on one subgraph of ``subgraph_nodes`` nodes per step).
            batch_size: per_task: seed nodes of the k-hop views (the official per_gpu_batch_size).
            link_edges: per_task: positive edges the link task samples per step (the official collator's 10:
                its DataLoader's batch of 1 times 10).
            khop: per_task: hops of the InfoNCE and DGI subgraphs around their seed nodes.
            minsg_multiplier: per_task: InfoNCE's view is the k-hop subgraph around ``batch_size`` random
                nodes when the graph has more than batch_size × this many nodes, else the whole graph (0: always whole).
            ming_multiplier: per_task: the same for DGI (official scripts: 0, the whole graph).
            decor_nodes: per_task: GraphSAINT node budget of CCA-SSG's view; the whole graph when it has
                fewer nodes or this is 0.
            recon_nodes: per_task: the same for reconstruction (official: 0, the whole graph).
            link_fanouts: per_task: neighbours sampled per node at each encoder layer, input layer first,
                for the link task's edges; an encoder of L layers uses the first L (official: 15, 10, 5).
            subgraph_nodes: shared: nodes of the subgraph sampled per step; 0 trains on the whole graph.
            lr: AdamW learning rate.
            weight_decay: AdamW weight decay.
            recon_mask_rate: fraction of nodes whose features are masked and reconstructed.
            recon_edge_drop: edge drop rate of the reconstruction view.
            sce_alpha: exponent α of the scaled cosine error.
            minsg_edge_drop: edge drop rate of each contrastive view.
            minsg_feat_drop: feature-column mask rate of each contrastive view.
            tau: InfoNCE temperature τ.
            contrast_nodes: at most this many nodes of its two views enter InfoNCE, whose cost is quadratic
                in them (0: all, as the official code; its views are already bounded by ``batch_size``).
            decor_edge_drop: edge drop rate of each CCA-SSG view.
            decor_feat_drop: feature-column mask rate of each CCA-SSG view.
            decor_lambda: CCA-SSG's decorrelation weight λ.
            link_fraction: shared: fraction of the subgraph's edges hidden from message passing and reconstructed.
            link_neg_ratio: uniform non-edges per positive edge.
            link_feat_drop: input dropout of the link task (ParetoGNN: 0.4).
            eval_seed: seed of the downstream evaluation's random choices.
            eval_repeats: random 20/80 node splits the two linear probes average over (official: 10).
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__()
        self.save_hyperparameters()
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"--model.tasks must name distinct tasks among {list(TASKS)}, got {list(tasks)}")
        if not hidden_dims:
            raise ValueError("--model.hidden_dims needs at least one layer")
        if views == "per_task" and "link" in tasks and len(link_fanouts) < len(hidden_dims):
            raise ValueError(f"--model.link_fanouts needs a fanout for each encoder layer: --model.hidden_dims has "
                             f"{len(hidden_dims)} layers, link_fanouts {list(link_fanouts)}")
        for name, value in (("batch_size", batch_size), ("link_edges", link_edges), ("khop", khop),
                            ("eval_repeats", eval_repeats)):
            if value < 1:
                raise ValueError(f"--model.{name} must be at least 1, got {value}")
        self.automatic_optimization = False
        self.encoder = Encoder(in_channels, hidden_dims, conv, norm, dropout)
        self.heads = Heads(in_channels, self.encoder.out_dim, predictor_dim)
        g = torch.Generator().manual_seed(0)
        ring = torch.arange(6)
        self.example_input_array = Data(x=torch.randn(6, in_channels, generator=g),
                                        edge_index=torch.stack([torch.cat([ring, (ring + 1) % 6]),
                                                                torch.cat([(ring + 1) % 6, ring])]))

    def setup(self, stage: str) -> None:
        init_from = self.hparams.get("init_from")
        if init_from and self._initialised_from != init_from:  # a release for graphs of another feature width
            from zoo.module import release_hparams

            width, ours = release_hparams(init_from)[1].get("in_channels"), self.hparams.in_channels
            if width is not None and width != ours:
                raise CheckpointError(f"--model.init_from {init_from}: the release's encoder reads {width} node features, "
                                      f"this graph has {ours}, which its first layer cannot take; fine-tune a release "
                                      f"trained on graphs with {ours} features, or train from scratch")
        super().setup(stage)

    def forward(self, graph: Data) -> Tensor:
        """Node embeddings of a graph (x, edge_index)."""
        return self.encoder(graph.x, graph.edge_index)

    # -- the pretext tasks ---------------------------------------------------------------

    def task_loss(self, task: str, x: Tensor, edge_index: Tensor) -> Tensor:
        """The loss of one pretext task on its view of the graph (x, edge_index): its own view
        (views = per_task), or the graph as given (views = shared)."""
        hp, g = self.hparams, self.generator
        per_task = hp.views == "per_task"
        if task == "link":
            return self.link_loss(x, edge_index) if per_task else self.shared_link_loss(x, edge_index)
        if per_task:
            x, edge_index = self.view(task, x, edge_index)
        enc, heads, n = self.encoder, self.heads, x.shape[0]
        if task == "recon":
            masked = torch.zeros(n, dtype=torch.bool, device=x.device)
            masked[torch.randperm(n, generator=g, device=g.device)[: max(1, int(hp.recon_mask_rate * n))].to(x.device)] = True
            ei = drop_edges(edge_index, hp.recon_edge_drop, g)
            h = heads.enc_to_dec(enc(torch.where(masked[:, None], heads.mask_token, x), ei))
            x_pred = heads.decoder(h.masked_fill(masked[:, None], 0.0), ei)
            return scaled_cosine_error(x_pred[masked], x[masked], hp.sce_alpha)
        if task == "ming":
            perm = torch.randperm(n, generator=g, device=g.device).to(x.device)
            return dgi_loss(enc(x, edge_index), enc(x[perm], edge_index), heads.discriminator)
        if task in ("minsg", "decor"):
            edge_p, feat_p = ((hp.minsg_edge_drop, hp.minsg_feat_drop) if task == "minsg"
                              else (hp.decor_edge_drop, hp.decor_feat_drop))
            h1 = enc(mask_features(x, feat_p, g), drop_edges(edge_index, edge_p, g))
            h2 = enc(mask_features(x, feat_p, g), drop_edges(edge_index, edge_p, g))
            if task == "minsg":
                if 0 < hp.contrast_nodes < n:
                    keep = torch.randperm(n, generator=g, device=g.device)[: hp.contrast_nodes].to(x.device)
                    h1, h2 = h1[keep], h2[keep]
                return infonce_loss(heads.projector(h1), heads.projector(h2), hp.tau)
            return cca_ssg_loss(h1, h2, hp.decor_lambda)
        raise ValueError(f"unknown task {task!r}")

    def view(self, task: str, x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        """A task's own view of the graph, as the official collator draws it (views.py)."""
        hp, g, n = self.hparams, self.generator, x.shape[0]
        if task in ("minsg", "ming"):
            multiplier = hp.minsg_multiplier if task == "minsg" else hp.ming_multiplier
            if multiplier and n > hp.batch_size * multiplier:
                return khop_view(x, edge_index, hp.batch_size, hp.khop, g)
            return x, edge_index
        budget = hp.decor_nodes if task == "decor" else hp.recon_nodes
        if budget and n > budget:
            return induced(x, edge_index, saint_nodes(edge_index, n, budget, g))
        return x, edge_index

    def link_loss(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Link reconstruction on a mini-batch of ``link_edges`` edges and uniform non-edges, each
        endpoint embedded from its neighbour-sampled computation graph (the official collator). As
        there, the batch's edges stay in the graph that messages pass along."""
        hp, g, n = self.hparams, self.generator, x.shape[0]
        pos, neg = link_batch(edge_index, n, hp.link_edges, hp.link_neg_ratio, g)
        seeds = torch.cat([pos, neg], 1).unique()
        fanouts = list(hp.link_fanouts)[: len(self.encoder.convs)]
        nodes, blocks = neighbour_blocks(edge_index, n, seeds, fanouts, g)
        h = self.encoder.forward_blocks(drop_entries(x[nodes], hp.link_feat_drop, g), blocks)
        # the seeds are h's first rows, in sorted order
        pos, neg = torch.searchsorted(seeds, pos.contiguous()), torch.searchsorted(seeds, neg.contiguous())
        return link_reconstruction_loss(self.heads.link_logits(h, pos), self.heads.link_logits(h, neg))

    def shared_link_loss(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Link reconstruction on the shared subgraph, its target edges hidden from message passing."""
        hp, g = self.hparams, self.generator
        ei, pos, neg = split_link_targets(edge_index, x.shape[0], hp.link_fraction, hp.link_neg_ratio, g)
        h = self.encoder(drop_entries(x, hp.link_feat_drop, g), ei)
        return link_reconstruction_loss(self.heads.link_logits(h, pos), self.heads.link_logits(h, neg))

    def sample_subgraph(self, graph: Data) -> tuple[Tensor, Tensor]:
        """views = shared: one node-induced subgraph of ``subgraph_nodes`` uniform nodes for every task."""
        n, k = graph.num_nodes, self.hparams.subgraph_nodes
        if self.hparams.views == "per_task" or not k or k >= n:
            return graph.x, graph.edge_index
        g = self.generator
        nodes = torch.randperm(n, generator=g, device=g.device)[:k].sort().values.to(graph.x.device)
        edge_index, _ = subgraph(nodes, graph.edge_index, relabel_nodes=True, num_nodes=n)
        return graph.x[nodes], edge_index

    # -- multiple-gradient descent -------------------------------------------------------

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        """The parameters a step updates, by name, in the order of the flat gradients."""
        return [(name, p) for name, p in self.named_parameters() if p.requires_grad]

    def shared_mask(self) -> Tensor:
        """Which entries of the flat gradient belong to the shared encoder, found by name: a frozen
        encoder layer (fine-tuning) or any order of the modules cannot let heads' gradients in."""
        return torch.cat([torch.full((p.numel(),), name.startswith("encoder."), dtype=torch.bool)
                          for name, p in self.trainable()])

    def task_gradients(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        """(losses [T], gradients [T, P]) over the trainable parameters; averaged over processes so
        that every rank sees the same."""
        params = [p for _, p in self.trainable()]
        losses, grads = [], []
        for task in self.hparams.tasks:
            loss = self.task_loss(task, x, edge_index)
            gs = torch.autograd.grad(loss, params, allow_unused=True)
            grads.append(torch.cat([(gr if gr is not None else torch.zeros_like(p)).reshape(-1).float()
                                    for gr, p in zip(gs, params)]))
            losses.append(loss.detach().float())
        stacked = torch.cat([torch.stack(losses)[:, None], torch.stack(grads)], dim=1)
        stacked = self.trainer.strategy.reduce(stacked, reduce_op="mean") if self._trainer is not None else stacked
        return stacked[:, 0], stacked[:, 1:]

    def task_weights(self, losses: Tensor, grads: Tensor) -> Tensor:
        hp = self.hparams
        n_tasks = grads.shape[0]
        if hp.weighting == "equal" or n_tasks == 1:
            return torch.full((n_tasks,), 1.0 / n_tasks, device=grads.device)
        return mgda_weights(grads[:, self.shared_mask().to(grads.device)], hp.grad_norm, losses)

    def combined_gradient(self, graph: Data) -> tuple[Tensor, Tensor, Tensor]:
        """(task losses [T], task weights α [T], the step's gradient Σ_t α_t ∇L_t [P]) on a sampled subgraph."""
        if not any(p.requires_grad for p in self.encoder.parameters()):
            raise ValueError("every encoder parameter is frozen: ParetoGNN's tasks have nothing shared to train")
        x, edge_index = self.sample_subgraph(graph)
        losses, grads = self.task_gradients(x, edge_index)
        weights = self.task_weights(losses, grads)
        return losses, weights, weights @ grads

    def training_step(self, graph: Data, batch_idx: int) -> Tensor:
        losses, weights, step = self.combined_gradient(graph)
        opt = self.optimizers()
        offset = 0
        for _, p in self.trainable():
            p.grad = step[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
        opt.step()
        opt.zero_grad()
        log = {"train/loss": losses.sum()}
        for task, loss, w in zip(self.hparams.tasks, losses, weights):
            log[f"train/{task}"], log[f"train/weight_{task}"] = loss, w
        self.log_dict(log, batch_size=1)
        self.log("loss", losses.sum(), prog_bar=True, logger=False, batch_size=1)
        return losses.sum()

    # -- downstream evaluation -----------------------------------------------------------

    def evaluation_embeddings(self, graph: Data) -> tuple[Tensor, Tensor]:
        """(h_node, h_link): embeddings of the whole graph for the node tasks, as the official node-task
        model sees it, and of the graph without the held-out edges (the one training sees) for link
        prediction. The same when the graph holds no held-out edges."""
        h_link = self(graph)
        full = getattr(graph, "full_edge_index", None)
        return (h_link if full is None else self.encoder(graph.x, full)), h_link

    def validation_step(self, graph: Data, batch_idx: int) -> None:
        hp = self.hparams
        h_node, h_link = self.evaluation_embeddings(graph)
        self.log_dict(evaluate(h_node, h_link, graph, hp.eval_seed, hp.eval_repeats), batch_size=1, sync_dist=True)

    test_step = validation_step

    @classmethod
    def load_release(cls, directory: Path, init_args: dict[str, Any]) -> "ParetoGNN":
        """A release written before ``link_edges`` existed trained on 10 × batch_size link edges a step: its
        hparams.yaml, which lacks the key, keeps that meaning (the default of 10 applies to new runs)."""
        if "link_edges" not in init_args:
            init_args = {**init_args, "link_edges": 10 * init_args.get("batch_size", 1024)}
        return super().load_release(directory, init_args)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    @torch.no_grad()
    def embed(self, graph: Data) -> Tensor:
        """Frozen embeddings of a graph (x, edge_index), in eval mode."""
        was = self.training
        self.eval()
        try:
            return self(graph.to(self.device))
        finally:
            self.train(was)
