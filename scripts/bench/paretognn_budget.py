"""ParetoGNN at the paper's configuration on Cora, in chunks that span sessions: MGDA, equal weights and the
best single task, each seed a run of recipes/configs/paretognn/cora_paper.yaml (512-256, 2,000 steps, the
four downstream metrics every 250).

    python scripts/bench/paretognn_budget.py --jsonl docs/paretognn/cora_paper.jsonl --end-by 17:20
    python scripts/bench/paretognn_budget.py --jsonl docs/paretognn/cora_paper.jsonl --table
    python scripts/bench/paretognn_budget.py --jsonl docs/paretognn/cora_paper.jsonl --plot docs/paretognn/cora_paper.png

Runs go in order (seed 0 of each variant, then seed 1, ...). A run writes its checkpoints under
``--root``/<variant>-<seed>/; one that stops unfinished (``--end-by``: Lightning's ``max_time``, which saves
the last step) is resumed exactly with ``--ckpt_path last`` by the same command later. A finished run
appends one line to the JSON-lines file: its variant, seed, steps, the metrics of every evaluation and
MGDA's task weights, and is skipped from then on.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CONFIG = ROOT / "recipes" / "configs" / "paretognn" / "cora_paper.yaml"
VARIANTS = {"mgda": ["--model.weighting", "mgda"], "equal": ["--model.weighting", "equal"],
            "recon": ["--model.tasks", "[recon]"]}  # recon: the best single task on Cora at 100 steps
METRICS = ("eval/node_acc", "eval/nmi", "eval/link_auc", "eval/partition_acc", "eval/mean")


def done(path: Path) -> set[tuple[str, int]]:
    if not path.exists():
        return set()
    return {(r["variant"], r["seed"]) for r in map(json.loads, path.read_text().splitlines()) if r}


def seconds_left(end_by: str | None) -> float | None:
    if end_by is None:
        return None
    now = dt.datetime.now()
    end = now.replace(hour=int(end_by[:2]), minute=int(end_by[3:]), second=0, microsecond=0)
    return (end - now).total_seconds()


def versions(folder: Path) -> list[Path]:
    """The run's version_N folders, oldest first (each resume writes a new one)."""
    return sorted(folder.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))


def run(variant: str, seed: int, root: Path, end_by: str | None) -> dict | None:
    """Train (or resume) one run; its record once it has reached max_steps, else None."""
    import yaml

    from zoo.curves import read_metrics
    from zoo.hub import read_checkpoint

    folder = root / f"{variant}-{seed}"
    lasts = [v / "checkpoints" / "last.ckpt" for v in versions(folder) if (v / "checkpoints" / "last.ckpt").exists()]
    args = [sys.executable, str(ROOT / "recipes" / "paretognn.py"), "fit", "--config", str(CONFIG),
            "--seed_everything", str(seed), *VARIANTS[variant], "--trainer.default_root_dir", str(folder),
            "--trainer.enable_progress_bar", "false"]
    spent = 0.0
    if lasts:
        args += ["--ckpt_path", "last"]  # the newest run under the folder
        spent = read_checkpoint(lasts[-1])["callbacks"]["Timer"]["time_elapsed"]["train"]
    left = seconds_left(end_by)
    if left is not None:
        if left < 120:
            return None
        total = int(spent + left)  # Lightning's Timer counts the time of every earlier chunk too
        h, rest = divmod(total, 3600)
        args += ["--trainer.max_time", f"00:{h:02d}:{rest // 60:02d}:{rest % 60:02d}"]
    print("$ " + " ".join(args[1:]), flush=True)
    subprocess.run(args, cwd=ROOT, check=True)
    series: dict[str, dict[int, float]] = {}
    for v in versions(folder):  # later chunks after earlier ones
        if (v / "metrics.csv").exists():
            for key, points in read_metrics(v / "metrics.csv").items():
                series.setdefault(key, {}).update(points)
    max_steps = yaml.safe_load(CONFIG.read_text())["trainer"]["max_steps"]
    if max(series.get("eval/mean", {0: 0}), default=0) < max_steps - 1:
        return None
    curve = {k: sorted([s, v] for s, v in series[k].items()) for k in METRICS if k in series}
    weights = {k.removeprefix("train/weight_"): v[max(v)] for k, v in series.items() if k.startswith("train/weight_")}
    return {"variant": variant, "seed": seed, "steps": max_steps, "config": CONFIG.name,
            "final": {k: v[-1][1] for k, v in curve.items()}, "curve": curve, "final_weights": weights}


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    out = ["| variant | seeds | " + " | ".join(m.removeprefix("eval/") for m in METRICS) + " |",
           "|---|---|" + "---|" * len(METRICS)]
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        cells = []
        for m in METRICS:
            v = [100 * r["final"][m] for r in mine]
            cells.append(f"{statistics.mean(v):.1f} ± {statistics.pstdev(v):.1f}")
        out.append(f"| {variant} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(path: Path, out: Path) -> None:
    """The four downstream metrics and their mean against steps, one line per variant: the mean over its
    seeds, the band between the lowest and the highest seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.0 * len(METRICS), 3.4))
    for ax, metric in zip(axes, METRICS):
        for variant in VARIANTS:
            curves = [dict(map(tuple, r["curve"][metric])) for r in rows if r["variant"] == variant and metric in r["curve"]]
            if not curves:
                continue
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            values = np.array([[c[s] for s in steps] for c in curves]) * 100
            x = np.array(steps) + 1
            line, = ax.plot(x, values.mean(0), marker="o", ms=3, label=f"{variant} ({len(curves)} seeds)")
            if len(curves) > 1:
                ax.fill_between(x, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
        ax.set_title(metric.removeprefix("eval/"))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=8)
    fig.suptitle("ParetoGNN on Cora at the paper's configuration (512-256): mean over seeds, band min-max")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jsonl", type=Path, default=ROOT / "docs" / "paretognn" / "cora_paper.jsonl")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--root", type=Path, default=ROOT / "logs" / "paretognn_budget")
    parser.add_argument("--end-by", metavar="HH:MM", help="stop training by this local time (resumable later)")
    parser.add_argument("--table", action="store_true", help="only print the table of the finished runs")
    parser.add_argument("--plot", type=Path, help="only plot the finished runs' curves into this PNG")
    args = parser.parse_args()
    if args.plot:
        return plot(args.jsonl, args.plot)
    if args.table:
        return print(table(args.jsonl))
    from zoo.paretognn.data import copy_shared_planetoid

    copy_shared_planetoid("Cora", ROOT / "data" / "cache" / "pyg")
    for seed in args.seeds:
        for variant in args.variants:
            if (variant, seed) in done(args.jsonl):
                continue
            record = run(variant, seed, args.root, args.end_by)
            if record is None:
                print(f"{variant} seed {seed}: not finished; the same command resumes it", flush=True)
                return
            args.jsonl.parent.mkdir(parents=True, exist_ok=True)
            with args.jsonl.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{variant} seed {seed}: eval/mean {record['final']['eval/mean']:.4f}", flush=True)


if __name__ == "__main__":
    main()
