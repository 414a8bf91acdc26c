"""The tabular headline: exploitability against iterations for Nash-MD and its baselines, on the
rock-paper-scissors-like game and a random 10×10 game (skewed μ, τ = 0.1, η = 0.5).

    python scripts/bench/nash_md_tabular.py          # seconds; writes docs/nash_md/tabular.png and .json

Each game runs the recipe's tabular config (recipes/configs/nash_md/tabular.yaml) twice, with a constant
step (the paper's Nash-MD then stops within O(η/τ) of π*_τ) and with η_t = min(η, 2/(τ(t + 2))).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from zoo.cli import load_recipe  # noqa: E402

NAMES = {"nash_md": "Nash-MD (against π_t^μ, the paper's)", "nash_md_vs_current": "Nash-MD against π_t",
         "self_play": "self-play (β = 0)", "rlhf": "RLHF (Bradley–Terry fit, then KL-regularised)"}


def run(game: str, schedule: str, steps: int, root: Path) -> dict[str, list[float]]:
    load_recipe("nash_md").main(["fit", "--config", str(ROOT / "recipes/configs/nash_md/tabular.yaml"), "--model.game", game,
                 "--model.eta_schedule", schedule, "--trainer.max_steps", str(steps), "--trainer.default_root_dir",
                 str(root), "--trainer.enable_progress_bar", "false", "--checkpoint.every_n_train_steps", str(steps)])
    rows = list(csv.DictReader(open(next(root.glob("version_*/metrics.csv")))))
    return {k: [float(r[f"tabular/exploitability/{k}"]) for r in rows] for k in NAMES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "nash_md")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = {"rps_like": "rock-paper-scissors-like (3 responses)", "random": "random 10×10"}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for game in games:
            for schedule in ("constant", "decreasing"):
                results[f"{game}/{schedule}"] = run(game, schedule, args.steps, Path(tmp) / f"{game}-{schedule}")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (game, title) in zip(axes, games.items()):
        for key, style in (("constant", "-"), ("decreasing", "--")):
            curves = results[f"{game}/{key}"]
            for name, label in NAMES.items():
                if key == "decreasing" and name not in ("nash_md",):
                    continue
                y = [max(v, 1e-16) for v in curves[name]]
                ax.semilogy(range(1, len(y) + 1), y, style, label=label + (", η_t = min(η, 2/(τ(t+2)))" if key == "decreasing" else ""))
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.set_ylabel("exploitability  max_π' P_τ(π' ≻ π_t) − ½")
        ax.set_ylim(1e-16, 1)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "tabular.png", dpi=120)
    final = {k: {name: v[name][-1] for name in NAMES} for k, v in results.items()}
    (args.out / "tabular.json").write_text(json.dumps({"steps": args.steps, "final_exploitability": final}, indent=2) + "\n")
    print(f"{'game / step size':<22}" + "".join(f"{n:>20}" for n in NAMES))
    for k, v in final.items():
        print(f"{k:<22}" + "".join(f"{v[n]:>20.2e}" for n in NAMES))


if __name__ == "__main__":
    main()
