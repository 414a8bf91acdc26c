"""Released checkpoints: a registry of ids, their files and sha256 sums, and safe loading.

A release is a directory ``checkpoints/<id>/`` holding

    model.safetensors   the module's state dict (never a pickle)
    hparams.yaml        {class_path: zoo.<method>.<Class>, init_args: {...}}
    card.md             command, seed, package versions, git commit, measured metrics
    metrics.json        the measured metrics
    curve.png           the learning curve

and an entry in ``checkpoints/registry.json`` with the method, the data, the headline metric and
the sha256 of every file. ``load`` verifies the sums before it reads a byte of the weights, and
reads only safetensors, YAML, and Lightning checkpoints through ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"
REGISTRY = CHECKPOINTS / "registry.json"
WEIGHTS, HPARAMS = "model.safetensors", "hparams.yaml"
DOCUMENTS = ("card.md", "metrics.json", "curve.png")  # describe a release; not verified on load


class CheckpointError(RuntimeError):
    """A release or checkpoint file is missing, corrupted, or does not match its model."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def registry() -> dict[str, dict[str, Any]]:
    if not REGISTRY.exists():
        return {}
    return json.loads(REGISTRY.read_text())


def list_models(print_table: bool = True) -> list[dict[str, Any]]:
    """The released ids with their method, data and headline metric (printed as a table)."""
    rows = [{"id": k, **v} for k, v in sorted(registry().items())]
    if print_table:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="zoo: released checkpoints")
        for col in ("id", "method", "data", "headline metric"):
            table.add_column(col)
        for r in rows:
            m = r.get("headline", {})
            table.add_row(r["id"], r.get("method", ""), r.get("data", ""), f"{m.get('name', '')} = {m.get('value', '')}")
        Console().print(table)
    return rows


def _resolve(id_or_path: str | Path) -> tuple[Path, dict[str, str] | None]:
    """The release directory (or .ckpt file) and the sha256 sums it must match, if registered."""
    reg = registry()
    if str(id_or_path) in reg:
        entry = reg[str(id_or_path)]
        return CHECKPOINTS / entry["path"], entry["files"]
    path = Path(id_or_path).expanduser()
    if not path.exists():
        known = ", ".join(sorted(reg)) or "none yet"
        raise CheckpointError(f"{id_or_path!r} is neither a released id (known: {known}) nor an existing path")
    for entry in reg.values():  # a registered directory given by its path is verified as well
        if (CHECKPOINTS / entry["path"]).resolve() == path.resolve():
            return path, entry["files"]
    return path, None


def verify(directory: Path, files: dict[str, str]) -> None:
    for name, expected in files.items():
        f = directory / name
        if not f.exists():
            raise CheckpointError(f"{f}: missing; the release lists it with sha256 {expected[:12]}…")
        got = sha256(f)
        if got != expected:
            raise CheckpointError(
                f"{f}: sha256 is {got[:12]}… but the registry says {expected[:12]}…; "
                "the file is corrupted or was changed after release: refusing to load it"
            )


def _import_class(class_path: str, source: Path) -> type:
    if not class_path.startswith("zoo."):
        raise CheckpointError(f"{source}: class_path {class_path!r} is outside the zoo package: refusing to import it")
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"{source}: class_path {class_path!r} does not exist ({e})") from e


def _read_hparams(path: Path) -> tuple[type, dict[str, Any]]:
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CheckpointError(f"{path}: not readable as YAML ({e})") from e
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise CheckpointError(f"{path}: expected a mapping with class_path and init_args")
    return _import_class(spec["class_path"], path), dict(spec.get("init_args") or {})


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".ckpt":
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure to read is the same error for the user
            raise CheckpointError(f"{path}: not a readable Lightning checkpoint ({e})") from e
        return ckpt["state_dict"]
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from e


def _load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:5]}")
        if wrong:
            parts.append("shape mismatches " + "; ".join(wrong[:5]))
        raise CheckpointError(
            f"{source}: does not match the model ({', '.join(parts)}); "
            "the model's hyperparameters differ from those the weights were trained with"
        )
    module.load_state_dict(state, strict=True)


def _files(id_or_path: str | Path) -> tuple[Path, Path | None]:
    """(weights file, hparams file or None) after verifying sums where the release is registered."""
    path, sums = _resolve(id_or_path)
    if path.is_file():
        return path, None
    if sums is not None:
        verify(path, sums)
    for name in (WEIGHTS, HPARAMS):
        if not (path / name).exists():
            raise CheckpointError(f"{path / name}: missing; a release directory holds {WEIGHTS} and {HPARAMS}")
    return path / WEIGHTS, path / HPARAMS


def load(id_or_path: str | Path, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """The released (or saved) LightningModule in eval mode.

    ``id_or_path``: an id from ``zoo.list_models()``, a release directory, or a Lightning ``.ckpt``
    written by a ``fit`` run of a zoo recipe.
    """
    weights, hparams = _files(id_or_path)
    if hparams is not None:
        cls, init_args = _read_hparams(hparams)
        if hasattr(cls, "load_release"):  # methods whose weights live in another format (HF models)
            return cls.load_release(weights.parent, init_args).to(map_location).eval()
    else:
        ckpt = torch.load(weights, map_location="cpu", weights_only=True)
        init_args = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}
        class_path = ckpt.get("zoo_class_path")
        if class_path is None:
            raise CheckpointError(f"{weights}: has no _class_path; it was not written by a zoo recipe")
        cls = _import_class(class_path, weights)
    init_args.pop("init_from", None)
    model = cls(**init_args)
    _load_into(model, _read_state_dict(weights), weights)
    return model.to(map_location).eval()


def load_weights(module: torch.nn.Module, id_or_path: str | Path) -> None:
    """Load a release's weights into an existing module (fine-tuning); shapes must match."""
    weights, hparams = _files(id_or_path)
    if hparams is not None:
        cls, init_args = _read_hparams(hparams)
        if hasattr(cls, "load_release"):  # stored in another format: read it the way the method does
            init_args.pop("init_from", None)
            _load_into(module, cls.load_release(weights.parent, init_args).state_dict(), weights.parent)
            return
    _load_into(module, _read_state_dict(weights), weights)


def hparams_of(module: torch.nn.Module) -> dict[str, Any]:
    init_args = {k: v for k, v in dict(module.hparams).items() if not k.startswith("_") and k != "init_from"}
    init_args = json.loads(json.dumps(init_args))  # plain YAML types: tuples become lists
    cls = type(module)
    return {"class_path": f"{cls.__module__}.{cls.__name__}", "init_args": init_args}


def save(module: torch.nn.Module, directory: str | Path) -> dict[str, str]:
    """Write model.safetensors (or the module's own format) and hparams.yaml; returns the sha256 of
    every file the release loads from."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if hasattr(module, "save_release"):
        module.save_release(directory)
    else:
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        save_file(state, directory / WEIGHTS)
    (directory / HPARAMS).write_text(yaml.safe_dump(hparams_of(module), sort_keys=False))
    return {f.name: sha256(f) for f in sorted(directory.iterdir()) if f.is_file() and f.name not in DOCUMENTS}
