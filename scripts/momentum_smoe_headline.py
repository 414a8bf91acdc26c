"""The MomentumSMoE headline at small scale: SMoE vs MomentumSMoE vs AdamSMoE, equal steps and equal
parameter count, several seeds, on the embedded corpus (recipes/configs/momentum_smoe/default.yaml).

    python scripts/momentum_smoe_headline.py                    # train every (variant, seed), then report
    python scripts/momentum_smoe_headline.py --collect          # report the runs already in --root
    python scripts/momentum_smoe_headline.py --variants smoe momentum --seeds 0 1 -- --trainer.max_steps 300

Each run is ``python recipes/momentum_smoe.py fit --model.variant V --seed_everything S`` (one after the
other, one thread each); the report is a markdown table of the final validation perplexity (clean and
under the word-swap attack) and expert load entropy, mean ± std over seeds, and a plot of the curves.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.curves import read_metrics  # noqa: E402

NAMES = {"smoe": "SMoE", "momentum": "MomentumSMoE", "adam": "AdamSMoE", "robust": "Robust MomentumSMoE"}
METRICS = ("val/ppl", "val/ppl_attacked", "val/load_entropy")


def run(variant: str, seed: int, root: Path, extra: list[str]) -> None:
    out = root / f"{variant}-{seed}"
    if (out / "version_0" / "metrics.csv").exists():
        return
    cmd = [sys.executable, str(ROOT / "recipes" / "momentum_smoe.py"), "fit", "--model.variant", variant,
           "--seed_everything", str(seed), "--trainer.default_root_dir", str(out),
           "--trainer.enable_progress_bar", "false", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def collect(root: Path, variants: list[str], seeds: list[int]) -> dict:
    out = {}
    for v in variants:
        for s in seeds:
            csv = root / f"{v}-{s}" / "version_0" / "metrics.csv"
            if csv.exists():
                series = read_metrics(csv)
                out[f"{v}-{s}"] = {k: series.get(k, []) for k in (*METRICS, "train/loss")}
    return out


def report(runs: dict, variants: list[str], seeds: list[int], png: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ["| model | seeds | val ppl ↓ | val ppl, word-swap attack ↓ | expert load entropy (nats) |", "|---|---|---|---|---|"]
    for v in variants:
        finals = {m: [runs[f"{v}-{s}"][m][-1][1] for s in seeds if f"{v}-{s}" in runs and runs[f"{v}-{s}"][m]]
                  for m in METRICS}
        n = len(finals["val/ppl"])
        if not n:
            continue
        cells = []
        for m in METRICS:
            xs = finals[m]
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            cells.append(f"{statistics.mean(xs):.2f} ± {sd:.2f}")
        rows.append(f"| {NAMES[v]} | {n} | " + " | ".join(cells) + " |")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, v in enumerate(variants):
        for s in seeds:
            r = runs.get(f"{v}-{s}")
            if not r:
                continue
            for ax, m in zip(axes, ("val/ppl", "val/ppl_attacked")):
                steps, vals = zip(*r[m])
                ax.plot(steps, vals, color=f"C{i}", alpha=0.8, label=NAMES[v] if s == seeds[0] else None)
    for ax, m in zip(axes, ("validation perplexity", "validation perplexity under word-swap attack")):
        ax.set_xlabel("step")
        ax.set_title(m)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["smoe", "momentum", "adam"], choices=list(NAMES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--root", type=Path, default=ROOT / "logs" / "momentum_smoe_headline")
    p.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "momentum_smoe_headline.png")
    p.add_argument("--collect", action="store_true", help="only report the runs already in --root")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="-- then flags for every run")
    args = p.parse_args()
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if not args.collect:
        for s in args.seeds:
            for v in args.variants:
                run(v, s, args.root, extra)
    runs = collect(args.root, args.variants, args.seeds)
    (args.root / "summary.json").write_text(json.dumps(runs))
    print(report(runs, args.variants, args.seeds, args.png))
    print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
