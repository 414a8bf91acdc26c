"""Released checkpoints: a registry of ids, self-verifying release folders, and reading them safely.

A release is a directory ``checkpoints/<id>/`` (or anywhere else) holding

    model.safetensors   the weights (never a pickle); the LM methods write a Hugging Face folder:
                        config.json, model.safetensors, tokenizer files
    <group>.safetensors, <group>.json   the method's extra state (a trajectory, ...: zoo/files.py)
    hparams.yaml        {class_path: zoo.<method>.<Class>, init_args: {...}}
    manifest.json       the sha256 of every file the release loads from
    card.md, metrics.json, curve.png   what it is and how it measured (not read when loading)

``checkpoints/registry.json`` maps each id to its folder, method, data, headline metric and the
sha256 of its manifest. ``verify`` checks the manifest, and every file against it, wherever the folder
lies, before a byte is read: a file changed, added or missing is refused, naming it. This module knows
files, manifests and hashes only: it reads YAML and JSON, and Lightning checkpoints through
``torch.load(weights_only=True)``, and imports no model code. Building a model from a release or a
checkpoint (``zoo.load``, ``--model.init_from``) is zoo/module.py's, which imports no class outside the
zoo and no code that a file names (zoo/trust.py); a model that a file names (a base, a judge) loads
offline only, at the commit hparams.yaml records under ``revisions`` (zoo/offline.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from zoo import offline
from zoo.errors import CheckpointError
from zoo.files import (HPARAMS, MANIFEST, ROOT, WEIGHTS, hparams_diff, load_state, read_weights, umask,  # noqa: F401
                       state_mismatch, write_safetensors)

CHECKPOINTS = ROOT / "checkpoints"
REGISTRY = CHECKPOINTS / "registry.json"
DOCUMENTS = ("card.md", "metrics.json", MANIFEST)  # describe a release; never read to build the model
PICTURES = (".png", ".gif")

__all__ = ["CheckpointError", "list_models", "save", "registry", "release_dir", "release_spec", "verify"]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def registry() -> dict[str, dict[str, Any]]:
    if not REGISTRY.exists():
        return {}
    try:
        reg = json.loads(REGISTRY.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{REGISTRY}: not a readable registry ({e})") from None
    if not isinstance(reg, dict) or not all(isinstance(v, dict) and "path" in v for v in reg.values()):
        raise CheckpointError(f"{REGISTRY}: expected {{id: {{path, method, data, headline, manifest}}}}")
    return reg


def list_models(print_table: bool = True) -> list[dict[str, Any]]:
    """The released ids with their method, data and headline metric. Printed as a table on a wide terminal
    (120 columns or more); elsewhere (a pipe, a log file, a narrow window) one line per release: id, method,
    headline and data, cut to the width."""
    rows = [{"id": k, **v} for k, v in sorted(registry().items())]
    if print_table:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = Console()
        if console.is_terminal and console.width >= 120:
            table = Table(title="zoo: released checkpoints")
            for col in ("id", "method", "data", "headline metric"):
                table.add_column(col)
            for r in rows:
                table.add_row(r["id"], r.get("method", ""), r.get("data", ""), _headline(r))
            console.print(table)
        else:
            header = {"id": "id", "method": "method", "headline": "headline metric", "data": "data"}
            cells = [(r["id"], r.get("method", ""), _headline(r), r.get("data", "")) for r in [header, *rows]]
            wide = [max(len(c[i]) for c in cells) for i in range(3)]
            for c in cells:
                line = "  ".join(f"{c[i]:<{wide[i]}}" for i in range(3)) + "  " + c[3]
                console.print(Text(line.rstrip()), no_wrap=True, overflow="ellipsis", crop=True)
    return rows


def _headline(row: dict[str, Any]) -> str:
    m = row.get("headline", {})
    if isinstance(m, str):
        return m
    value = m.get("value", "")
    return f"{m.get('name', '')} = {value:.4g}" if isinstance(value, float) else f"{m.get('name', '')} = {value}"


# -- verification ---------------------------------------------------------------------------

def is_document(name: str) -> bool:
    return name in DOCUMENTS or name.endswith(PICTURES)


def read_manifest(directory: Path) -> dict[str, str]:
    path = directory / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {MANIFEST}, so nothing says which files are the release's; zoo "
                              "releases carry one (scripts/release.py, python -m zoo export)")
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: not a readable manifest ({type(e).__name__}: {e})") from None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise CheckpointError(f"{path}: 'files' must map file names to sha256 sums")
    if not any(name.endswith(".safetensors") for name in files):
        raise CheckpointError(f"{path}: lists no weights (*.safetensors), so it would verify nothing that matters")
    return files


def verify(directory: str | Path, manifest_sha256: str | None = None) -> None:
    """Check a release folder against its manifest (and the manifest against ``manifest_sha256``, the
    registry's pin, where given): every listed file present and unchanged, no other file to load."""
    directory = Path(directory)
    if manifest_sha256 is not None and (directory / MANIFEST).is_file():
        got = sha256(directory / MANIFEST)
        if got != manifest_sha256:
            raise CheckpointError(f"{directory / MANIFEST}: sha256 is {got[:12]}… but the registry says "
                                  f"{manifest_sha256[:12]}…; the release was changed after it was registered: refusing it")
    files = read_manifest(directory)
    for name, expected in files.items():
        f = directory / name
        if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
            raise CheckpointError(f"{directory / MANIFEST}: lists {name!r}, which is not a file inside the release "
                                  "(a release lists the names of its own files, with no folder): refusing it")
        if f.is_symlink():
            raise CheckpointError(f"{f}: a link (to {os.readlink(f)}); a release holds its own files, so that what "
                                  "was verified is what loads: refusing it (copy the file into the folder)")
        if not f.is_file():
            raise CheckpointError(f"{f}: missing; the manifest lists it with sha256 {expected[:12]}…")
        got = sha256(f)
        if got != expected:
            raise CheckpointError(f"{f}: sha256 is {got[:12]}… but the manifest says {expected[:12]}…; the file is "
                                  "corrupted or was changed after release: refusing to load it")
    extra = sorted(p.name for p in directory.iterdir() if p.name not in files and not is_document(p.name))
    if extra:
        raise CheckpointError(f"{directory / extra[0]}: not in the manifest; a release loads only the files its "
                              "manifest lists (remove the file, or release again)")


def release_dir(id_or_path: str | Path) -> Path:
    """The verified release directory of a registered id or a release path."""
    path, pinned = _resolve(id_or_path)
    if path.is_file():
        raise CheckpointError(f"{path}: a checkpoint file, not a release directory")
    verify(path, pinned)
    return path


def _resolve(id_or_path: str | Path) -> tuple[Path, str | None]:
    """The release directory (or .ckpt file) and the manifest sum the registry pins, if registered."""
    reg = registry()
    if str(id_or_path) in reg:
        entry = reg[str(id_or_path)]
        if not entry.get("manifest"):
            raise CheckpointError(f"{REGISTRY}: the entry {id_or_path!r} pins no manifest, so it verifies nothing")
        return CHECKPOINTS / entry["path"], entry["manifest"]
    path = Path(id_or_path).expanduser()
    if not path.exists():
        known = ", ".join(sorted(reg)) or "none yet"
        raise CheckpointError(f"{id_or_path!r} is neither a released id (known: {known}) nor an existing path")
    for entry in reg.values():  # a registered directory given by its path is pinned as well
        if (CHECKPOINTS / entry["path"]).resolve() == path.resolve():
            return path, entry.get("manifest")
    return path, None


# -- reading ---------------------------------------------------------------------------------

def read_hparams(path: Path) -> tuple[str, dict[str, Any]]:
    """(class_path, init_args) of a release's hparams.yaml; nothing is imported (zoo/module.py imports the class)."""
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise CheckpointError(f"{path}: not readable as YAML ({e})") from None
    if not isinstance(spec, dict) or "class_path" not in spec or not isinstance(spec.get("init_args") or {}, dict):
        raise CheckpointError(f"{path}: expected a mapping with class_path and init_args")
    return spec["class_path"], dict(spec.get("init_args") or {})


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint written by a zoo recipe, read without unpickling anything but tensors."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, not a zip, pickled objects: the same error for the user
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    if "zoo_class_path" not in ckpt:
        raise CheckpointError(f"{path}: says nothing of its model (no zoo_class_path); it was not written by a zoo recipe")
    return ckpt


def checkpoint_hparams(ckpt: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}


def release_spec(id_or_path: str | Path) -> tuple[str, dict[str, Any], Path]:
    """(class_path, init_args, the file they come from) of a release or checkpoint, verified; nothing is
    imported or built (``zoo.module.release_hparams`` imports the class, ``zoo.load`` builds the model)."""
    path, pinned = _resolve(id_or_path)
    if path.is_file():
        ckpt = read_checkpoint(path)
        return ckpt["zoo_class_path"], checkpoint_hparams(ckpt), path
    verify(path, pinned)
    if not (path / HPARAMS).is_file():
        raise CheckpointError(f"{path / HPARAMS}: missing; a release directory holds {HPARAMS}")
    class_path, init_args = read_hparams(path / HPARAMS)
    return class_path, init_args, path / HPARAMS


# -- writing ---------------------------------------------------------------------------------

def hparams_of(module: torch.nn.Module) -> dict[str, Any]:
    init_args = {k: v for k, v in dict(module.hparams).items() if not k.startswith("_") and k != "init_from"}
    init_args = json.loads(json.dumps(init_args))  # plain YAML types: tuples become lists
    cls = type(module)
    spec = {"class_path": f"{cls.__module__}.{cls.__name__}", "init_args": init_args}
    if offline.revisions(module):  # the hub commits its named models came from (zoo/offline.py)
        spec["revisions"] = offline.revisions(module)
    return spec


#: documents the zoo writes into a release folder (scripts/release.py, a method's save_release)
WRITTEN_DOCUMENTS = ("card.md", "metrics.json", MANIFEST, "curve.png", "progress.png", "best_trajectory.gif")


def check_target(directory: str | Path) -> Path:
    """The folder a release may be written to: absent, empty, or a release the zoo wrote (every file in it is
    listed by its manifest or is a document the zoo writes), which the new release replaces. Anything else is
    refused: writing a release never deletes a file the zoo did not write."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: is a file; a release is written to a folder (give a new folder's name)")
    if not directory.is_dir() or not any(directory.iterdir()):
        return directory
    try:
        listed = set(read_manifest(directory))
    except CheckpointError:
        listed = None
    foreign = sorted(p.name for p in directory.iterdir() if listed is None or p.is_symlink() or not p.is_file()
                     or (p.name not in listed and p.name not in WRITTEN_DOCUMENTS))
    if foreign:
        raise CheckpointError(f"{directory}: holds {', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''}, which "
                              f"{'is' if len(foreign) == 1 else 'are'} not part of a zoo release; a release is written to "
                              "a new or empty folder, or over an earlier release, and never deletes other files")
    return directory


def save(module: torch.nn.Module, directory: str | Path, documents: Mapping[str, str | bytes] | None = None) -> str:
    """Write a release directory: the model's whole state (``module.write_release``: its weights and its
    extra state), hparams.yaml and manifest.json, and ``documents`` ({name: text or bytes}: card.md,
    metrics.json, curve.png), which describe the release and are not in the manifest. Returns the sha256
    of the manifest, which a registry entry pins.

    The release is written into a temporary folder beside ``directory`` and renamed into place, so an
    interrupted write leaves no half release; ``directory`` must be new, empty, or an earlier release
    (``check_target``), which is replaced whole."""
    documents = dict(documents or {})
    for name in documents:
        if name not in WRITTEN_DOCUMENTS:
            raise ValueError(f"{name!r} is not a document of a release (those are {', '.join(WRITTEN_DOCUMENTS)})")
    directory = check_target(directory).resolve()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        module.write_release(tmp)
        (tmp / HPARAMS).write_text(yaml.safe_dump(hparams_of(module), sort_keys=False))
        files = {f.name: sha256(f) for f in sorted(tmp.iterdir()) if f.is_file() and not is_document(f.name)}
        (tmp / MANIFEST).write_text(json.dumps({"files": files}, indent=2) + "\n")
        read_manifest(tmp)  # a release that lists no weights is an error now, not when someone loads it
        for name, content in documents.items():
            (tmp / name).write_bytes(content.encode() if isinstance(content, str) else content)
        tmp.chmod(0o777 & ~umask())  # mkdtemp's folder is private; a release is as readable as any folder made here
        if directory.is_dir() and any(directory.iterdir()):
            old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".old"))
            os.replace(directory, old / directory.name)
            os.replace(tmp, directory)
            shutil.rmtree(old)  # the earlier release: files the zoo wrote (check_target)
        else:
            os.replace(tmp, directory)  # onto an empty folder or none
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return sha256(directory / MANIFEST)
