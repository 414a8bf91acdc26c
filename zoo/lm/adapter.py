"""LoRA adapters as releases: a few MB over a base model that is installed anyway, in PEFT's own format.

An adapter release holds PEFT's ``adapter_config.json`` and ``adapter_model.safetensors`` beside the
zoo's files, and ``base.json``: the base model's name and the sha256 of its weights (the GGUF file of a
packaged base). So

    PeftModel.from_pretrained(base_model, release_folder)     # plain PEFT, over the same base

loads it, and the zoo (``load_causal_lm``, ``zoo.load``) builds the base by its name, refuses it where
its sha256 is not the one the adapter was trained on, and merges the adapter into it.

A LoRA run on a base that is itself an adapter release (unlearning a LoRA fine-tune) trains a second
adapter over the first one merged; its release is one adapter over the first one's base, the two
stacked: with each adapter's update s · B A (s = α / r),

    s₁ B₁ A₁ + s₂ B₂ A₂ = B A,   A = [A₁; A₂],  B = [s₁ B₁, s₂ B₂],  rank r₁ + r₂, α = r₁ + r₂ (s = 1),

which is exact (``stack``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import CheckpointError, UserError

CONFIG, WEIGHTS, BASE = "adapter_config.json", "adapter_model.safetensors", "base.json"
PREFIX = "base_model.model."  # PEFT's prefix of the adapted modules' names in its files

#: one adapter as {module path in the bare model: (A [r, in], s·B [out, r])}
Factors = dict[str, tuple[Tensor, Tensor]]


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG).is_file()


def fingerprint(where: str) -> str:
    """The sha256 of the weights a base loads from (``resolve_base``'s answer): the file itself (a GGUF), a
    release's manifest (which pins its every file), else the folder's weight files in name order."""
    from zoo.hub import MANIFEST, sha256

    path = Path(where)
    if path.is_file():
        return sha256(path)
    if (path / MANIFEST).is_file():
        return sha256(path / MANIFEST)
    files = sorted(p for p in path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    import hashlib

    return hashlib.sha256("".join(sha256(p) for p in files).encode()).hexdigest()


def factors_of(model: nn.Module) -> tuple[Factors, bool]:
    """The "default" LoRA adapter of a PEFT model as factors, and whether its layers store W transposed
    (GPT-2's Conv1D: PEFT's fan_in_fan_out)."""
    out: Factors = {}
    for name, module in model.named_modules():
        lora_A = getattr(module, "lora_A", None)
        if isinstance(lora_A, nn.ModuleDict) and "default" in lora_A:
            path = name[len(PREFIX):] if name.startswith(PREFIX) else name
            a = lora_A["default"].weight.detach().float().cpu()
            b = module.lora_B["default"].weight.detach().float().cpu() * module.scaling["default"]
            out[path] = (a.clone(), b.clone())
    config = getattr(model, "peft_config", {}).get("default")
    return out, bool(getattr(config, "fan_in_fan_out", False))


def read(folder: str | Path) -> tuple[Factors, bool]:
    """An adapter folder's factors (its scale folded into B) and its fan_in_fan_out."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / CONFIG).read_text())
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / r ** 0.5 if config.get("use_rslora") else alpha / r
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise UserError(f"{folder}: an adapter with per-module ranks or scales (rank_pattern, alpha_pattern) "
                        "is not one the zoo stacks")
    state = load_file(folder / WEIGHTS)
    out: Factors = {}
    for key, a in state.items():
        if key.endswith(".lora_A.weight"):
            path = key[len(PREFIX):-len(".lora_A.weight")]
            out[path] = (a.float(), state[key.replace(".lora_A.", ".lora_B.")].float() * scale)
    return out, bool(config.get("fan_in_fan_out"))


def stack(*adapters: Factors) -> Factors:
    """One adapter whose update is the sum of the adapters' updates (A stacked, B side by side; a module that
    an adapter leaves alone takes zeros in its place)."""
    ranks = [next(iter(f.values()))[0].shape[0] if f else 0 for f in adapters]
    out: Factors = {}
    for path in sorted({p for f in adapters for p in f}):
        a_in = next(f[path][0].shape[1] for f in adapters if path in f)
        b_out = next(f[path][1].shape[0] for f in adapters if path in f)
        As = [f[path][0] if path in f else torch.zeros(r, a_in) for f, r in zip(adapters, ranks)]
        Bs = [f[path][1] if path in f else torch.zeros(b_out, r) for f, r in zip(adapters, ranks)]
        out[path] = (torch.cat(As, 0), torch.cat(Bs, 1))
    return out


def write(factors: Factors, folder: str | Path, base: str, fan_in_fan_out: bool, base_sha256: str) -> None:
    """PEFT's adapter files for ``factors`` (scale 1: α = r) and base.json naming the base and its sha256."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    folder = Path(folder)
    r = next(iter(factors.values()))[0].shape[0]
    config = LoraConfig(r=r, lora_alpha=r, target_modules=sorted(factors), task_type="CAUSAL_LM",
                        fan_in_fan_out=fan_in_fan_out, base_model_name_or_path=base)
    config.save_pretrained(str(folder))  # PEFT's own writer: adapter_config.json
    state = {}
    for path, (a, b) in factors.items():
        state[f"{PREFIX}{path}.lora_A.weight"] = a.contiguous()
        state[f"{PREFIX}{path}.lora_B.weight"] = b.contiguous()
    save_file(state, folder / WEIGHTS)
    (folder / BASE).write_text(json.dumps({"base": base, "sha256": base_sha256}, indent=1) + "\n")


def base_of(folder: str | Path) -> dict[str, Any]:
    try:
        spec = json.loads((Path(folder) / BASE).read_text())
        return {"base": str(spec["base"]), "sha256": str(spec["sha256"])}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{folder}: an adapter release without a readable {BASE} ({e}); it names the base "
                              "the adapter goes over") from None


def load(folder: str | Path, flag: str = "--model.base") -> tuple[nn.Module, Any]:
    """(model, tokenizer) of an adapter release: its base, checked against base.json's sha256, with the
    adapter merged in (PEFT's ``PeftModel.from_pretrained`` and ``merge_and_unload``)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from zoo.lm.helpers import load_causal_lm, resolve_base

    folder = Path(folder)
    if not (folder / WEIGHTS).is_file():
        raise CheckpointError(f"{folder}: an adapter release without {WEIGHTS} (the zoo reads adapters from "
                              "safetensors only)")
    spec = base_of(folder)
    where = resolve_base(spec["base"], flag)
    found = fingerprint(where)
    if found != spec["sha256"]:
        raise CheckpointError(f"{folder}: the adapter was trained over {spec['base']} with sha256 {spec['sha256'][:16]}…, "
                              f"but {where} has sha256 {found[:16]}…: install the base it names (its card says which)")
    model, tokenizer = load_causal_lm(spec["base"], flag)
    model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError):
        pass
    return model, tokenizer
