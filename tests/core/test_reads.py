"""Everything a run reads is verified like a release, and a name read from a file never reaches the network.

A base model, a judge or a backbone given as a folder is checked against its manifest; a zoo release whose
manifest is gone, or a folder whose weights do not cover the model (a head that would start at random), is
refused; a name of a model that comes from a file (a release's hparams.yaml, a checkpoint) loads only from
this machine, at the revision the file records (zoo/offline.py)."""
import json
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
