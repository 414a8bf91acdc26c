"""ParetoGNN's headline on this CPU: multi-task with MGDA vs equal weights vs every single task.

    python scripts/paretognn_headline.py --data csbm --seeds 0 1 2 --out logs/paretognn/headline_csbm.json
    python scripts/paretognn_headline.py --data Cora --seeds 0 1 2 --out logs/paretognn/headline_cora.json
    python scripts/paretognn_headline.py --table logs/paretognn/headline_csbm.json logs/paretognn/headline_cora.json

Each run trains recipes/configs/paretognn/<data>.yaml (csbm: default.yaml) with the model flags
of its variant and the given seed, then reads the four downstream metrics of the final encoder.
The table gives mean ± std over seeds, the average score over the four tasks (ParetoGNN's
eval.py: accuracy, NMI, AUC, partition accuracy) and the average rank across the four tasks; then
MGDA's task weights α along training (mean over seeds). Variants: mgda and equal (all five tasks),
each single task, and mgda_shared (MGDA with every task on one shared view of the graph, the
former default, for comparison with the official per-task views).
Cora's raw files are copied from a local shared/data/planetoid (data.copy_shared_planetoid) into
data/cache/pyg when they are not there yet.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from zoo.curves import read_metrics  # noqa: E402
from zoo.paretognn.data import copy_shared_planetoid  # noqa: E402
from zoo.paretognn.downstream import HEADLINE  # noqa: E402
from zoo.paretognn.objective import TASKS  # noqa: E402

VARIANTS = {"mgda": ["--model.weighting", "mgda"], "equal": ["--model.weighting", "equal"],
            **{t: ["--model.tasks", f"[{t}]"] for t in TASKS},
            "mgda_shared": ["--model.weighting", "mgda", "--model.views", "shared", "--model.contrast_nodes", "1024"]}
NAMES = {"eval/node_acc": "node acc", "eval/nmi": "NMI", "eval/link_auc": "link AUC",
         "eval/link_hits20": "Hits@20", "eval/partition_acc": "partition acc"}


def run(data: str, variant: str, seed: int, steps: int | None, tmp: Path) -> dict:
    sys.path.insert(0, str(ROOT / "recipes"))
    import paretognn as recipe

    config = ROOT / "recipes" / "configs" / "paretognn" / ("default.yaml" if data == "csbm" else f"{data.lower()}.yaml")
    args = ["fit", "--config", str(config), "--seed_everything", str(seed), *VARIANTS[variant],
            "--trainer.default_root_dir", str(tmp / f"{data}-{variant}-{seed}"), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1", "--checkpoint.save_last",
            "false", "--checkpoint.every_n_train_steps", "0"]
    import yaml

    steps = steps or yaml.safe_load(config.read_text())["trainer"]["max_steps"]
    args += ["--trainer.max_steps", str(steps), "--data.steps_per_epoch", str(steps)]  # one evaluation, at the end
    cli = recipe.main(args)
    out = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("eval/")}
    series = read_metrics(Path(cli.trainer.loggers[0].log_dir) / "metrics.csv")  # α of every step, from the CSV log
    weights = {k.removeprefix("train/weight_"): v for k, v in series.items() if k.startswith("train/weight_")}
    n = min(map(len, weights.values()), default=0)
    out["alpha"] = [{t: w[i][1] for t, w in weights.items()} for i in range(n)]
    return out


def alpha_table(results: dict) -> str:
    """MGDA's α at a few points of training, mean over seeds, for every multi-task MGDA variant."""
    lines = []
    for data, by_variant in results.items():
        for v, rs in by_variant.items():
            runs = [r["alpha"] for r in rs if r.get("alpha") and len(r["alpha"][0]) > 1]
            if not runs or not v.startswith("mgda"):
                continue
            n = min(len(a) for a in runs)
            tasks = list(runs[0][0])
            lines += [f"\n**{data}, {v}: α along training** (mean over {len(runs)} seeds)\n",
                      "| step | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
            for step in sorted({1, max(1, n // 4), max(1, n // 2), n}):
                cells = [statistics.mean(a[step - 1][t] for a in runs) for t in tasks]
                lines.append(f"| {step} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)


def table(results: dict[str, dict[str, list[dict[str, float]]]]) -> str:
    lines = []
    for data, by_variant in results.items():
        keys = [k for k in (*HEADLINE[:3], "eval/link_hits20", HEADLINE[3]) if all(k in r for rs in by_variant.values() for r in rs)]
        means = {v: {k: statistics.mean(r[k] for r in rs) for k in keys} for v, rs in by_variant.items()}
        ranks = {v: [] for v in by_variant}
        for k in (k for k in HEADLINE if k in keys):
            order = sorted(by_variant, key=lambda v: -means[v][k])
            for i, v in enumerate(order):
                ranks[v].append(i + 1)
        n_seeds = len(next(iter(by_variant.values())))
        lines += [f"\n**{data}** ({n_seeds} seeds, mean ± std)\n",
                  "| variant | " + " | ".join(NAMES[k] for k in keys) + " | avg score | avg rank |",
                  "|---|" + "---|" * (len(keys) + 2)]
        for v, rs in sorted(by_variant.items(), key=lambda kv: statistics.mean(ranks[kv[0]])):
            cells = []
            for k in keys:
                vals = [100 * r[k] for r in rs]
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{statistics.mean(vals):.1f} ± {sd:.1f}")
            score = statistics.mean(statistics.mean(100 * r[k] for r in rs) for k in HEADLINE if k in keys)
            lines.append(f"| {v} | " + " | ".join(cells) + f" | {score:.1f} | {statistics.mean(ranks[v]):.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="csbm", help="csbm or a data set with a config: Cora")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--steps", type=int, default=None, help="override the config's max_steps")
    p.add_argument("--out", type=Path, help="JSON file of the per-run metrics")
    p.add_argument("--table", type=Path, nargs="+", help="print the table of these JSON files and exit")
    args = p.parse_args()
    if args.table:
        merged = {}
        for f in args.table:  # files of one data set with different variants combine
            for data, by_variant in json.loads(f.read_text()).items():
                merged.setdefault(data, {}).update(by_variant)
        print(table(merged))
        print(alpha_table(merged))
        return
    torch.set_num_threads(1)
    if args.data != "csbm":
        copy_shared_planetoid(args.data, ROOT / "data" / "cache" / "pyg")
    tmp = ROOT / "logs" / "paretognn" / "headline_runs"
    results = {args.data: {v: [] for v in args.variants}}
    for seed in args.seeds:
        for v in args.variants:
            t = time.time()
            metrics = run(args.data, v, seed, args.steps, tmp)
            results[args.data][v].append(metrics)
            print(f"{args.data} {v} seed {seed}: mean {metrics.get('eval/mean', float('nan')):.4f} "
                  f"({time.time() - t:.0f} s)", flush=True)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results))
    print(table(results))
    print(alpha_table(results))


if __name__ == "__main__":
    main()
