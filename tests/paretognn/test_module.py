"""ParetoGNN's module: the step is the min-norm combination of the task gradients, the flags give
the baselines, and a short run learns."""
import inspect

import lightning as L
import pytest
import torch

from zoo.paretognn import GraphDataModule, ParetoGNN
from zoo.paretognn.downstream import evaluate
from zoo.paretognn.module import split_link_targets
from zoo.paretognn.nets import Encoder
from zoo.paretognn.objective import TASKS, mgda_weights
from zoo.paretognn.views import link_batch, neighbour_blocks, saint_nodes


@pytest.fixture(scope="module")
def graph():
    return GraphDataModule(n_nodes=200, n_classes=4, n_features=16, n_partitions=4).graph


def tiny(**kw):
    torch.manual_seed(0)
    return ParetoGNN(in_channels=16, hidden_dims=(32, 16), predictor_dim=32, **kw)


def params(m):
    return [p for p in m.parameters() if p.requires_grad]


def test_step_is_the_min_norm_combination_of_the_task_gradients(graph):
    m = tiny()
    state = m.generator.get_state()
    # by hand: each task's gradient in the same order, from the same random stream
    grads, losses = [], []
    for task in TASKS:
        loss = m.task_loss(task, graph.x, graph.edge_index)
        gs = torch.autograd.grad(loss, params(m), allow_unused=True)
        grads.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(gs, params(m))]))
        losses.append(loss.item())
    grads = torch.stack(grads)
    n_enc = sum(p.numel() for p in m.encoder.parameters())
    alpha = mgda_weights(grads[:, :n_enc])
    m.generator.set_state(state)
    got_losses, got_alpha, step = m.combined_gradient(graph)
    torch.testing.assert_close(got_losses, torch.tensor(losses))
    torch.testing.assert_close(got_alpha, alpha)
    torch.testing.assert_close(step, alpha @ grads)
    assert got_alpha.sum().item() == pytest.approx(1.0, abs=1e-6) and (got_alpha >= 0).all()
    assert (got_alpha > 0).sum() >= 2  # the tasks conflict: the min-norm point is not a vertex


def test_each_head_receives_only_its_own_task_gradient(graph):
    m = tiny()
    _, grads = m.task_gradients(graph.x, graph.edge_index)
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    sizes = [p.numel() for p in params(m)]
    owner = {prefix: task for task, prefixes in m.heads.owned_by().items() for prefix in prefixes}
    offset = 0
    for name, size in zip(names, sizes):
        block = grads[:, offset:offset + size]
        offset += size
        if name.startswith("encoder."):
            assert (block.abs().sum(1) > 0).all(), f"{name}: every task reaches the shared encoder"
            continue
        task = owner[name.split(".")[1]]
        for i, t in enumerate(TASKS):
            assert (block[i].abs().sum() > 0) == (t == task), f"{name} and task {t}"


def test_baselines_by_flag(graph):
    _, weights, _ = tiny(weighting="equal").combined_gradient(graph)
    torch.testing.assert_close(weights, torch.full((5,), 0.2))
    single = tiny(tasks=["link"])
    losses, weights, step = single.combined_gradient(graph)
    assert losses.shape == (1,) and weights.tolist() == [1.0]
    n_enc = sum(p.numel() for p in single.encoder.parameters())
    link_params = sum(p.numel() for p in (*single.heads.link_hidden.parameters(), *single.heads.link_score.parameters()))
    assert (step != 0).sum() <= n_enc + link_params
    with pytest.raises(ValueError, match="--model.tasks must name distinct tasks"):
        tiny(tasks=["link", "jigsaw"])
    with pytest.raises(ValueError, match="--model.tasks must name distinct tasks"):
        tiny(tasks=[])


@pytest.mark.parametrize("conv", ["gat", "sage"])
def test_other_encoders(graph, conv):
    m = tiny(conv=conv)
    losses, weights, step = m.combined_gradient(graph)
    assert torch.isfinite(losses).all() and torch.isfinite(step).all()
    assert m.embed(graph).shape == (200, 16)
    with pytest.raises(ValueError, match="not divisible"):
        ParetoGNN(in_channels=16, hidden_dims=(30,), conv="gat")


def test_subgraph_sampling(graph):
    m = tiny(views="shared", subgraph_nodes=80)
    x, edge_index = m.sample_subgraph(graph)
    assert x.shape == (80, 16) and edge_index.max() < 80 and edge_index.shape[1] > 0
    assert tiny(views="shared", subgraph_nodes=0).sample_subgraph(graph)[0] is graph.x
    assert tiny(views="per_task", subgraph_nodes=80).sample_subgraph(graph)[0] is graph.x  # each task draws its own


def test_a_frozen_encoder_layer_keeps_head_gradients_out_of_mgda(graph):
    """The shared slice is found by name: with the first encoder layer frozen (fine-tuning), the old
    slice "the first numel(encoder) entries" ran into the heads' gradients."""
    m = tiny()
    for p in m.encoder.convs[0].parameters():
        p.requires_grad_(False)
    state = m.generator.get_state()
    losses, grads = m.task_gradients(graph.x, graph.edge_index)
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    sizes = [p.numel() for p in m.parameters() if p.requires_grad]
    shared = torch.cat([torch.full((s,), n.startswith("encoder."), dtype=torch.bool) for n, s in zip(names, sizes)])
    assert not shared[-1] and shared.sum() < sum(p.numel() for p in m.encoder.parameters())
    expected = mgda_weights(grads[:, shared], "l2", losses)
    m.generator.set_state(state)
    _, alpha, _ = m.combined_gradient(graph)
    torch.testing.assert_close(alpha, expected)
    old_slice = mgda_weights(grads[:, :sum(p.numel() for p in m.encoder.parameters())], "l2", losses)
    assert not torch.allclose(old_slice, expected, atol=1e-3)  # what the positional slice gave
    for p in m.encoder.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="every encoder parameter is frozen"):
        m.combined_gradient(graph)


def test_per_task_views_follow_the_official_collator(graph):
    m = tiny(batch_size=5, khop=1, minsg_multiplier=5, decor_nodes=60, recon_nodes=0)
    x, ei = graph.x, graph.edge_index
    # InfoNCE: the 1-hop subgraph around 5 random nodes, since the graph has more than 5 × 5 nodes
    xv, eiv = m.view("minsg", x, ei)
    degree = torch.bincount(ei[0], minlength=200)
    assert 5 < xv.shape[0] <= 5 + 5 * int(degree.max()) and eiv.max() < xv.shape[0]
    # DGI (multiplier 0) and reconstruction (no budget): the whole graph
    assert m.view("ming", x, ei)[0] is x and m.view("recon", x, ei)[0] is x
    # CCA-SSG: a GraphSAINT node sample of at most 60 distinct nodes
    xd, eid = m.view("decor", x, ei)
    assert 20 < xd.shape[0] <= 60 and eid.max() < xd.shape[0]
    # GraphSAINT draws nodes in proportion to their degree
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(200)
    for _ in range(200):
        counts[saint_nodes(ei, 200, 20, g)] += 1
    high, low = degree >= degree.float().quantile(0.8), degree <= degree.float().quantile(0.2)
    assert counts[high].mean() > 1.5 * counts[low].mean()
    # the link task's sampler: the edges asked for and ``neg_ratio`` non-edges per edge
    pos, neg = link_batch(ei, 200, 50, 2, g)
    edges = set(zip(*ei.tolist()))
    assert pos.shape == (2, 50) and all(e in edges for e in zip(*pos.tolist()))
    assert neg.shape == (2, 100) and not any(e in edges for e in zip(*neg.tolist())) and (neg[0] != neg[1]).all()
    assert torch.isfinite(m.task_loss("link", x, ei))


def test_the_link_view_holds_link_edges_positive_edges_a_step(graph, monkeypatch):
    """The official collator draws 10 edges a step (its DataLoader's batch of 1 times 10), whatever
    per_gpu_batch_size is; the link view takes ``link_edges`` of them, not a multiple of batch_size."""
    from zoo.paretognn import module

    drawn = []

    def spy(*args):
        pos, neg = link_batch(*args)
        drawn.append((pos, neg))
        return pos, neg

    monkeypatch.setattr(module, "link_batch", spy)
    assert inspect.signature(ParetoGNN).parameters["link_edges"].default == 10
    edges = set(zip(*graph.edge_index.tolist()))
    assert len(edges) > 37  # every count below is drawn in full, and 10 × batch_size gives another
    for kw, want in (({}, 10), ({"link_edges": 37, "batch_size": 3}, 37), ({"link_edges": 1}, 1)):
        m = tiny(**kw)
        assert m.hparams.link_edges == want
        drawn.clear()
        m.combined_gradient(graph)
        (pos, neg), = drawn
        assert pos.shape == (2, want) and neg.shape == (2, want * m.hparams.link_neg_ratio), kw
        assert all(e in edges for e in zip(*pos.tolist()))


def test_neighbour_blocks_sample_each_layer_and_give_the_full_graph_result_with_large_fanouts(graph):
    ei, g = graph.edge_index, torch.Generator().manual_seed(0)
    seeds = torch.tensor([3, 17, 42, 99])
    nodes, blocks = neighbour_blocks(ei, 200, seeds, [4, 2], g)
    assert nodes[:4].tolist() == seeds.tolist() and len(set(nodes.tolist())) == nodes.numel()
    edges = set(zip(*ei.tolist()))
    (e0, n0), (e1, n1) = blocks
    assert n1 == 4 and n0 > 4 and e0[1].max() < n0 and e1[1].max() < n1
    for (e, n_dst), fanout in zip(blocks, [4, 2]):
        assert all((int(nodes[a]), int(nodes[b])) in edges for a, b in zip(*e.tolist()))  # real edges, message a → b
        kept = torch.bincount(e[1], minlength=n_dst)
        full = torch.bincount(ei[1], minlength=200)[nodes[:n_dst]]
        assert torch.equal(kept, full.clamp(max=fanout))  # min(degree, fanout) neighbours per node
    # with fanouts above every degree, a mean-aggregating encoder gives the seeds' full-graph embeddings
    enc = Encoder(16, (8, 8), conv="sage", norm="none")
    nodes, blocks = neighbour_blocks(ei, 200, seeds, [1000, 1000], g)
    torch.testing.assert_close(enc.forward_blocks(graph.x[nodes], blocks), enc(graph.x, ei)[seeds])


def test_bad_view_settings_name_the_flag():
    with pytest.raises(ValueError, match="--model.link_fanouts needs a fanout for each encoder layer"):
        tiny(link_fanouts=[15])
    with pytest.raises(ValueError, match="--model.batch_size must be at least 1"):
        tiny(batch_size=0)
    with pytest.raises(ValueError, match="^--model.link_edges must be at least 1, got 0$"):
        tiny(link_edges=0)


def test_a_release_without_link_edges_keeps_the_link_batch_it_was_trained_with(tmp_path):
    """A release written before ``link_edges`` existed drew 10 × batch_size edges a step; one written
    since carries its own value."""
    from zoo import hub

    m = tiny(batch_size=7, link_edges=25)
    m.save_release(tmp_path)
    init_args = hub.hparams_of(m)["init_args"]
    assert ParetoGNN.load_release(tmp_path, init_args).hparams.link_edges == 25
    old = {k: v for k, v in init_args.items() if k != "link_edges"}
    loaded = ParetoGNN.load_release(tmp_path, old)
    assert loaded.hparams.link_edges == 70 and "link_edges" not in old
    torch.testing.assert_close(loaded.state_dict(), m.state_dict())


def test_link_targets_leave_the_graph_in_both_directions(graph):
    g = torch.Generator().manual_seed(0)
    kept, pos, neg = split_link_targets(graph.edge_index, 200, 0.3, 2, g)
    kept_set = set(zip(*kept.tolist()))
    assert pos.shape[1] > 0 and neg.shape == (2, 2 * pos.shape[1])
    assert not any((a, b) in kept_set or (b, a) in kept_set for a, b in zip(*pos.tolist()))
    assert kept.shape[1] == graph.edge_index.shape[1] - 2 * pos.shape[1]


def test_a_short_run_learns():
    dm = GraphDataModule(n_nodes=600, n_partitions=5, steps_per_epoch=40)
    torch.manual_seed(0)
    m = ParetoGNN(in_channels=64, hidden_dims=(64, 32), predictor_dim=64, lr=3e-3, eval_repeats=1)
    with torch.no_grad():
        before = evaluate(*m.evaluation_embeddings(dm.graph), dm.graph, repeats=1)
    trainer = L.Trainer(max_steps=40, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(m, dm)
    after = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("eval/")}
    assert after["eval/mean"] > float(before["eval/mean"]) + 0.03, (before, after)
    assert after["eval/node_acc"] > float(before["eval/node_acc"])
