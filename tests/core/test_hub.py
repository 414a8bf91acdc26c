"""The hub: registry, sha256 verification, safe loading, clear refusals."""
import json

import pytest
import torch

import zoo
from zoo import hub
from zoo.op_gfn import OPGFN


@pytest.fixture
def release(tmp_path, monkeypatch):
    """A registered release 'op-gfn-test' in a temporary checkpoints folder."""
    monkeypatch.setattr(hub, "CHECKPOINTS", tmp_path)
    monkeypatch.setattr(hub, "REGISTRY", tmp_path / "registry.json")
    torch.manual_seed(0)
    model = OPGFN(height=4, hidden_dim=8)
    sums = hub.save(model, tmp_path / "op-gfn-test")
    entry = {"path": "op-gfn-test", "method": "op_gfn", "data": "4×4 hypergrid",
             "headline": {"name": "val/l1", "value": 0.5}, "files": sums}
    (tmp_path / "registry.json").write_text(json.dumps({"op-gfn-test": entry}))
    return model, tmp_path / "op-gfn-test"


def test_load_by_id_gives_the_same_module_in_eval_mode(release):
    model, _ = release
    loaded = zoo.load("op-gfn-test")
    assert isinstance(loaded, OPGFN) and not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_list_models_prints_a_table(release, capsys):
    rows = zoo.list_models()
    assert [r["id"] for r in rows] == ["op-gfn-test"]
    out = capsys.readouterr().out
    assert "op-gfn-test" in out and "val/l1" in out and "4×4 hypergrid" in out


def test_a_corrupted_weights_file_is_refused_naming_it(release):
    _, directory = release
    data = bytearray((directory / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (directory / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(hub.CheckpointError, match=r"model\.safetensors: sha256 is .* registry says"):
        zoo.load("op-gfn-test")


def test_a_changed_hparams_file_is_refused_naming_it(release):
    _, directory = release
    (directory / "hparams.yaml").write_text((directory / "hparams.yaml").read_text().replace("hidden_dim: 8", "hidden_dim: 9"))
    with pytest.raises(hub.CheckpointError, match=r"hparams\.yaml: sha256"):
        zoo.load("op-gfn-test")


def test_an_unregistered_directory_with_mismatched_hparams_names_the_tensor(release, tmp_path):
    _, directory = release
    other = tmp_path / "copy"
    other.mkdir()
    (other / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    (other / "hparams.yaml").write_text((directory / "hparams.yaml").read_text().replace("hidden_dim: 8", "hidden_dim: 9"))
    with pytest.raises(hub.CheckpointError, match=r"shape mismatches pf\.0\.weight"):
        zoo.load(other)


def test_a_truncated_safetensors_file_is_refused(release, tmp_path):
    _, directory = release
    other = tmp_path / "broken"
    other.mkdir()
    (other / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes()[:40])
    (other / "hparams.yaml").write_text((directory / "hparams.yaml").read_text())
    with pytest.raises(hub.CheckpointError, match="not a valid safetensors file"):
        zoo.load(other)


def test_a_class_outside_the_zoo_is_never_imported(release, tmp_path):
    _, directory = release
    other = tmp_path / "evil"
    other.mkdir()
    (other / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    (other / "hparams.yaml").write_text("class_path: os.system\ninit_args: {}\n")
    with pytest.raises(hub.CheckpointError, match="outside the zoo package"):
        zoo.load(other)


def test_an_unknown_id_lists_the_known_ones(release):
    with pytest.raises(hub.CheckpointError, match="known: op-gfn-test"):
        zoo.load("op-gfn-nope")


def test_the_released_checkpoints_verify():
    """Every release committed to checkpoints/ matches its registered sums and loads."""
    entries = hub.list_models(print_table=False)
    assert {"op-gfn-hypergrid", "op-gfn-branin-currin"} <= {e["id"] for e in entries}
    for entry in entries:
        hub.verify(hub.CHECKPOINTS / entry["path"], entry["files"])
        assert not zoo.load(entry["id"]).training
