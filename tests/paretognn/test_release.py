"""The released Cora encoder: it loads verified, embeds, fine-tunes, and refuses a wrong graph clearly."""
import pytest
import torch

import zoo
from zoo import hub
from zoo.paretognn import GraphDataModule, ParetoGNN
from zoo.paretognn.data import copy_shared_planetoid
from zoo.paretognn.downstream import HEADLINE, evaluate

from ..conftest import ROOT, load_recipe
from .test_data import planetoid_raw

RELEASE = "paretognn-cora"
released = pytest.mark.skipif(RELEASE not in hub.registry(), reason="paretognn-cora is not released in this checkout")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@released
def test_release_loads_and_carries_its_four_metrics():
    model = zoo.load(RELEASE)
    assert isinstance(model, ParetoGNN) and not model.training
    assert model.hparams.in_channels == 1433
    # released before link_edges existed: its hparams.yaml lacks the key and it trained on 10 × 1024 link edges
    assert model.hparams.link_edges == 10240
    with torch.no_grad():
        h = model(model.example_input_array)
    assert h.shape == (6, model.encoder.out_dim) and torch.isfinite(h).all()
    entry = hub.registry()[RELEASE]
    import json

    metrics = json.loads((hub.CHECKPOINTS / entry["path"] / "metrics.json").read_text())
    for key in (*HEADLINE, "eval/link_hits20", "eval/mean"):
        assert 0 < metrics[key] <= 1, key
    card = (hub.CHECKPOINTS / entry["path"] / "card.md").read_text()
    assert "eval/partition_acc" in card and "recipes/configs/paretognn/cora.yaml" in card


@released
def test_fine_tuning_on_another_graph_fails_clearly(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        load_recipe("paretognn").main(["fit", "--config", str(ROOT / "recipes/configs/paretognn/tiny.yaml"), *QUIET,
                                       "--trainer.default_root_dir", str(tmp_path), "--model.init_from", RELEASE])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "reads 1433 node features" in err and "this graph has 16" in err and "train from scratch" in err


@released
@pytest.mark.slow  # the official evaluation: 10 grid-searched splits of two probes, about a CPU-minute
@pytest.mark.skipif(planetoid_raw() is None, reason="no local copy of shared/data/planetoid (set ZOO_SHARED_DATA)")
def test_release_reproduces_its_metrics_on_cora(tmp_path):
    assert copy_shared_planetoid("Cora", tmp_path)
    # the release was trained on Cora's features as loaded, before the data module standardised them
    graph = GraphDataModule(name="Cora", root=str(tmp_path), standardize=False).graph
    model = zoo.load(RELEASE)
    with torch.no_grad():
        h_node, h_link = model.evaluation_embeddings(graph)
    got = evaluate(h_node, h_link, graph, model.hparams.eval_seed, model.hparams.eval_repeats)
    import json

    card = json.loads((hub.CHECKPOINTS / hub.registry()[RELEASE]["path"] / "metrics.json").read_text())
    for key in HEADLINE:
        assert float(got[key]) == pytest.approx(card[key], abs=0.02), key
