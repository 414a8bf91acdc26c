"""One MDPO recipe over many seeds: the final model's greedy return, its spread, and how many seeds
solve the task. Defaults are chosen on this spread, not on one lucky seed.

    python scripts/bench/mdpo_seeds.py --config default.yaml --seeds 0 1 2 3 4 5 6 7 8 9 \\
        --solved 475 --out docs/mdpo/cartpole_10seeds.json
    python scripts/bench/mdpo_seeds.py --config acrobot.yaml --seeds 0 1 2 -- --model.policy_steps 10
    python scripts/bench/mdpo_seeds.py --replot docs/mdpo/cartpole_10seeds.json

Each seed trains with validation on (the config's evaluation schedule, logged as the curve), then the
model that fit returns (its last step) plays 20 greedy episodes on fixed seeds. Arguments after ``--``
go to the recipe.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from zoo.cli import load_recipe  # noqa: E402
from zoo.rl import evaluate  # noqa: E402

CONFIGS = ROOT / "recipes" / "configs" / "mdpo"
EVAL_EPISODES, EVAL_SEED = 20, 5_000_000


def run(config: str, seed: int, extra: list[str]) -> dict:
    import lightning as L

    curve = []

    class Curve(L.Callback):
        def on_validation_end(self, trainer, module):
            r = trainer.callback_metrics.get("val/return")
            if r is not None and not trainer.sanity_checking:
                curve.append((int(module.env_steps), float(r)))

    recipe = load_recipe("mdpo")
    with tempfile.TemporaryDirectory() as tmp:
        cli = recipe.main(["--config", str(CONFIGS / config), "--seed_everything", str(seed),
                           "--trainer.default_root_dir", tmp, "--trainer.enable_progress_bar", "false",
                           "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
                           "--checkpoint.every_n_train_steps", "1000000", *extra], run=False)
        cli.trainer.callbacks.append(Curve())
        start = time.perf_counter()
        cli.trainer.fit(cli.model)
        seconds = time.perf_counter() - start
    model = cli.model.eval()
    returns = evaluate(model.act, model.make_env, EVAL_EPISODES, seed=EVAL_SEED)
    last = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("train/")}
    return {"seed": seed, "env_steps": int(model.env_steps), "seconds": seconds, "return": float(returns.mean()),
            "return_std": float(returns.std()), "val_curve": curve, "last_train_metrics": last}


def summary(rows: list[dict], solved: float | None) -> str:
    r = np.array([row["return"] for row in rows])
    line = (f"{len(r)} seeds, {rows[0]['env_steps']} env steps: final greedy return {r.mean():.1f} ± {r.std():.1f} "
            f"(min {r.min():.1f}, median {np.median(r):.1f}, max {r.max():.1f})")
    if solved is not None:
        line += f"; ≥ {solved:g} on {(r >= solved).sum()} of {len(r)}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default.yaml", help="a file of recipes/configs/mdpo/")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--solved", type=float, help="count the seeds whose final return reaches this")
    parser.add_argument("--out", help="write every seed's result as JSON here (after each seed)")
    parser.add_argument("--replot", help="only print the summary of this saved --out JSON")
    parser.add_argument("extra", nargs="*", help="recipe arguments, after --")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        print(summary(saved["runs"], saved.get("solved")))
        return
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        rows.append(run(args.config, seed, args.extra))
        row = rows[-1]
        print(f"seed {seed}: {row['env_steps']} env steps in {row['seconds']:.0f} s, final greedy return "
              f"{row['return']:.1f} ± {row['return_std']:.1f}; val/return "
              + " ".join(f"{r:.0f}" for _, r in row["val_curve"])
              + f"; last entropy {row['last_train_metrics'].get('train/entropy', float('nan')):.3f}", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps({"config": args.config, "extra": args.extra, "solved": args.solved,
                                                  "runs": rows}) + "\n")
    print(summary(rows, args.solved))


if __name__ == "__main__":
    main()
