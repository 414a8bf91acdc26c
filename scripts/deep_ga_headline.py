"""Deep GA's learning runs across seeds: when each seed reached the target and what its final policy returns.

    python scripts/deep_ga_headline.py --seeds 1 2 3 4 --out logs/deep_ga/headline/lunarlander.json
    python scripts/deep_ga_headline.py --config recipes/configs/deep_ga/ns_maze.yaml --seeds 0 1 2 \\
        --out logs/deep_ga/headline/ns_maze.json
    python scripts/deep_ga_headline.py --table logs/deep_ga/headline/lunarlander.json

Each seed trains the config (default.yaml: LunarLander-v3) with ``--seed_everything SEED`` and any
recipe flags given after ``--``, then records: the environment steps at the first validation whose
return reached the config's ``target_return`` (None if none did), the validation curve, and the
final policy's return on the 20 fixed episodes a release card reports (seeds 2 000 000…2 000 019).
The JSON file is rewritten after every seed.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def run(config: Path, seed: int, extra: list[str], root: Path) -> dict:
    sys.path.insert(0, str(ROOT / "recipes"))
    import deep_ga as recipe

    args = ["fit", "--config", str(config), "--seed_everything", str(seed), *extra,
            "--trainer.default_root_dir", str(root / f"{config.stem}-seed{seed}"), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--checkpoint.save_last", "false",
            "--checkpoint.every_n_train_steps", "0"]
    start = time.time()
    cli = recipe.main(args)
    seconds = time.time() - start
    model = cli.model.cpu().eval()
    target = model.hparams.target_return
    curve = []  # (env steps, validation return) at every validation
    with open(Path(cli.trainer.loggers[0].log_dir) / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("val/return"):
                curve.append((int(float(row["val/env_steps"])), float(row["val/return"])))
    reached = next((steps for steps, r in curve if target is not None and r >= target), None)
    final = model.release_metrics()
    return {"seed": seed, "target": target, "env_steps_to_target": reached, "curve": curve,
            "final_return_mean_20ep": final["eval/return_mean_20ep"], "final_return_std_20ep": final["eval/return_std_20ep"],
            "env_steps": model.env_steps, "generations": model.generation, "best_training_return": model.best_return,
            "seconds": round(seconds)}


def table(rows: list[dict]) -> str:
    lines = ["| seed | reached target at (env steps) | final return (20 episodes) | env steps | generations | minutes |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        at = f"{r['env_steps_to_target']:,}" if r["env_steps_to_target"] is not None else "not reached"
        lines.append(f"| {r['seed']} | {at} | {r['final_return_mean_20ep']:.1f} ± {r['final_return_std_20ep']:.1f} | "
                     f"{r['env_steps']:,} | {r['generations']} | {r['seconds'] / 60:.1f} |")
    finals = [r["final_return_mean_20ep"] for r in rows]
    hits = [r["env_steps_to_target"] for r in rows if r["env_steps_to_target"] is not None]
    sd = statistics.stdev(finals) if len(finals) > 1 else 0.0
    lines.append(f"\nreached the target in {len(hits)} of {len(rows)} seeds"
                 + (f" (median {statistics.median(hits):,.0f} env steps)" if hits else "")
                 + f"; final return over seeds {statistics.mean(finals):.1f} ± {sd:.1f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                usage="%(prog)s [--config C] [--seeds S ...] [--out F] [-- RECIPE FLAGS]")
    p.add_argument("--config", type=Path, default=ROOT / "recipes" / "configs" / "deep_ga" / "default.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--out", type=Path, help="JSON file of the per-seed results")
    p.add_argument("--table", type=Path, nargs="+", help="print the table of these JSON files and exit")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, extra = p.parse_args(argv[:split]), argv[split + 1:]
    if args.table:
        print(table([r for f in args.table for r in json.loads(f.read_text())["runs"]]))
        return
    torch.set_num_threads(1)
    rows: list[dict] = []
    for seed in args.seeds:
        rows.append(run(args.config, seed, extra, ROOT / "logs" / "deep_ga" / "headline"))
        r = rows[-1]
        print(f"seed {seed}: target reached at {r['env_steps_to_target']} env steps; final return "
              f"{r['final_return_mean_20ep']:.1f} ± {r['final_return_std_20ep']:.1f} ({r['seconds']} s)", flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"config": str(args.config.relative_to(ROOT) if args.config.is_absolute() else args.config),
                                            "flags": extra, "runs": rows}, indent=1) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
