"""`python -m zoo export CKPT DIR` never deletes a file it did not write: DIR is new, empty, or an earlier
release (replaced whole); anything else is one line and exit status 2, with every file left as it was."""
import lightning
import pytest
import torch

import zoo
from zoo import hub
from zoo.__main__ import main
from zoo.op_gfn import OPGFN


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    model = OPGFN(height=4, hidden_dim=8)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "zoo_class_path": "zoo.op_gfn.module.OPGFN", "pytorch-lightning_version": lightning.__version__}, path)
    return path


def files_under(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_export_writes_a_new_folder_and_an_empty_one(ckpt, tmp_path):
    assert main(["export", str(ckpt), str(tmp_path / "new")]) == 0
    (tmp_path / "empty").mkdir()
    assert main(["export", str(ckpt), str(tmp_path / "empty")]) == 0
    for name in ("new", "empty"):
        assert isinstance(zoo.load(tmp_path / name), OPGFN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "last.ckpt", "new"]  # no temporary folder left


def test_export_into_a_folder_of_other_files_is_refused_and_deletes_nothing(ckpt, tmp_path, capsys):
    target = tmp_path / "thesis"
    target.mkdir()
    (target / "thesis.tex").write_text("\\documentclass{article}")
    (target / "model.safetensors").write_bytes(b"mine")  # a release's name, but no manifest says it is one
    before = files_under(tmp_path)
    assert main(["export", str(ckpt), str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.safetensors, thesis.tex" in err and "not part of a zoo release" in err
    assert files_under(tmp_path) == before


def test_export_into_the_working_directory_of_a_clone_is_refused(ckpt, tmp_path, monkeypatch, capsys):
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("README.md", "pyproject.toml", ".gitignore"):
        (clone / name).write_text(name)
    monkeypatch.chdir(clone)
    before = files_under(clone)
    assert main(["export", str(ckpt), "."]) == 2
    assert "not part of a zoo release" in capsys.readouterr().err
    assert files_under(clone) == before


def test_export_to_an_existing_file_is_one_line(ckpt, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    assert main(["export", str(ckpt), str(target)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {target}: is a file; a release is written to a folder (give a new folder's name)\n"
    assert target.read_text() == "keep me"


def test_export_replaces_an_earlier_release_whole(ckpt, tmp_path):
    target = tmp_path / "release"
    torch.manual_seed(1)
    hub.save(OPGFN(height=4, hidden_dim=8), target)
    (target / "card.md").write_text("the earlier card")
    (target / "stale.safetensors").write_bytes(b"x")
    manifest = (target / "manifest.json").read_text()
    (target / "manifest.json").write_text(manifest.replace('"files": {', '"files": {"stale.safetensors": "%s", ' %
                                                           hub.sha256(target / "stale.safetensors")))
    assert main(["export", str(ckpt), str(target)]) == 0
    assert sorted(p.name for p in target.iterdir()) == ["hparams.yaml", "manifest.json", "model.safetensors"]
    expected = torch.load(ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(zoo.load(target).state_dict()[k], v) for k, v in expected.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "release"]


def test_a_failed_write_leaves_the_earlier_release_as_it_was(ckpt, tmp_path, monkeypatch):
    target = tmp_path / "release"
    hub.save(OPGFN(height=4, hidden_dim=8), target)
    before = files_under(target)

    def broken(self, directory):
        (directory / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(OPGFN, "save_release", broken)
    with pytest.raises(OSError, match="disk full"):
        hub.save(OPGFN(height=4, hidden_dim=8), target)
    assert files_under(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "release"]


def test_a_release_folder_is_written_as_readable_as_any_new_folder(ckpt, tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        hub.save(OPGFN(height=4, hidden_dim=8), tmp_path / "release")
    finally:
        os.umask(umask)
    assert (tmp_path / "release").stat().st_mode & 0o777 == 0o755
