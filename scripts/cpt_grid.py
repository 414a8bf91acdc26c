"""The few-shot protocol: ICL, prompt tuning, LoRA, full fine-tuning and CPT at k = 2, 4, 8, 16 examples
drawn with several seeds, accuracy on the whole test split, mean ± std; writes the table.

    python scripts/cpt_grid.py --data sst2 trec --seeds 0 1 2 3 4 --out docs/cpt/grid.jsonl
    python scripts/cpt_grid.py --table docs/cpt/grid.jsonl > docs/cpt/table.md

Each run is one line of the JSONL file (data, method, k, seed, accuracy, seconds); runs already there are
skipped, so an interrupted grid continues where it stopped. Runs go seed by seed, so a grid cut short
has every cell at the same number of seeds. The data sets are recipes/configs/cpt/<data>.yaml (its
model and data sections: base model, templates, label words), with the method's learning rate and
the steps below (one setting per base model for every data set and k; not tuned per cell).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("icl", "prompt_tuning", "lora", "full", "cpt")
NAMES = {"icl": "ICL", "prompt_tuning": "prompt tuning", "lora": "LoRA", "full": "full fine-tuning", "cpt": "CPT"}
LR = {  # per base model: AdamW's learning rate of each trained method (docs/cpt.md: how they were chosen)
    "tiny-lm": {"prompt_tuning": 3e-2, "lora": 1e-2, "full": 3e-4, "cpt": 3e-2},
    "smollm2-135m": {"prompt_tuning": 3e-2, "lora": 3e-3, "full": 3e-4, "cpt": 3e-2},
}


def run(data: str, method: str, k: int, seed: int, steps: int, overrides: dict, precision: str = "32-true",
        accelerator: str = "cpu") -> dict:
    import lightning as L

    from zoo.cpt import CPT, FewShotDataModule

    config = yaml.safe_load((ROOT / "recipes" / "configs" / "cpt" / f"{data}.yaml").read_text())
    model_args = {**config["model"], "method": method, **overrides.get("model", {})}
    if method in LR.get(model_args["base"], {}):
        model_args["lr"] = LR[model_args["base"]][method]
    data_args = {**config["data"], "k": k, "draw_seed": seed, "val_size": 0, **overrides.get("data", {})}
    L.seed_everything(seed, verbose=False)
    model, dm = CPT(**model_args), FewShotDataModule(**data_args)
    quiet = dict(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                 enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, precision=precision)
    start = time.time()
    L.Trainer(max_steps=0 if method == "icl" else steps, **quiet).fit(model, dm)
    trained = time.time()
    acc = L.Trainer(**quiet).test(model, dm, verbose=False)[0]["test/acc"]
    return {"data": data, "method": method, "k": k, "seed": seed, "acc": acc, "steps": 0 if method == "icl" else steps,
            "lr": model_args.get("lr"), "fit_s": round(trained - start, 1), "test_s": round(time.time() - trained, 1),
            "base": model_args["base"], "test_size": data_args.get("test_size"), "precision": precision,
            "accelerator": accelerator}


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for data in dict.fromkeys(r["data"] for r in rows):
        ks = sorted({r["k"] for r in rows if r["data"] == data})
        bases = ", ".join(dict.fromkeys(r["base"] for r in rows if r["data"] == data))
        out.append(f"**{data}**, base {bases} (accuracy %, mean ± std over seeds; n = seeds)\n")
        out.append("| method | " + " | ".join(f"k = {k}" for k in ks) + " |")
        out.append("|---|" + "---|" * len(ks))
        for method in METHODS:
            cells = []
            for k in ks:
                accs = [100 * r["acc"] for r in rows if (r["data"], r["method"], r["k"]) == (data, method, k)]
                sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
                cells.append(f"{statistics.mean(accs):.1f} ± {sd:.1f} (n={len(accs)})" if accs else "–")
            out.append(f"| {NAMES[method]} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["sst2", "trec"], help="configs of recipes/configs/cpt/")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--ks", nargs="+", type=int, default=[2, 4, 8, 16])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=50, help="training steps of the trained methods")
    parser.add_argument("--base", help="another base model for every run (its templates stay the config's)")
    parser.add_argument("--test_size", type=int, help="test examples (default: the whole test split)")
    parser.add_argument("--precision", default="32-true", help="the trainer's precision (bf16-mixed: about twice as fast "
                        "on a CPU with AVX512-BF16)")
    parser.add_argument("--accelerator", default="cpu", help="the trainer's accelerator (gpu: one GPU, one run at a time)")
    parser.add_argument("--threads", type=int, default=1, help="torch's CPU threads")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "cpt" / "grid.jsonl")
    parser.add_argument("--table", type=Path, help="print the table of a results file and stop")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    torch.set_num_threads(args.threads)
    overrides = {"model": {"base": args.base} if args.base else {}, "data": {"test_size": args.test_size}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():
        done = {(r["data"], r["method"], r["k"], r["seed"]) for r in map(json.loads, args.out.read_text().splitlines()) if r}
    for seed in args.seeds:
        for data in args.data:
            for k in args.ks:
                for method in args.methods:
                    if (data, method, k, seed) in done:
                        continue
                    result = run(data, method, k, seed, args.steps, overrides, args.precision, args.accelerator)
                    with args.out.open("a") as f:
                        f.write(json.dumps(result) + "\n")
                    print(f"{data} {method:13s} k={k:2d} seed={seed} acc={result['acc']:.3f} "
                          f"({result['fit_s']}+{result['test_s']} s)", flush=True)


if __name__ == "__main__":
    main()
