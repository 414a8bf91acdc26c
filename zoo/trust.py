"""Code named by a file is imported only when it is trusted.

A few hyperparameters name code to import: OP-GFN's and MDPO's ``env`` takes ``package.module:Class``
or ``path/to/file.py:Class`` for a user's own environment (each method lists them in its
``code_hparams``). A release's hparams.yaml and a checkpoint carry these values too, and building
the model from them would import, and run, whatever they name: ``env: "os:system"`` with
``env_kwargs: {command: ...}`` runs a shell command. So before a model is built from a file
(``zoo.load``, ``--model.init_from``, ``fit --ckpt_path``), each such value must be

- the zoo's own: a name that imports nothing (a registered gymnasium id, a built-in environment),
  an environment class of the zoo (a ``gymnasium.Env`` subclass in the zoo package, or a class of
  an environment module ``zoo.<method>.data``), or a file shipped in the project's ``data/`` or
  ``zoo/`` folders; or
- the value the user gave on the command line for the same key (``--model.env my_env.py:MyEnv``); or
- allowed by ``trust_code=True`` (``zoo.load(..., trust_code=True)``, ``--trust_code true``), the
  convention of ``trust_remote_code`` in transformers.

Anything else is refused with an error naming the file and the key, before anything is imported.

A value of any hyperparameter may also hold a mapping with ``class_path`` or ``init_args`` (as
``env_kwargs: {x: {class_path: some.module.Class}}``): the command line's parser (jsonargparse)
imports such a class while it reads the value, so a file's hyperparameters holding one anywhere are
refused the same way, unless ``trust_code`` or the user gave the same value for that key. What a file
holds reaches the model as data.
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Mapping

from zoo.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (ROOT / "data", ROOT / "zoo")
NOT_SHIPPED = (ROOT / "data" / "cache",)  # downloads land here


def names_code(value: Any) -> bool:
    """Whether a hyperparameter value is an import path (``module:name`` or ``file.py:name``)."""
    return isinstance(value, str) and ":" in value


def _inside(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def is_zoo_code(value: Any) -> bool:
    """Whether importing ``value`` runs only the zoo's own environment code (see the module docstring)."""
    if not names_code(value):
        return True
    module_name, _, name = value.rpartition(":")
    if module_name.endswith(".py"):  # a file: shipped with the project?
        path = Path(module_name).expanduser().resolve()
        return path.is_file() and _inside(path, SHIPPED) and not _inside(path, NOT_SHIPPED)
    if module_name != "zoo" and not module_name.startswith("zoo."):
        return False
    try:  # the zoo's own modules: importing them runs nothing foreign
        spec = importlib.util.find_spec(module_name)
        if spec is None or spec.origin is None or not _inside(Path(spec.origin).resolve(), (ROOT / "zoo",)):
            return False
        obj = getattr(importlib.import_module(module_name), name, None)
    except (ImportError, ValueError):
        return False
    if not isinstance(obj, type):  # a function (zoo.rl:make_env) may import whatever its arguments say
        return False
    import gymnasium as gym

    import torch

    if issubclass(obj, torch.nn.Module):  # a model (a ZooModule) builds environments from its own arguments
        return False
    return issubclass(obj, gym.Env) or obj.__module__.endswith(".data")


CLASS_KEYS = ("class_path", "init_args")


def class_path_in(value: Any, where: str = "") -> str | None:
    """Where inside ``value`` a mapping holds ``class_path`` or ``init_args`` (``.x.y``, or ``""`` for the value
    itself), or None where nothing does."""
    if isinstance(value, Mapping):
        if any(k in value for k in CLASS_KEYS):
            return where
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = class_path_in(v, f"{where}.{k}" if isinstance(k, str) else f"{where}[{k}]")
        if found is not None:
            return found
    return None


def check_code(model_class: type, init_args: Mapping[str, Any], source: str | Path, trust_code: bool = False,
               given: Mapping[str, Any] | None = None) -> None:
    """Refuse, naming ``source`` and the key, any hyperparameter of ``init_args`` that names code which is
    neither the zoo's own, nor what the user passed for that key (``given``), nor allowed by ``trust_code``."""
    if trust_code:
        return
    given = given or {}
    for key, value in init_args.items():
        where = class_path_in(value)
        if where is not None and value != given.get(key):
            raise CheckpointError(
                f"{source}: {key}{where} holds a class_path/init_args mapping, which the command line's parser would "
                "import; a file's hyperparameters are data only: pass the value on the command line yourself, or "
                "trust_code=True (zoo.load) / --trust_code true (recipes), if you trust where the file came from")
    for key in getattr(model_class, "code_hparams", ()):
        value = init_args.get(key)
        if value is None or value == given.get(key) or is_zoo_code(value):
            continue
        raise CheckpointError(
            f"{source}: {key} = {value!r} names code outside the zoo, which loading would import and run; "
            f"pass --model.{key} {value} yourself, or trust_code=True (zoo.load) / --trust_code true (recipes), "
            "if you trust where the file came from")
