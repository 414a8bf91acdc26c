"""The files a model is written as, and read back from, without any model code: safetensors of named
tensors, the extra state a method declares (``ZooModule.extra_state``) as safetensors or JSON files, and
a tokenizer as the text of its files. zoo/hub.py (releases, manifests) and zoo/module.py (the model's
state) both build on this module; it imports neither.

Extra state is ``{group: value}``. In a release folder a group is one file: ``<group>.safetensors``
where the value is a mapping of names to tensors, ``<group>.json`` where it is anything else JSON can
hold. In a checkpoint it is kept as it is, under ``zoo_extra_state`` (tensors and plain values, which
``torch.load(weights_only=True)`` reads).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from zoo.errors import CheckpointError, UserError

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS, HPARAMS, MANIFEST = "model.safetensors", "hparams.yaml", "manifest.json"


# -- safetensors --------------------------------------------------------------------------------

def umask() -> int:
    """The process's umask (what a new file's mode loses)."""
    try:  # read without setting it: os.umask would change it for every thread for a moment
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_safetensors(state: Mapping[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, path)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None


# -- weights into a module ----------------------------------------------------------------------

def state_mismatch(module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """What keeps ``state`` from loading strictly into ``module`` ("" when it fits)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    parts = []
    if missing:
        parts.append(f"missing tensors {missing[:5]}")
    if unexpected:
        parts.append(f"unexpected tensors {unexpected[:5]}")
    if wrong:
        parts.append("shape mismatches " + "; ".join(wrong[:5]))
    return ", ".join(parts)


def hparams_diff(file_hparams: Mapping[str, Any], own: Mapping[str, Any], what: str = "release") -> str:
    """The hyperparameters in which a file and a model differ, as a sentence ("" when none do)."""
    diff = [f"{k} {file_hparams[k]!r} ({what}) vs {own[k]!r} (this model)"
            for k in sorted(file_hparams) if k in own and not k.startswith("_") and k != "init_from"
            and file_hparams[k] != own[k]]
    return "hyperparameters that differ: " + "; ".join(diff) if diff else ""


def load_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: Path | str,
               differing: str = "") -> None:
    """Load ``state`` strictly; a mismatch names the tensors (and ``differing``: what explains it)."""
    mismatch = state_mismatch(module, state)
    if mismatch:
        why = differing or "the model's hyperparameters differ from those the weights were trained with"
        raise CheckpointError(f"{source}: does not match the model ({mismatch}); {why}")
    module.load_state_dict(dict(state), strict=True)


# -- extra state as release files ----------------------------------------------------------------

def is_tensors(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def extra_state_file(group: str, value: Any) -> str:
    """The release file of an extra-state group: ``<group>.safetensors`` for tensors, else ``<group>.json``."""
    if not group or Path(group).name != group or group.startswith("."):
        raise ValueError(f"an extra-state group is named by a plain word, got {group!r}")
    return f"{group}.safetensors" if is_tensors(value) else f"{group}.json"


def write_extra_state(state: Mapping[str, Any], directory: Path) -> list[str]:
    """Write each group of ``state`` into ``directory`` as one file; returns the files' names."""
    names = []
    for group, value in state.items():
        name = extra_state_file(group, value)
        if is_tensors(value):
            write_safetensors(value, Path(directory) / name)
        else:
            (Path(directory) / name).write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
        names.append(name)
    return names


def read_extra_state(directory: Path, groups: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The groups among ``groups`` that ``directory`` holds a file of (a release written before a group
    existed holds none: the model keeps what it was built with)."""
    out: dict[str, Any] = {}
    for group in groups:
        tensors, plain = Path(directory) / f"{group}.safetensors", Path(directory) / f"{group}.json"
        if tensors.is_file():
            out[group] = read_weights(tensors)
        elif plain.is_file():
            try:
                out[group] = json.loads(plain.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise CheckpointError(f"{plain}: not readable as JSON ({e})") from None
    return out


# -- a tokenizer as the text of its files --------------------------------------------------------

def tokenizer_files(tokenizer) -> dict[str, str]:
    """A tokenizer as the text of the files ``save_pretrained`` writes, {file name: text}: how a
    checkpoint keeps it (plain strings, so the checkpoint loads with ``weights_only=True``)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {f.name: f.read_text(encoding="utf-8") for f in sorted(Path(tmp).iterdir()) if f.is_file()}


def tokenizer_from_files(files: Mapping[str, str], source: str = "the checkpoint"):
    """The tokenizer that ``tokenizer_files`` wrote down."""
    from transformers import AutoTokenizer

    if not isinstance(files, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise CheckpointError(f"{source}: a tokenizer is kept as {{file name: text}}, got {type(files).__name__}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            if Path(name).name != name or name in ("", ".", ".."):
                raise UserError(f"{source}: a tokenizer file name must be a plain name, got {name!r}")
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        return AutoTokenizer.from_pretrained(tmp)
