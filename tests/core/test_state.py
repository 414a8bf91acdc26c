"""A model's whole state (its weights and its extra state: a tokenizer, a trajectory, a seed chain) travels
through every path alike: a run's last.ckpt, ``zoo.load`` of it, ``python -m zoo export``, ``zoo.load`` of
the export, ``--model.init_from``; and the hub, which knows files and manifests, imports no model code."""
import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.__main__ import main

from ..conftest import ROOT, load_recipe

METHODS = ("cpt", "deep_ga", "go_explore", "mdpo", "momentum_smoe", "nash_md", "npo", "op_gfn", "paretognn",
           "preference")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit(method: str, root: Path, *args: str):
    config = str(ROOT / "recipes" / "configs" / method / "tiny.yaml")
    cli = load_recipe(method).main(["fit", "--config", config, "--trainer.default_root_dir", str(root), *QUIET, *args])
    return cli.model, root / "version_0" / "checkpoints" / "last.ckpt"


def assert_same(a, b):
    """Extra states equal: tensors exactly, everything else as values."""
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict) and a[k] and all(isinstance(v, torch.Tensor) for v in a[k].values()):
            assert a[k].keys() == b[k].keys(), k
            for name in a[k]:
                torch.testing.assert_close(a[k][name], b[k][name], rtol=0, atol=0)
        else:
            assert a[k] == b[k], k


def round_trip(ckpt: Path, tmp_path: Path):
    """checkpoint -> zoo.load -> export -> zoo.load: the models of each step."""
    from_ckpt = zoo.load(ckpt)
    assert main(["export", str(ckpt), str(tmp_path / "export")]) == 0
    return from_ckpt, zoo.load(tmp_path / "export")


# -- the import graph: files below, models above ----------------------------------------------------------------------------

def zoo_imports(path: Path) -> set[str]:
    """The zoo modules a source file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # from zoo import hub
    return {n for n in names if n == "zoo" or n.startswith("zoo.")}


CORE = {"zoo.hub": "hub.py", "zoo.module": "module.py", "zoo.trust": "trust.py", "zoo.offline": "offline.py",
        "zoo.files": "files.py", "zoo.errors": "errors.py", "zoo.lm.tokenizer": "lm/tokenizer.py"}


def test_the_hub_imports_no_model_code_and_the_core_has_no_import_circle():
    graph = {m: {n for n in zoo_imports(ROOT / "zoo" / f) if n in CORE and n != m} for m, f in CORE.items()}
    hub = zoo_imports(ROOT / "zoo" / "hub.py")
    assert not {n for n in hub if n in ("zoo.module", "zoo.lm") or n.startswith("zoo.lm.")
                or n.split(".")[-1] in METHODS or n.startswith(tuple(f"zoo.{m}." for m in METHODS))}, hub
    assert "zoo.hub" not in graph["zoo.lm.tokenizer"] and "zoo.module" not in graph["zoo.trust"]

    def reach(m, seen):
        for n in graph[m]:
            if n not in seen:
                seen.add(n)
                reach(n, seen)
        return seen

    circles = [m for m in CORE if m in reach(m, set())]
    assert not circles, {m: graph[m] for m in circles}


# -- Go-Explore: the best trajectory ---------------------------------------------------------------

def test_go_explore_checkpoint_load_and_export_replay_the_best_trajectory(tmp_path):
    # in an empty room two iterations of phase 1 reach the goal on any seed: a trajectory worth replaying
    model, ckpt = fit("go_explore", tmp_path / "run", "--model.env", "MiniGrid-Empty-5x5-v0")
    best = float(model.best_score)
    assert best > 0 and len(model.best_actions) > 0, "the tiny run found nothing to replay"
    from_ckpt, exported = round_trip(ckpt, tmp_path)
    for m in (from_ckpt, exported):
        np.testing.assert_array_equal(m.best_actions, model.best_actions)
        assert m.replay()[0] == pytest.approx(best)
        assert float(m.best_score) == best
    assert_same(from_ckpt.extra_state(), model.extra_state())
    assert_same(exported.extra_state(), model.extra_state())


# -- Deep GA: the seed chain ---------------------------------------------------------------------

def test_deep_ga_seed_chain_survives_checkpoint_load_export_load(tmp_path):
    model, ckpt = fit("deep_ga", tmp_path / "run")
    from_ckpt, exported = round_trip(ckpt, tmp_path)
    for m in (from_ckpt, exported):
        assert m.elite() == model.elite() and len(model.elite()) > 1
        assert float(m.chain_sigma) == float(model.chain_sigma)
        torch.testing.assert_close(m.theta, model.theta.cpu(), rtol=0, atol=0)
        assert_same(m.extra_state(), model.extra_state())


# -- the language models: the tokenizer ------------------------------------------------------------

def test_lm_tokenizer_survives_checkpoint_load_export_load(tmp_path):
    model, ckpt = fit("lm", tmp_path / "run")
    from_ckpt, exported = round_trip(ckpt, tmp_path)
    text = "The zoo's tokenizer, byte for byte: ünïcödé."
    for m in (from_ckpt, exported):
        assert m.tokenizer is not None
        assert m.tokenizer(text)["input_ids"] == model.tokenizer(text)["input_ids"]
        assert_same(m.extra_state(), model.extra_state())


# -- Nash-MD: the judge ----------------------------------------------------------------------------

def test_nash_md_loaded_from_a_checkpoint_compares_with_its_judge(tmp_path):
    model, ckpt = fit("nash_md", tmp_path / "run")
    loaded = zoo.load(ckpt)
    prompts = ["Write about the sea."]
    p, a, b = loaded.compare(prompts, loaded.policy, loaded.reference_model(), seed=0)
    assert p.shape == (1,) and 0 <= float(p) <= 1
    assert loaded.judge is not None


# -- export writes the documents a release folder promises -----------------------------------------

def test_export_of_a_run_writes_card_metrics_and_curve(tmp_path):
    _, ckpt = fit("op_gfn", tmp_path / "run")
    out = tmp_path / "export"
    assert main(["export", str(ckpt), str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"card.md", "metrics.json", "curve.png", "manifest.json", "hparams.yaml"} <= names
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics and all(isinstance(v, float) for v in metrics.values())
    card = (out / "card.md").read_text()
    assert "seed_everything" in card or "Seed: 0" in card
    for word in ("Command", "torch", "lightning", "commit"):
        assert word in card
    assert isinstance(zoo.load(out), torch.nn.Module)  # the documents are not in the manifest, and load
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "run"]  # no temporary folder left
