"""Go-Explore's headline, side by side with random exploration and the zoo's on-policy learner.

    python scripts/go_explore_headline.py --envs multiroom keycorridor --seeds 0 1 2 3 4 5 6 7 8 9 \\
        --json docs/go_explore/headline.json
    python scripts/go_explore_headline.py --envs montezuma --seeds 0 --budget 250000 \\
        --json docs/go_explore/montezuma.json

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

Montezuma's Revenge (montezuma.yaml's phase 1, domain cells), on a budget of environment steps (4
emulator frames each): the best score and the rooms found by phase 1; the best episode score and the
rooms visited by random play (game over resets, lives lost do not); and the on-policy learner trained
from reset (a convolutional policy on 4 stacked 84×84 frames, sticky actions, no-ops): its best
training episode, and its evaluation from reset.

Each run is one process after another on one core; the JSON keeps every seed's figures.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.cli import load_recipe  # noqa: E402
from zoo.go_explore.data import make_game  # noqa: E402

ENVS = {"multiroom": ("MiniGrid-MultiRoom-N4-S5-v1", "default.yaml"),
        "keycorridor": ("MiniGrid-KeyCorridorS4R3-v0", "keycorridor.yaml"),
        "montezuma": ("ALE/MontezumaRevenge-v5", "montezuma.yaml")}
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.limit_val_batches", "0", "--model.write_media", "false"]


def recipe():
    return load_recipe("go_explore")


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
            "demo_length": len(model.best_actions), "robustified_length": len(model.demo) if model.demo else None,
            "best_score": float(model.best_score),
            "success_from_reset": float(successes.mean()), "eval_return": float(returns.mean()),
            "seconds": time.time() - start}


def random_exploration(env: str, seed: int, budget: int, stop_at_goal: bool = True) -> dict:
    start = time.time()
    game = make_game(env, env_seed=seed, end_on_life_loss=False)
    rng = np.random.default_rng(seed)
    game.reset()
    hit, episodes, score, best, rooms = None, 0, 0.0, 0.0, set()
    for t, a in enumerate(rng.integers(game.n_actions, size=budget)):
        reward, terminated, truncated = game.step(int(a))
        score += reward
        best = max(best, score)
        rooms.add(game.room())
        if reward > 0 and hit is None:
            hit = t + 1
            if stop_at_goal:
                break
        if terminated or truncated:
            game.reset()
            episodes, score = episodes + 1, 0.0
    return {"goal_at": hit, "episodes": episodes, "best_score": best, "rooms": len(rooms - {-1}),
            "seconds": time.time() - start}


def go_explore_montezuma(config: str, seed: int, budget: int) -> dict:
    start = time.time()
    steps = budget // 1600
    model = fit(config, seed, "--model.phase1_steps", str(steps), "--trainer.max_steps", str(steps))
    return {"phase1_steps": model.frames, "best_score": float(model.best_score), "cells": len(model.archive),
            "rooms": len(model.archive.rooms), "best_trajectory_steps": len(model.best_actions),
            "seconds": time.time() - start}


def on_policy_montezuma(config: str, seed: int, budget: int, n_eval: int) -> dict:
    start = time.time()
    iterations = budget // (16 * 64)
    model = fit(config, seed, "--model.phase1_steps", "0", "--trainer.max_steps", str(iterations),
                "--model.n_envs", "16", "--model.n_steps", "64", "--model.reward_clip", "true", "--model.lr", "0.00025")
    returns, _ = model.evaluate(n_episodes=n_eval, seed=3_000_000)
    return {"steps": model.robust_steps, "best_training_episode": model.best_training_return,
            "eval_return": float(returns.mean()), "seconds": time.time() - start}


def on_policy(config: str, seed: int, budget: int, n_eval: int) -> dict:
    """The phase-2 learner alone, from reset: phase1_steps 0 leaves it no demonstration to start along."""
    start = time.time()
    n_envs, n_steps = 16, 64  # the configs' iteration: 1024 environment steps
    iterations = -(-budget // (n_envs * n_steps))
    model = fit(config, seed, "--model.phase1_steps", "0", "--trainer.max_steps", str(iterations),
                "--model.n_envs", str(n_envs), "--model.n_steps", str(n_steps))
    returns, successes = model.evaluate(n_episodes=n_eval, seed=3_000_000)
    return {"steps": model.robust_steps, "training_successes": int(model.reset_successes), "success_from_reset": float(successes.mean()),
            "eval_return": float(returns.mean()), "seconds": time.time() - start}


def table(results: dict) -> str:
    """The headline table (markdown) of a results file: per environment, the three methods side by side."""
    lines = []
    for name in ENVS:
        seeds = sorted({int(k.split("/")[1]) for k in results if k.startswith(name + "/")})
        if not seeds or name == "montezuma":
            continue
        # each method's runs, over the seeds where it ran
        ge, rnd, onp = ([results[k] for s in seeds if (k := f"{name}/{s}/{method}") in results]
                        for method in ("go_explore", "random", "on_policy"))
        found = [g["phase1_goal_at"] for g in ge if g["phase1_goal_at"] is not None]
        within = sum(f <= 100_000 for f in found)
        succ = [g["success_from_reset"] for g in ge]
        rnd_found = [r["goal_at"] for r in rnd if r["goal_at"] is not None]
        onp_any = [o["training_successes"] > 0 for o in onp]
        onp_succ = [o["success_from_reset"] for o in onp]
        plain = [results[k]["success_from_reset"] for s in seeds if (k := f"{name}/{s}/go_explore_plain") in results]
        lines += [f"**{ENVS[name][0]}**, seeds {seeds[0]}–{seeds[-1]}:", "",
                  "| | reached the goal within 100k steps | within 300k steps | success from reset (mean ± std) |",
                  "|---|---|---|---|",
                  f"| Go-Explore (phase 1, then robustified) | {within}/{len(ge)} seeds (median at {int(np.median(found)) if found else '—'}) "
                  f"| {len(found)}/{len(ge)} | {np.mean(succ):.2f} ± {np.std(succ):.2f} "
                  f"({', '.join(f'{x:.2f}' for x in succ)}) |"]
        if plain:  # the same phase 1; phase 2 without self-imitation, on the demonstration as found
            lines += [f"| … robustified without self-imitation, demonstration as found | same | same "
                      f"| {np.mean(plain):.2f} ± {np.std(plain):.2f} ({', '.join(f'{x:.2f}' for x in plain)}) |"]
        lines += [f"| random exploration | {sum(f <= 100_000 for f in rnd_found)}/{len(rnd)} "
                  f"| {len(rnd_found)}/{len(rnd)} | — |",
                  f"| on-policy learner (MDPO) from reset | — | {sum(onp_any)}/{len(onp_any)} (any training episode) "
                  f"| {np.mean(onp_succ):.2f} ± {np.std(onp_succ):.2f} |", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    parser.add_argument("--budget", type=int, default=300_000, help="environment steps per method and seed")
    parser.add_argument("--n_eval", type=int, default=100, help="evaluation episodes from reset")
    parser.add_argument("--methods", nargs="+", default=["go_explore", "random", "on_policy"])
    parser.add_argument("--json", type=Path, required=True, help="results file (updated after every run)")
    parser.add_argument("--table", action="store_true", help="print the table of the results file and stop")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.json.read_text())))
        return
    torch.set_num_threads(1)
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    for name in args.envs:
        env, config = ENVS[name]
        for seed in args.seeds:
            for method in args.methods:
                key = f"{name}/{seed}/{method}"
                if key in results:
                    continue
                if name == "montezuma":
                    out = (go_explore_montezuma(config, seed, args.budget) if method == "go_explore" else
                           random_exploration(env, seed, args.budget, stop_at_goal=False) if method == "random" else
                           on_policy_montezuma(config, seed, args.budget, min(args.n_eval, 10)))
                elif method == "go_explore":
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
