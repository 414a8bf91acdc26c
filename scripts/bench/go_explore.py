"""Go-Explore phase 1 against the bare emulator stepping random actions, side by side, as a ratio.

    python scripts/bench/go_explore.py                 # ALE Montezuma and MiniGrid MultiRoom, 3 rounds
    python scripts/bench/go_explore.py --seconds 20 --rounds 5 --json docs/go_explore/bench.json

"Bare" is the gymnasium environment as a user would make it (ALE v5 with repeat_action_probability 0
and its default RGB observation; MiniGrid with its default partial-view observation), stepped with
uniformly random actions and reset when an episode ends. "Phase 1" is GoExplore's exploration step:
cell selection, return by restoring the saved state, repeated random actions with the cell of every
step, and the archive update. Both count environment steps (4 emulator frames each for ALE). The two
alternate within each round, so that a busy machine slows both alike; the goal is a ratio ≥ 0.7.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from zoo.go_explore import GoExplore  # noqa: E402

CASES = {
    "ALE/MontezumaRevenge-v5 (domain cells)": dict(env="ALE/MontezumaRevenge-v5", cell="domain", mean_repeat=20.0),
    "ALE/MontezumaRevenge-v5 (downscaled cells)": dict(env="ALE/MontezumaRevenge-v5", cell="downscaled", mean_repeat=20.0,
                                                       first_recompute=2000, split_iterations=50),
    "MiniGrid-MultiRoom-N4-S5-v1 (domain cells)": dict(env="MiniGrid-MultiRoom-N4-S5-v1", cell="domain", mean_repeat=2.0),
}


def bare_steps_per_second(env_id: str, seconds: float, seed: int) -> float:
    import gymnasium as gym

    if env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
        env = gym.make(env_id, repeat_action_probability=0.0)
    else:
        import minigrid  # noqa: F401

        env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in rng.integers(env.action_space.n, size=100):
            _, _, terminated, truncated, _ = env.step(int(a))
            n += 1
            if terminated or truncated:
                env.reset()
    return n / (time.perf_counter() - start)


def steps_per_second(model: GoExplore, seconds: float) -> float:
    """Phase 1's environment steps per second: whole iterations (select, restore, explore, update) for ``seconds``."""
    frames, start = model.frames, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.explore_iteration()
    return (model.frames - frames) / (time.perf_counter() - start)


def phase1_steps_per_second(kwargs: dict, seconds: float, seed: int) -> float:
    torch.manual_seed(seed)
    model = GoExplore(frames_per_step=1600, explore_steps=100, **kwargs)
    model.explore_iteration()  # the archive's first cell and the first batch: warm-up
    return steps_per_second(model, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="timing window of each measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for name, kwargs in CASES.items():
        bare, ours = [], []
        for r in range(args.rounds):
            bare.append(bare_steps_per_second(kwargs["env"], args.seconds, r))
            ours.append(phase1_steps_per_second(kwargs, args.seconds, r))
        ratios = [o / b for o, b in zip(ours, bare)]
        results[name] = {"bare_steps_per_s": bare, "phase1_steps_per_s": ours, "ratio": ratios,
                         "median_ratio": statistics.median(ratios)}
        print(f"{name:45s} bare {statistics.median(bare):7.0f} steps/s   phase 1 {statistics.median(ours):7.0f} "
              f"steps/s   ratio {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}; rounds: "
              f"{', '.join(f'{x:.2f}' for x in ratios)})",
              flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"seconds": args.seconds, "rounds": args.rounds, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
