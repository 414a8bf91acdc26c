"""ParetoGNN's module: the step is the min-norm combination of the task gradients, the flags give
the baselines, and a short run learns."""
import lightning as L
import pytest
import torch

from zoo.paretognn import GraphDataModule, ParetoGNN
from zoo.paretognn.downstream import evaluate
from zoo.paretognn.module import split_link_targets
from zoo.paretognn.objective import TASKS, mgda_weights


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
    m = tiny(subgraph_nodes=80)
    x, edge_index = m.sample_subgraph(graph)
    assert x.shape == (80, 16) and edge_index.max() < 80 and edge_index.shape[1] > 0
    full = tiny(subgraph_nodes=0).sample_subgraph(graph)
    assert full[0] is graph.x


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
    m = ParetoGNN(in_channels=64, hidden_dims=(64, 32), predictor_dim=64, lr=3e-3)
    before = evaluate(m.embed(dm.graph), dm.graph)
    trainer = L.Trainer(max_steps=40, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(m, dm)
    after = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("eval/")}
    assert after["eval/mean"] > float(before["eval/mean"]) + 0.03, (before, after)
    assert after["eval/node_acc"] > float(before["eval/node_acc"])
