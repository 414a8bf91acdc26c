"""Mode discovery: OP-TB against TB (β = 1) on the 2-D hypergrid, trajectories until every mode is found.

    python scripts/bench/op_gfn_modes.py [--height 32 --R0 0.001 0.01 0.1 --steps 1000 --batch-size 16 --seeds 3]
    python scripts/bench/op_gfn_modes.py --losses op_tb --kl-weight 0.1     # the official "-KL" variant

A mode is one of the 2^D corner regions of maximal reward; "found" means a sampled trajectory ended
in one of its states. Prints one row per (R0, loss): trajectories until all modes were found for each
seed (— when not within the budget), modes and mode states found at the end, and the final sampler's
exact mass on the maximal-reward states and its order agreement with the reward (objective.order_agreement).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
warnings.filterwarnings("ignore")


def run(height: int, R0: float, loss: str, steps: int, batch_size: int, seed: int, kl_weight: float) -> dict:
    import lightning as L

    from zoo.op_gfn import OPGFN
    from zoo.op_gfn.objective import order_agreement

    L.seed_everything(seed, verbose=False)
    model = OPGFN(height=height, R0=R0, loss=loss, batch_size=batch_size, steps_per_epoch=10**6, kl_weight=kl_weight)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(model)
    visited = model.visited.visited > 0
    en, p = model.enumeration, model.exact_distribution()
    return {"mass": float(p[en["best"]].sum()),
            "agreement": float(order_agreement(p[en["terminal"]], en["objectives"][en["terminal"]])),
            "at": int(model.all_modes_at), "modes": int(model.modes_found(visited)),
            "states": int(visited[model.enumeration["best"]].sum()), "n_modes": model.enumeration["n_modes"],
            "n_states": len(model.enumeration["best"]), "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--R0", type=float, nargs="+", default=[0.001, 0.01, 0.1])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--losses", nargs="+", default=["tb", "op_tb"])
    parser.add_argument("--kl-weight", type=float, default=0.0, help="λ_KL of KL(U ‖ P_B) (the official -KL variants: 0.1)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(f"2-D hypergrid of height {args.height}, {args.batch_size} trajectories a step, {args.steps} steps "
          f"({args.steps * args.batch_size} trajectories), seeds 0-{args.seeds - 1}, kl_weight {args.kl_weight}")
    print(f"{'R0':>6s} {'loss':6s} {'trajectories until all modes, per seed':40s} {'modes':>8s} {'mode states':>12s} "
          f"{'mode mass':>18s} {'order agreement':>20s}")
    for R0 in args.R0:
        for loss in args.losses:
            rows = [run(args.height, R0, loss, args.steps, args.batch_size, s, args.kl_weight) for s in range(args.seeds)]
            at = ", ".join(str(r["at"]) if r["at"] >= 0 else "—" for r in rows)
            modes = "/".join(str(r["modes"]) for r in rows) + f" of {rows[0]['n_modes']}"
            states = "/".join(str(r["states"]) for r in rows) + f" of {rows[0]['n_states']}"
            mass = "/".join(f"{r['mass']:.2f}" for r in rows)
            agreement = "/".join(f"{r['agreement']:.3f}" for r in rows)
            print(f"{R0:6g} {loss:6s} {at:40s} {modes:>8s} {states:>12s} {mass:>18s} {agreement:>20s}", flush=True)


if __name__ == "__main__":
    main()
