"""Go-Explore phase 1 on a large archive against the same on a small one, side by side, as a ratio.

    python scripts/bench/go_explore_archive.py                       # 50,000 cells, 5 paired rounds
    python scripts/bench/go_explore_archive.py --cells 10000 50000 100000 --json docs/go_explore/bench_archive.json

Cell selection (the weights of every cell, the draw) and the best trajectory's search run once per
iteration over the whole archive, so their cost grows with it. Both sides run Montezuma's Revenge with
the domain cell and the official selection weights of recipes/configs/go_explore/montezuma.yaml, from
the same warmed-up model; the large side's archive is filled with synthetic cells (keys drawn within
Montezuma's ranges, each holding the start cell's emulator state, so a return to one is a real
restore). The sides alternate within each round; the goal is a ratio ≥ 0.9 at 50,000 cells
(``max_cells``' default).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from go_explore import steps_per_second  # noqa: E402  (scripts/bench/go_explore.py: the same timing loop)

from zoo.go_explore import GoExplore  # noqa: E402

SETTINGS = dict(env="ALE/MontezumaRevenge-v5", cell="domain", mean_repeat=20.0, frames_per_step=1600,
                explore_steps=100, seen_weight=1.0, horiz_weight=0.1, vert_weight=0.0, high_score_weight=1.0,
                low_level_weight=0.1, reset_cell_on_update=True)


def fill(model: GoExplore, cells: int, seed: int) -> None:
    """Add synthetic cells until the archive holds ``cells``: level 0-2, room 0-23, keys 0-4, x 0-19, y 0-24."""
    archive, rng = model.archive, np.random.default_rng(seed)
    score, length, state, actions = archive.score[0], archive.length[0], archive.states[0], archive.actions[0]
    while len(archive) < cells:
        key = (int(rng.integers(3)), int(rng.integers(24)), int(rng.integers(5)), int(rng.integers(20)),
               int(rng.integers(25)))
        if key not in archive.index:
            i = archive.add(key, score, length, state, actions, None)
            archive.seen[i], archive.chosen[i] = int(rng.integers(50)), int(rng.integers(20))


def warmed_up() -> GoExplore:
    """The model after its first iterations: a small archive, as a run has it early on (the same every call)."""
    torch.manual_seed(0)
    model = GoExplore(**SETTINGS)
    for _ in range(3):
        model.explore_iteration()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, nargs="+", default=[50_000])
    parser.add_argument("--seconds", type=float, default=10.0, help="timing window of each side in a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    small = warmed_up()
    results = {"small_cells": len(small.archive), "seconds": args.seconds, "rounds": args.rounds, "cells": {}}
    for cells in args.cells:
        large = warmed_up()
        fill(large, cells, seed=cells)
        rounds = []
        for r in range(args.rounds):
            a, b = (small, large) if r % 2 == 0 else (large, small)
            first, second = steps_per_second(a, args.seconds), steps_per_second(b, args.seconds)
            s, l = (first, second) if a is small else (second, first)
            rounds.append({"small_steps_per_s": s, "large_steps_per_s": l, "ratio": l / s})
        ratios = [x["ratio"] for x in rounds]
        results["cells"][str(cells)] = {"rounds": rounds, "min": min(ratios), "median": statistics.median(ratios),
                                        "max": max(ratios), "cells_at_end": len(large.archive)}
        print(f"{cells:>7} cells: phase 1 at {statistics.median(ratios):.2f}× its small-archive speed "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f}; {statistics.median(x['small_steps_per_s'] for x in rounds):.0f} "
              f"vs {statistics.median(x['large_steps_per_s'] for x in rounds):.0f} steps/s; rounds "
              f"{', '.join(f'{x:.2f}' for x in ratios)})", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
