"""A release's documents: card.md (what the model is, the command and seed that trained it, the package
versions, the git commit, the measured metrics) and metrics.json, and how ``python -m zoo export`` reads
them off a run's folder (config.yaml, metrics.csv, curve.png). scripts/release.py writes the same card."""
from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from zoo.files import ROOT

PACKAGES = ("torch", "lightning", "torchmetrics", "transformers", "peft", "torch-geometric", "gymnasium", "safetensors")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        # checkpoints/ is what releases write (a re-release rewrites its own files), not code
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!checkpoints"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def adapter_section(release_id: str, base: dict) -> str:
    """What an adapter release goes over (base.json: the base's name and the sha256 of its weights)."""
    return f"""
## Base model

A LoRA adapter in PEFT's format over the base `{base['base']}`, whose weights have sha256
`{base['sha256']}` (the zoo refuses another). `zoo.load("{release_id}")` gives the base with the adapter
merged; plain PEFT loads it over the same base:
`PeftModel.from_pretrained(base_model, "checkpoints/{release_id}")`.
"""


def card(release_id: str, method: str, data: str, command: str, seed, metrics: dict, model, licence: str,
         commit: str, curve: bool = True, base: dict | None = None) -> str:
    cls = type(model)
    doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or cls.__name__).strip().splitlines()[0]
    rows = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(metrics.items()))
    vers = "\n".join(f"| {k} | {v} |" for k, v in versions().items())
    return f"""# {release_id}

{method}: {doc}

Load it with `zoo.load("{release_id}")`; fine-tune it with `--model.init_from {release_id}`.
{adapter_section(release_id, base) if base else ""}
## Data

{data}. Licence: {licence}.

## Command

```
{command}
```

Seed: {seed}. Git commit: {commit}.

## Measured metrics (at the end of training)

| metric | value |
|---|---|
{rows or "| (none logged) | |"}
{chr(10) + "![learning curve](curve.png)" + chr(10) if curve else ""}
## Packages

| package | version |
|---|---|
{vers}
"""


def last_values(metrics_csv: Path) -> dict[str, float]:
    """The last logged value of every series of a run's CSV log (the metrics at the end of training)."""
    from zoo.curves import read_metrics

    return {k: float(v[-1][1]) for k, v in sorted(read_metrics(metrics_csv).items())
            if v and math.isfinite(float(v[-1][1]))}


def run_documents(checkpoint: Path, model, release_id: str) -> dict[str, str | bytes]:
    """card.md, metrics.json and curve.png for the release of a run's ``checkpoint``, from what the run's
    folder holds (those it lacks are left out: a checkpoint without its folder gets a card without metrics)."""
    from zoo.cli import method_of
    from zoo.curves import plot_curve
    from zoo.runs import run_folder_of

    folder = run_folder_of(checkpoint)
    config_file, metrics_csv, curve = folder / "config.yaml", folder / "metrics.csv", folder / "curve.png"
    docs: dict[str, str | bytes] = {}
    if not config_file.is_file() and not metrics_csv.is_file():
        return docs
    metrics = last_values(metrics_csv) if metrics_csv.is_file() else {}
    metrics.pop("epoch", None)
    if metrics:
        docs["metrics.json"] = json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    if curve.is_file():
        docs["curve.png"] = curve.read_bytes()
    elif metrics_csv.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            if plot_curve(metrics_csv, Path(tmp) / "curve.png", getattr(model, "curve_metrics", ()), release_id):
                docs["curve.png"] = (Path(tmp) / "curve.png").read_bytes()
    method = method_of(type(model))
    seed, command = None, f"python recipes/{method}.py fit  (the run's config.yaml was not found beside {checkpoint})"
    if config_file.is_file():
        text = config_file.read_text()
        try:
            seed = (yaml.safe_load(text) or {}).get("seed_everything")
        except yaml.YAMLError:
            seed = None
        command = f"python recipes/{method}.py fit --config config.yaml\n```\n\nwith the run's config.yaml:\n\n```yaml\n{text.rstrip()}"
    data = f"the data of the run in {folder}"
    docs["card.md"] = card(release_id, method, data, command, seed, metrics, model, "as the data's licence states",
                           git_commit(), curve="curve.png" in docs)
    return docs
