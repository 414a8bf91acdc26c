"""A name of a model that comes from a file is resolved offline, at the revision the file records.

Some hyperparameters name a model to load: the LM's, NPO's and CPT's ``base``, Nash-MD's ``base`` and
``preference_model``, the preference model's ``backbone`` (NPO's ``retain_model`` too); each method lists
them in its ``model_hparams``. A name is a zoo id, a folder, a packaged model (``smollm2-135m``,
``all-minilm-l6-v2``) or a repository on the Hugging Face hub.

- A name the user typed (on the command line, or in Python) may be downloaded from the hub.
- A name that comes from a file (a release's hparams.yaml, a checkpoint's hyper_parameters: read by
  ``zoo.load``, ``--model.init_from``, ``fit --ckpt_path``) never reaches the network: whoever wrote the file
  would choose what is downloaded and run, at whatever the hub serves that day, and the request itself
  tells the hub who loads it. Such a name loads only from this machine: a zoo id, a folder, a packaged
  model, or the local HF cache (``local_files_only``). Where it is not there, loading stops with one line
  saying so, and that typing the name (``--model.base NAME``) allows the download.
- A release records the commit each hub name resolved to when it was made (hparams.yaml: ``revisions:
  {hyperparameter: commit}``; a checkpoint: ``zoo_revisions``), and a name from such a file loads at
  that commit.

The mechanism is one context. ``from_file(model_class, init_args, source)`` marks the values of the
class's ``model_hparams`` read from ``source`` as names from a file while the model is built; zoo/hub.py
(``load``, ``load_weights``) and zoo/cli.py (``--model.init_from``, ``--ckpt_path``) build models inside
it, and leave unmarked a name the user typed for the same key. ``zoo.lm.helpers.resolve_base``, which
every load of a named model goes through, resolves a marked hub name in the local cache
(``local_snapshot``), so that transformers is handed a folder and never a name. A module keeps the marks
in force when it was built (``ZooModule``), for the models it loads later: Nash-MD's judge, NPO's
retain model.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from zoo.errors import UserError

COMMIT = re.compile(r"^[0-9a-f]{40}$")
SNAPSHOT = re.compile(r"snapshots/([0-9a-f]{40})(/|$)")

#: names from files now being read: name -> (the commit the file records or None, the file)
_MARKED: ContextVar[dict[str, tuple[str | None, str]]] = ContextVar("zoo_names_from_files", default={})
#: hub name -> the commit it was last loaded at in this process (what a release made now records)
_COMMITS: dict[str, str] = {}


def marked() -> dict[str, tuple[str | None, str]]:
    """The names from files marked now (a module keeps them for the models it loads later)."""
    return dict(_MARKED.get())


@contextmanager
def marking(marks: Mapping[str, tuple[str | None, str]]) -> Iterator[None]:
    """Mark ``marks`` (as ``marked()`` returns them) as names from files, besides those marked already."""
    token = _MARKED.set({**_MARKED.get(), **marks})
    try:
        yield
    finally:
        _MARKED.reset(token)


def recorded_revisions(source: str | Path) -> dict[str, str]:
    """The revisions a release's hparams.yaml records (``revisions:``); {} for anything else."""
    path = Path(source)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return {}
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    revisions = spec.get("revisions") if isinstance(spec, dict) else None
    return dict(revisions) if isinstance(revisions, dict) else {}


def from_file(model_class: type, init_args: Mapping[str, Any], source: str | Path,
              revisions: Mapping[str, Any] | None = None, given: Mapping[str, Any] | None = None):
    """A context in which the names of models that ``init_args`` (read from ``source``) give are names from a
    file, to be loaded offline at the commit ``revisions`` (else the file's own ``revisions:``) records;
    a name equal to what the user gave for that key (``given``) is the user's and stays unmarked."""
    revisions = recorded_revisions(source) if revisions is None else revisions
    given = given or {}
    marks = {}
    for key in getattr(model_class, "model_hparams", ()):
        name = init_args.get(key)
        if isinstance(name, str) and not (key in given and given[key] == name):
            revision = (revisions or {}).get(key)
            marks[name] = (revision if isinstance(revision, str) and COMMIT.match(revision) else None, str(source))
    return marking(marks)


def typed_keys(args: list[str] | None) -> set[str]:
    """The model hyperparameters given as flags on a command line (``--model.base x``, ``--model.base=x``,
    ``--model.init_args.base x``)."""
    keys = set()
    for a in args or ():
        if a.startswith("--model."):
            key = a[len("--model."):].split("=", 1)[0]
            keys.add(key[len("init_args."):] if key.startswith("init_args.") else key)
    return keys


def from_a_file(name: str) -> bool:
    return name in _MARKED.get()


def local_snapshot(name: str, flag: str) -> str:
    """The folder of the hub repository ``name``, a name from a file, in the local HF cache at the commit the
    file records (else the cache's latest); never a request to the hub."""
    from huggingface_hub import snapshot_download

    revision, source = _MARKED.get()[name]
    try:
        folder = snapshot_download(name, revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached, not at that commit, not a repository name: the same for the user
        at = f" at revision {revision}" if revision else ""
        raise UserError(f"{flag} {name}: this name comes from {source}, and a name read from a file is loaded only "
                        f"from this machine (a zoo id, a folder, a packaged model, the local Hugging Face cache), "
                        f"where {name}{at} is not available offline; to download it from the hub, type the name "
                        f"yourself ({flag} {name} on the command line, or in Python)") from None
    return folder


def loaded(name: str, where: str) -> None:
    """Note the commit a hub name was just loaded at (``where``: the folder resolve_base gave, or the name)."""
    match = SNAPSHOT.search(str(where).replace("\\", "/"))
    commit = match.group(1) if match else None
    if commit is None and where == name and not Path(name).exists():  # transformers resolved it in the cache
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")
        except Exception:  # noqa: BLE001 - not a repository name: nothing to record
            cached = None
        match = SNAPSHOT.search(str(cached).replace("\\", "/")) if isinstance(cached, str) else None
        commit = match.group(1) if match else None
    if commit is not None:
        _COMMITS[name] = commit


def revisions(module: Any) -> dict[str, str]:
    """{hyperparameter: commit} of the hub names ``module`` was built from, for its release or checkpoint."""
    marks = getattr(module, "_names_from_files", None) or {}
    hparams = getattr(module, "hparams", {}) or {}
    out = {}
    for key in getattr(type(module), "model_hparams", ()):
        name = hparams.get(key)
        if isinstance(name, str):
            commit = (marks.get(name) or (None, ""))[0] or _COMMITS.get(name)
            if commit:
                out[key] = commit
    return out
