"""ParetoGNN's benchmark: a training step against its limit, and the min-norm solver against an exact QP.

    python scripts/bench/paretognn.py                 # Cora when a local copy is found, else the generated graph
    python scripts/bench/paretognn.py --data csbm --device cuda

1. A training step of the module (five task losses, their gradients, the Gram matrix, the
   Frank–Wolfe solver, the combined gradient, the AdamW step) against its limit: one forward and
   one backward per task, the least any per-task-gradient method must do. Both are measured in
   the same run, interleaved round by round; medians. Goal: step ≤ 1.3 × limit.
2. The min-norm solver (objective.min_norm_weights) against scipy's SLSQP solving the same QP
   exactly, for 2 to 5 tasks on random normalised gradients: time per solve, the largest weight
   difference and the gap in ‖Σ α_t g_t‖².
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from zoo.paretognn import GraphDataModule, ParetoGNN  # noqa: E402
from zoo.paretognn.data import copy_shared_planetoid  # noqa: E402
from zoo.paretognn.objective import TASKS, min_norm_weights, normalise_gradients  # noqa: E402

warnings.filterwarnings("ignore", ".*self.log.*")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def load(data: str, tmp: Path) -> GraphDataModule:
    if data == "Cora":
        if copy_shared_planetoid("Cora", tmp):
            return GraphDataModule(name="Cora", root=str(tmp))
        print("no local copy of Cora (shared/data/planetoid): using the generated graph")
    return GraphDataModule()


def bench_step(dm: GraphDataModule, device: torch.device, rounds: int, hidden: list[int]) -> list[float]:
    """Each round's ratio: a training step's time over the sum of the tasks' own forward and backward."""
    torch.manual_seed(0)
    model = ParetoGNN(in_channels=dm.num_features, hidden_dims=hidden, predictor_dim=hidden[0]).to(device)
    opt = model.configure_optimizers()
    model.optimizers = lambda: opt  # the training step outside a Trainer: the same code, no loop around it
    graph = dm.graph.to(device)
    steps, limits = [], []
    for r in range(rounds + 1):  # round 0 warms up
        sync(device)
        t = time.perf_counter()
        model.training_step(graph, 0)
        sync(device)
        step = time.perf_counter() - t
        limit = 0.0
        for task in TASKS:
            sync(device)
            t = time.perf_counter()
            model.task_loss(task, graph.x, graph.edge_index).backward()
            sync(device)
            limit += time.perf_counter() - t
        model.zero_grad()
        if r:
            steps.append(step)
            limits.append(limit)
    return [s / l for s, l in zip(steps, limits)]


def exact_qp(gram: np.ndarray) -> np.ndarray:
    from scipy.optimize import minimize

    n = gram.shape[0]
    return minimize(lambda x: x @ gram @ x, np.full(n, 1 / n), jac=lambda x: 2 * gram @ x, method="SLSQP",
                    bounds=[(0, 1)] * n, constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                    options={"ftol": 1e-15, "maxiter": 1000}).x


def bench_solver(trials: int) -> list[tuple[int, float, float, float, float]]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 4, 5):
        t_fw, t_qp, dw, gap = [], [], 0.0, 0.0
        for i in range(trials):
            common = torch.randn(1, 10_000, generator=g, dtype=torch.float64) * (i % 2)
            grads = normalise_gradients(torch.randn(n, 10_000, generator=g, dtype=torch.float64) + common)
            gram = grads @ grads.T
            t = time.perf_counter()
            alpha = min_norm_weights(gram)
            t_fw.append(time.perf_counter() - t)
            t = time.perf_counter()
            qp = torch.from_numpy(exact_qp(gram.numpy()))
            t_qp.append(time.perf_counter() - t)
            dw = max(dw, float((alpha - qp).abs().max()))
            gap = max(gap, float(alpha @ gram @ alpha - qp @ gram @ qp))
        rows.append((n, statistics.median(t_fw) * 1e3, statistics.median(t_qp) * 1e3, dw, gap))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="Cora", choices=["Cora", "csbm"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    p.add_argument("--trials", type=int, default=20)
    args = p.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        dm = load(args.data, Path(tmp))
    device = torch.device(args.device)
    ratios = bench_step(dm, device, args.rounds, args.hidden)
    n, e = dm.graph.num_nodes, dm.graph.edge_index.shape[1]
    print(f"training step on {args.data if n != 1500 else 'csbm'} ({n} nodes, {e} directed edges, encoder {args.hidden}, "
          f"{args.device}) over the limit (one forward+backward per task), {args.rounds} paired rounds: median "
          f"{statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f} (goal ≤ 1.3)")
    print("\nmin-norm solver vs exact QP (SLSQP), random normalised gradients of 10,000 entries")
    print("| tasks | Frank–Wolfe ms | QP ms | speed-up | max |Δα| | max objective gap |")
    print("|---|---|---|---|---|---|")
    for n_tasks, fw, qp, dw, gap in bench_solver(args.trials):
        print(f"| {n_tasks} | {fw:.3f} | {qp:.3f} | {qp / fw:.1f}× | {dw:.1e} | {gap:.1e} |")


if __name__ == "__main__":
    main()
