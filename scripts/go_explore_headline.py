"""Go-Explore's headline on MiniGrid, side by side with random exploration and the zoo's on-policy learner.

    python scripts/go_explore_headline.py --envs multiroom keycorridor --seeds 0 1 2 3 4 5 6 7 8 9 \\
        --json docs/go_explore/headline.json

For each environment and seed (the seed is also the layout: --model.env_seed), on the same budget of
environment steps:

- Go-Explore: the recipe's config (default.yaml, keycorridor.yaml): phase 1 for about 100k steps, then
  robustification for the rest; the step at which phase 1 first reached the goal, and the robustified
  policy's success from reset (sticky actions 0.25, random no-ops) over 100 evaluation episodes.
- random exploration: uniformly random actions from reset, in the deterministic game, episode after
  episode, for the whole budget; the step at which an episode first reached the goal.
- the on-policy learner (MDPO's on-policy update, the learner of phase 2) trained from reset, with the
  same sticky actions and no-ops, for the whole budget: whether any training episode reached the goal,
  and its success from reset over 100 evaluation episodes.

Each run is one process after another on one core; the JSON keeps every seed's figures.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.go_explore.data import make_game  # noqa: E402

ENVS = {"multiroom": ("MiniGrid-MultiRoom-N4-S5-v1", "default.yaml"),
        "keycorridor": ("MiniGrid-KeyCorridorS4R3-v0", "keycorridor.yaml")}
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.limit_val_batches", "0", "--model.write_media", "false"]


def recipe():
    spec = importlib.util.spec_from_file_location("recipe_go_explore", ROOT / "recipes" / "go_explore.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fit(config: str, seed: int, *args: str):
    with tempfile.TemporaryDirectory() as tmp:
        cli = recipe().main(["fit", "--config", str(ROOT / "recipes" / "configs" / "go_explore" / config), *QUIET,
                             "--seed_everything", str(seed), "--model.env_seed", str(seed),
                             "--trainer.default_root_dir", tmp, *args])
    return cli.model


def go_explore(config: str, seed: int, n_eval: int) -> dict:
    start = time.time()
    model = fit(config, seed)
    hits = [frames for _, frames, _, best in model.history if best > 0]
    returns, successes = model.evaluate(n_episodes=n_eval, seed=3_000_000)
    return {"phase1_goal_at": hits[0] if hits else None, "phase1_steps": model.frames,
            "phase2_steps": model.robust_steps, "start_point": model.runner.start if model.runner else None,
            "demo_length": len(model.best_actions), "best_score": float(model.best_score),
            "success_from_reset": float(successes.mean()), "eval_return": float(returns.mean()),
            "seconds": time.time() - start}


def random_exploration(env: str, seed: int, budget: int) -> dict:
    start = time.time()
    game = make_game(env, env_seed=seed)
    rng = np.random.default_rng(seed)
    game.reset()
    hit, episodes = None, 0
    for t, a in enumerate(rng.integers(game.n_actions, size=budget)):
        reward, terminated, truncated = game.step(int(a))
        if reward > 0:
            hit = t + 1
            break
        if terminated or truncated:
            game.reset()
            episodes += 1
    return {"goal_at": hit, "episodes": episodes, "seconds": time.time() - start}


def on_policy(config: str, seed: int, budget: int, n_eval: int) -> dict:
    """The phase-2 learner alone, from reset: phase1_steps 0 leaves it no demonstration to start along."""
    start = time.time()
    iterations = budget // (16 * 128)
    model = fit(config, seed, "--model.phase1_steps", "0", "--trainer.max_steps", str(iterations))
    returns, successes = model.evaluate(n_episodes=n_eval, seed=3_000_000)
    return {"steps": model.robust_steps, "training_successes": int(model.reset_successes), "success_from_reset": float(successes.mean()),
            "eval_return": float(returns.mean()), "seconds": time.time() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--budget", type=int, default=300_000, help="environment steps per method and seed")
    parser.add_argument("--n_eval", type=int, default=100, help="evaluation episodes from reset")
    parser.add_argument("--methods", nargs="+", default=["go_explore", "random", "on_policy"])
    parser.add_argument("--json", type=Path, required=True, help="results file (updated after every run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    for name in args.envs:
        env, config = ENVS[name]
        for seed in args.seeds:
            for method in args.methods:
                key = f"{name}/{seed}/{method}"
                if key in results:
                    continue
                if method == "go_explore":
                    out = go_explore(config, seed, args.n_eval)
                elif method == "random":
                    out = random_exploration(env, seed, args.budget)
                else:
                    out = on_policy(config, seed, args.budget, args.n_eval)
                results[key] = out
                print(key, out, flush=True)
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
