"""Everything a run reads is verified like a release, and a name read from a file never reaches the network.

A base model, a judge or a backbone given as a folder is checked against its manifest; a zoo release whose
manifest is gone, or a folder whose weights do not cover the model (a head that would start at random), is
refused; a name of a model that comes from a file (a release's hparams.yaml, a checkpoint) loads only from
this machine, at the revision the file records (zoo/offline.py)."""
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo import hub
from zoo.cpt import CPT
from zoo.errors import UserError
from zoo.lm.module import CausalLM
from zoo.nash_md import NashMD
from zoo.nash_md.module import load_judge
from zoo.npo import NPO
from zoo.preference import PreferenceModel

ROOT = Path(__file__).resolve().parents[2]
TINY_LM, PREF_TINY = hub.CHECKPOINTS / "tiny-lm", hub.CHECKPOINTS / "pref-tiny"
HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
COMMIT = "0123456789abcdef0123456789abcdef01234567"

BUILDERS = {
    "npo": lambda path: NPO(base=str(path)),
    "nash_md": lambda path: NashMD(base=str(path), preference_model="keyword-judge"),
    "cpt": lambda path: CPT(base=str(path), examples=[["good", " positive"], ["bad", " negative"]]),
    "lm": lambda path: CausalLM(base=str(path)),
    "preference": lambda path: PreferenceModel(backbone=str(path)),
}


def flip_a_weight_byte(folder: Path, name: str = "model.safetensors") -> None:
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))


def plain_folder(tmp_path: Path, src: Path = TINY_LM, name: str = "plain") -> Path:
    """A save_pretrained folder of the user's own: the HF files, no hparams.yaml, no manifest."""
    folder = tmp_path / name
    folder.mkdir()
    for f in HF_FILES:
        shutil.copy(src / f, folder / f)
    return folder


# -- a release folder given by path is verified --------------------------------------------------------

@pytest.mark.parametrize("method", sorted(BUILDERS))
def test_a_base_release_folder_with_a_flipped_weight_byte_is_refused(method, tmp_path):
    copy = tmp_path / "tiny-lm-copy"
    shutil.copytree(TINY_LM, copy)
    flip_a_weight_byte(copy)
    with pytest.raises(hub.CheckpointError, match=r"tiny-lm-copy/model\.safetensors: sha256 is .* manifest says"):
        BUILDERS[method](copy)


def test_a_recipe_given_a_tampered_base_folder_stops_with_one_line(tmp_path, recipe, capsys):
    copy = tmp_path / "tiny-lm-copy"
    shutil.copytree(TINY_LM, copy)
    flip_a_weight_byte(copy)
    with pytest.raises(SystemExit) as exit_:
        recipe("npo").main(["fit", "--model.base", str(copy), "--trainer.max_steps", "1",
                            "--trainer.default_root_dir", str(tmp_path / "logs")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "tiny-lm-copy/model.safetensors: sha256 is" in err and "Traceback" not in err


@pytest.mark.parametrize("src", [PREF_TINY, TINY_LM], ids=["pref-tiny", "tiny-lm"])
def test_a_judge_release_folder_with_a_flipped_weight_byte_is_refused(src, tmp_path):
    copy = tmp_path / "judge-copy"
    shutil.copytree(src, copy)
    flip_a_weight_byte(copy)
    with pytest.raises(hub.CheckpointError, match=r"judge-copy/model\.safetensors: sha256"):
        load_judge(str(copy))


@pytest.mark.parametrize("method", ["npo", "preference"])
def test_a_plain_save_pretrained_folder_still_loads(method, tmp_path):
    model = BUILDERS[method](plain_folder(tmp_path))
    assert model.tokenizer is not None


# -- missing weights and lost manifests ------------------------------------------------------------------

def test_a_preference_release_without_its_manifest_is_no_judge(tmp_path):
    """Read as a hub reward model, pref-tiny's folder would give a score head at random (its pairwise head
    ignored), and Nash-MD would train against noise."""
    copy = tmp_path / "pref-bare"
    shutil.copytree(PREF_TINY, copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(hub.CheckpointError, match=r"pref-bare: a zoo release \(it holds hparams\.yaml\) without its "
                                                  r"manifest\.json"):
        load_judge(str(copy))
    for loss in ("nash_md", "rlhf"):
        model = NashMD(preference_model=str(copy), loss=loss)
        model._trainer = None
        with pytest.raises(hub.CheckpointError, match="without its manifest.json"):
            model.setup("fit")


@pytest.mark.parametrize("method", ["npo", "preference"])
def test_a_base_or_backbone_release_without_its_manifest_is_refused(method, tmp_path):
    copy = tmp_path / "tiny-bare"
    shutil.copytree(TINY_LM, copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(hub.CheckpointError, match="tiny-bare: a zoo release .* without its manifest.json"):
        BUILDERS[method](copy)


def test_a_causal_lm_folder_as_judge_is_refused_for_its_random_score_head(tmp_path):
    folder = plain_folder(tmp_path)
    with pytest.raises(UserError, match=r"--model\.preference_model .*plain.*: the folder lacks weights .*score\.weight"
                                        r".*initialised at random"):
        load_judge(str(folder))


@pytest.mark.parametrize("method", ["npo", "preference"])
def test_a_base_or_backbone_with_missing_weights_is_refused(method, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = plain_folder(tmp_path)
    state = load_file(folder / "model.safetensors")
    gone = next(k for k in state if k.endswith("h.1.ln_1.weight"))
    del state[gone]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UserError, match=r"the folder lacks weights .*h\.1\.ln_1\.weight.*initialised at random"):
        BUILDERS[method](folder)


# -- a name of a model that comes from a file never reaches the network ------------------------------------

class FakeHub:
    """A Hugging Face hub on 127.0.0.1 that answers 404 and records every request (HF_ENDPOINT points at it)."""

    def __init__(self) -> None:
        requests = self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                requests.append(f"{self.command} {self.path}")
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def asked_for(self, name: str) -> list[str]:
        return [r for r in self.requests if name in r]


@pytest.fixture
def fake_hub():
    hub_ = FakeHub()
    yield hub_
    hub_.server.shutdown()


def run_python(code: str, tmp_path: Path, fake_hub: FakeHub | None = None, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (the hub's address is read at import) with an empty HF cache of its own."""
    environ = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    environ.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf-home"),
                    "HF_HUB_DISABLE_TELEMETRY": "1", "TRANSFORMERS_VERBOSITY": "error", **env})
    if fake_hub is not None:
        environ["HF_ENDPOINT"] = fake_hub.url
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environ, capture_output=True, text=True,
                          timeout=300)


def release_naming(src: Path, folder: Path, revisions: dict | None = None, **init_args: str) -> Path:
    """A copy of the release ``src`` whose hparams.yaml names other models (re-manifested, as its author could)."""
    shutil.copytree(src, folder)
    spec = yaml.safe_load((folder / "hparams.yaml").read_text())
    spec["init_args"].update(init_args)
    if revisions is not None:
        spec["revisions"] = revisions
    (folder / "hparams.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    files = {f.name: hub.sha256(f) for f in sorted(folder.iterdir()) if f.is_file() and not hub.is_document(f.name)}
    (folder / "manifest.json").write_text(json.dumps({"files": files}))
    return folder


def offline_error(text: str, flag: str, name: str) -> str:
    line = next((l for l in text.splitlines() if f"{flag} {name}: this name comes from" in l), "")
    assert "is not available offline" in line and f"type the name yourself ({flag} {name} on the command line" in line, text
    return line


def test_zoo_load_of_a_release_naming_a_hub_base_never_asks_the_hub(tmp_path, fake_hub):
    """zoo.load reads the name from hparams.yaml: not one request for it; the same name typed in Python is
    fetched (the control that shows the fake hub is the one asked)."""
    rel = release_naming(hub.CHECKPOINTS / "cpt-tiny-sst2", tmp_path / "cpt-release", base="attacker/base")
    out = run_python(f"""
import urllib.request, zoo
from zoo.errors import UserError
try:
    zoo.load({str(rel)!r})
except UserError as e:
    print(e)
try:
    urllib.request.urlopen({fake_hub.url!r} + "/typed-from-here")
except Exception:
    pass
from zoo.cpt import CPT
try:
    CPT(base="attacker/base")
except UserError as e:
    print("typed:", str(e)[:80])
""", tmp_path, fake_hub)
    offline_error(out.stdout, "--model.base", "attacker/base")
    marker = fake_hub.requests.index("GET /typed-from-here")
    assert not [r for r in fake_hub.requests[:marker] if "attacker" in r], fake_hub.requests
    assert [r for r in fake_hub.requests[marker:] if "attacker/base" in r], "the typed name should reach the hub"


def test_a_checkpoint_naming_a_hub_judge_never_asks_the_hub(tmp_path, fake_hub):
    """The judge loads when the model is set up, after zoo.load returned: it keeps the checkpoint's mark."""
    out = run_python(f"""
import torch, zoo
from zoo.errors import UserError
from zoo.nash_md import NashMD
m = NashMD(preference_model="attacker/judge", max_new_tokens=4)
torch.save({{"state_dict": m.state_dict(), "zoo_class_path": "zoo.nash_md.module.NashMD",
            "hyper_parameters": dict(m.hparams)}}, "run.ckpt")
loaded = zoo.load("run.ckpt")
loaded._trainer = None
try:
    loaded.setup("validate")
except UserError as e:
    print(e)
""", tmp_path, fake_hub)
    line = offline_error(out.stdout, "--model.preference_model", "attacker/judge")
    assert "run.ckpt" in line
    assert not fake_hub.asked_for("attacker"), fake_hub.requests


def test_init_from_a_release_naming_a_hub_judge_is_one_line_and_never_asks_the_hub(tmp_path, fake_hub):
    rel = release_naming(hub.CHECKPOINTS / "nash-md-tiny", tmp_path / "nash-release", preference_model="attacker/judge")
    out = run_python(f"""
from zoo.cli import load_recipe
load_recipe("nash_md").main(["fit", "--model.init_from", {str(rel)!r}, "--trainer.max_steps", "1",
                             "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "logs"])
""", tmp_path, fake_hub)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1, out.stderr[-2000:]
    offline_error(errors[0], "--model.preference_model", "attacker/judge")
    assert not fake_hub.asked_for("attacker"), fake_hub.requests


def test_resuming_a_checkpoint_naming_a_hub_base_never_asks_the_hub(tmp_path, fake_hub):
    out = run_python(f"""
import torch
from zoo.cli import load_recipe
from zoo.npo import NPO
m = NPO(base="tiny-lm")
torch.save({{"state_dict": m.state_dict(), "zoo_class_path": "zoo.npo.module.NPO",
            "hyper_parameters": {{**dict(m.hparams), "base": "attacker/base"}}}}, "run.ckpt")
load_recipe("npo").main(["fit", "--ckpt_path", "run.ckpt", "--trainer.max_steps", "1",
                         "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "logs"])
""", tmp_path, fake_hub)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1, out.stderr[-2000:]
    assert "run.ckpt" in offline_error(errors[0], "--model.base", "attacker/base")
    assert not fake_hub.asked_for("attacker"), fake_hub.requests


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """A local HF cache holding the repository someone/tiny (tiny-lm's files) at the commit COMMIT."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-home" / "hub"
    repo = cache / "models--someone--tiny"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for f in (*HF_FILES, "generation_config.json"):
        shutil.copy(TINY_LM / f, repo / "snapshots" / COMMIT / f)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_name_from_a_file_loads_from_the_cache_at_the_revision_it_records(tmp_path, hf_cache):
    rel = release_naming(hub.CHECKPOINTS / "cpt-tiny-sst2", tmp_path / "pinned", {"base": COMMIT}, base="someone/tiny")
    model = zoo.load(rel)
    reference = zoo.load("cpt-tiny-sst2")  # the same weights under the zoo's own id
    ids = torch.arange(3, 11)[None]
    torch.testing.assert_close(model.model.get_base_model()(ids).logits, reference.model.get_base_model()(ids).logits)
    other = "f" * 40
    moved = release_naming(hub.CHECKPOINTS / "cpt-tiny-sst2", tmp_path / "moved", {"base": other}, base="someone/tiny")
    with pytest.raises(UserError, match=f"someone/tiny at revision {other} is not available offline"):
        zoo.load(moved)


def test_a_release_records_the_commit_its_hub_base_came_from(tmp_path, hf_cache):
    """A name typed in Python loads from the hub (here its cache, offline) and the release and the checkpoint
    made from the model record the commit; loaded back, the name is pinned to it."""
    out = run_python(f"""
import yaml
from zoo import hub
from zoo.cpt import CPT
model = CPT(base="someone/tiny", input_template="{{}}", output_template="#{{}}", intra_separator=" ")
ckpt = {{}}
model.on_save_checkpoint(ckpt)
print("checkpoint", ckpt.get("zoo_revisions"))
hub.save(model, "release")
print("release", yaml.safe_load(open("release/hparams.yaml"))["revisions"])
""", tmp_path, HF_HUB_OFFLINE="1")
    assert f"checkpoint {{'base': '{COMMIT}'}}" in out.stdout, out.stderr[-2000:]
    assert f"release {{'base': '{COMMIT}'}}" in out.stdout, out.stderr[-2000:]
    assert not zoo.load(tmp_path / "release").training  # offline, from the cache, at that commit


def test_only_flags_typed_on_the_command_line_count_as_typed():
    from zoo import offline

    assert offline.typed_keys(["fit", "--config", "x.yaml", "--model.base", "a/b", "--model.init_args.backbone=c",
                               "--trainer.max_steps", "1"]) == {"base", "backbone"}
