"""No file runs code: a release, a checkpoint or an init_from that names code outside the zoo is
refused before anything is imported, naming the file and the key; checkpoints are never unpickled.

Each crafted file would, if loaded, create a marker file; every refusal test checks that it does not
exist afterwards."""
import json
import os

import lightning
import pytest
import torch
import yaml

import zoo
from zoo import hub
from zoo.module import import_class
from zoo.op_gfn import OPGFN
from zoo.runs import AtomicCheckpointIO
from zoo.trust import is_zoo_code

from ..conftest import ROOT, load_recipe
from .test_hub import remanifest

TINY = str(ROOT / "recipes" / "configs" / "op_gfn" / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture
def marker(tmp_path, monkeypatch):
    """A path that crafted code would create, and an evil.py in the working directory that creates it."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "MARKER"
    (tmp_path / "evil.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(path)!r}).write_text('ran')\n"
        "from zoo.op_gfn.data import HyperGrid\n"
        "class Evil(HyperGrid):\n"
        "    def __init__(self, **kw):\n"
        "        super().__init__(2, 4, 0.1, 0.5, 2.0)\n")
    return path


CRAFTED = {  # (class_path, env, env_kwargs): what a forged file says
    "os.system with a command": ("zoo.op_gfn.module.OPGFN", "os:system", {"command": "touch MARKER"}),
    "a file beside the release": ("zoo.op_gfn.module.OPGFN", "evil.py:Evil", {}),
    "MDPO with os.system": ("zoo.mdpo.module.MDPO", "os:system", {"command": "touch MARKER"}),
    "zoo.rl.make_env forwarding": ("zoo.mdpo.module.MDPO", "zoo.rl:make_env", {"env_id": "os:system",
                                                                               "command": "touch MARKER"}),
    "a zoo model as environment": ("zoo.op_gfn.module.OPGFN", "zoo.mdpo.module:MDPO",
                                   {"env": "os:system", "env_kwargs": {"command": "touch MARKER"}}),
}


def forged_release(directory, class_path, env, env_kwargs):
    """A release folder (with a matching manifest, as a forger would write) whose hparams name code."""
    directory.mkdir()
    hub.write_safetensors(OPGFN(height=4, hidden_dim=8).state_dict(), directory / "model.safetensors")
    init_args = {"env": env, "env_kwargs": env_kwargs, "height": 4, "hidden_dim": 8}
    (directory / "hparams.yaml").write_text(yaml.safe_dump({"class_path": class_path, "init_args": init_args}))
    remanifest(directory)
    return directory


def forged_checkpoint(path, env, env_kwargs):
    model = OPGFN(height=4, hidden_dim=8)
    hparams = {**dict(model.hparams), "env": env, "env_kwargs": env_kwargs}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams,
                "zoo_class_path": "zoo.op_gfn.module.OPGFN", "pytorch-lightning_version": lightning.__version__}, path)
    return path


@pytest.mark.parametrize("case", list(CRAFTED))
def test_zoo_load_of_a_release_naming_code_is_refused(case, marker, tmp_path):
    release = forged_release(tmp_path / "release", *CRAFTED[case])
    with pytest.raises(hub.CheckpointError, match=r"release/hparams\.yaml: env = .* names code outside the zoo"):
        zoo.load(release)
    assert not marker.exists()


@pytest.mark.parametrize("env, kwargs", [("os:system", {"command": "touch MARKER"}), ("evil.py:Evil", {})])
def test_zoo_load_of_a_checkpoint_naming_code_is_refused(env, kwargs, marker, tmp_path):
    ckpt = forged_checkpoint(tmp_path / "x.ckpt", env, kwargs)
    with pytest.raises(hub.CheckpointError, match=r"x\.ckpt: env = .* names code outside the zoo"):
        zoo.load(ckpt)
    assert not marker.exists()


def test_fit_ckpt_path_naming_code_is_refused_in_one_line(marker, tmp_path, capsys):
    ckpt = forged_checkpoint(tmp_path / "x.ckpt", "os:system", {"command": "touch MARKER"})
    with pytest.raises(SystemExit) as exit_:
        load_recipe("op_gfn").main(["fit", "--config", TINY, *QUIET, "--trainer.default_root_dir", str(tmp_path / "logs"),
                                    "--ckpt_path", str(ckpt)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "x.ckpt: env = 'os:system' names code outside the zoo" in err
    assert not marker.exists()


def test_init_from_a_release_naming_code_is_refused(marker, tmp_path, capsys):
    release = forged_release(tmp_path / "release", *CRAFTED["a file beside the release"])
    with pytest.raises(SystemExit) as exit_:
        load_recipe("op_gfn").main(["fit", "--config", TINY, *QUIET, "--trainer.default_root_dir", str(tmp_path / "logs"),
                                    "--model.init_from", str(release)])
    assert exit_.value.code == 2
    assert "hparams.yaml: env = 'evil.py:Evil' names code outside the zoo" in capsys.readouterr().err
    assert not marker.exists()


def test_code_the_user_names_or_trusts_is_imported(marker, tmp_path):
    """The same file loads when the user says trust_code, or passes the same env on the command line."""
    release = forged_release(tmp_path / "release", *CRAFTED["a file beside the release"])
    model = zoo.load(release, trust_code=True)
    assert marker.exists() and model.hparams.env == "evil.py:Evil"
    marker.unlink()
    ckpt = forged_checkpoint(tmp_path / "x.ckpt", "evil.py:Evil", {})
    cli = load_recipe("op_gfn").main(["validate", "--config", TINY, *QUIET, "--trainer.default_root_dir",
                                      str(tmp_path / "logs"), "--model.env", "evil.py:Evil", "--ckpt_path", str(ckpt)])
    assert cli.model.hparams.env == "evil.py:Evil"


def test_what_counts_as_the_zoos_own_code():
    assert is_zoo_code("CartPole-v1") and is_zoo_code("hypergrid") and is_zoo_code("ALE/Pong-v5")
    assert is_zoo_code("zoo.op_gfn.data:HyperGrid")
    assert is_zoo_code(f"{ROOT / 'data' / 'op_gfn' / 'bitstrings.py'}:BitStrings")
    for value in ("os:system", "zoo.rl:make_env", "zoo.mdpo.module:MDPO", "evil.py:Evil", "zoo.nope:X",
                  f"{ROOT / 'data' / 'cache' / 'x.py'}:X"):
        assert not is_zoo_code(value), value


class Payload:
    """Unpickling this object runs a shell command."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_pickled_checkpoint_is_never_unpickled(marker, tmp_path, capsys):
    ckpt = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": OPGFN(height=4, hidden_dim=8).state_dict(), "zoo_class_path": "zoo.op_gfn.module.OPGFN",
                "payload": Payload(marker)}, ckpt)
    with pytest.raises(hub.CheckpointError, match="pickled.ckpt: not a readable checkpoint"):
        zoo.load(ckpt)
    with pytest.raises(hub.CheckpointError, match="not a readable checkpoint"):
        AtomicCheckpointIO().load_checkpoint(ckpt)
    with pytest.raises(SystemExit) as exit_:
        load_recipe("op_gfn").main(["fit", "--config", TINY, *QUIET, "--trainer.default_root_dir", str(tmp_path / "logs"),
                                    "--ckpt_path", str(ckpt)])
    assert exit_.value.code == 2 and "not a readable checkpoint" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.parametrize("url", ["http://example.com/last.ckpt", "https://example.com/x.ckpt", "s3://bucket/x.ckpt"])
def test_a_remote_ckpt_path_is_refused(url, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        load_recipe("op_gfn").main(["fit", "--config", TINY, *QUIET, "--trainer.default_root_dir", str(tmp_path),
                                    "--ckpt_path", url])
    assert exit_.value.code == 2
    assert "only local files are read" in capsys.readouterr().err
    with pytest.raises(hub.CheckpointError, match="only local files"):
        AtomicCheckpointIO().load_checkpoint(url)


def test_the_release_registry_entries_pin_manifests():
    for entry in json.loads(hub.REGISTRY.read_text()).values():
        assert len(entry["manifest"]) == 64 and "files" not in entry


# -- a class_path nested in a value: jsonargparse would import it while parsing ----------------------------

DICT_HPARAMS = {  # every recipe whose hyperparameters take a dict, with its class and tiny config
    "deep_ga": "zoo.deep_ga.module.DeepGA",
    "go_explore": "zoo.go_explore.module.GoExplore",
    "op_gfn": "zoo.op_gfn.module.OPGFN",
    "mdpo": "zoo.mdpo.on_policy.OnPolicyMDPO",
}


@pytest.fixture
def planted(tmp_path, monkeypatch, request):
    """A module on the import path that writes a marker when imported, and the hyperparameter naming it."""
    name = f"planted_{request.node.name.replace('[', '_').replace(']', '').replace('-', '_')}"
    marker = tmp_path / "IMPORTED"
    (tmp_path / f"{name}.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
                                         "class Foo:\n    def __init__(self, **kw):\n        pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return marker, {"x": {"class_path": f"{name}.Foo", "init_args": {}}}


def test_the_recipes_with_dict_hyperparameters_are_all_covered():
    import typing

    for method, class_path in DICT_HPARAMS.items():
        cls = import_class(class_path, ROOT)
        assert "dict" in str(typing.get_type_hints(cls.__init__)["env_kwargs"]), method


@pytest.mark.parametrize("method", list(DICT_HPARAMS))
def test_a_class_path_nested_in_a_checkpoint_is_never_imported(method, planted, tmp_path, capsys):
    marker, env_kwargs = planted
    ckpt = tmp_path / "nested.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"env_kwargs": env_kwargs}, "zoo_class_path": DICT_HPARAMS[method],
                "pytorch-lightning_version": lightning.__version__}, ckpt)
    config = str(ROOT / "recipes" / "configs" / method / "tiny.yaml")
    with pytest.raises(SystemExit) as exit_:
        load_recipe(method).main(["fit", "--config", config, *QUIET, "--trainer.default_root_dir",
                                  str(tmp_path / "logs"), "--ckpt_path", str(ckpt)])
    assert exit_.value.code == 2
    assert "nested.ckpt: env_kwargs.x holds a class_path/init_args mapping" in capsys.readouterr().err
    assert not marker.exists()
    with pytest.raises(hub.CheckpointError, match="env_kwargs.x holds a class_path"):
        zoo.load(ckpt)


@pytest.mark.parametrize("method", list(DICT_HPARAMS))
def test_a_class_path_nested_in_a_release_is_never_imported(method, planted, tmp_path, capsys):
    """The release's manifest matches (a forger re-hashes it), so it verifies; its hyperparameters are still refused."""
    marker, env_kwargs = planted
    release = tmp_path / "release"
    release.mkdir()
    hub.write_safetensors({"w": torch.zeros(1)}, release / "model.safetensors")
    hparams = {"class_path": DICT_HPARAMS[method], "init_args": {"env_kwargs": {"deep": [env_kwargs]}}}
    (release / "hparams.yaml").write_text(yaml.safe_dump(hparams))
    remanifest(release)
    hub.release_dir(release)  # verifies
    config = str(ROOT / "recipes" / "configs" / method / "tiny.yaml")
    with pytest.raises(SystemExit) as exit_:
        load_recipe(method).main(["fit", "--config", config, *QUIET, "--trainer.default_root_dir",
                                  str(tmp_path / "logs"), "--model.init_from", str(release)])
    assert exit_.value.code == 2
    assert "hparams.yaml: env_kwargs.deep[0].x holds a class_path/init_args mapping" in capsys.readouterr().err
    assert not marker.exists()


def test_where_a_nested_class_path_is_found():
    from zoo.trust import class_path_in

    assert class_path_in({"a": 1, "b": [1, {"c": "x"}]}) is None and class_path_in("class_path") is None
    assert class_path_in({"class_path": "m.C"}) == ""
    assert class_path_in({"a": [0, {"b": {"init_args": {}}}]}) == ".a[1].b"
