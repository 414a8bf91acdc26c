"""OP-GFN's trajectory balance against torchgfn's, side by side in one run.

    python scripts/bench/op_gfn.py [--iterations 250 --batch-size 128 --height 8 --ndim 2 --seeds 3]
    python scripts/bench/op_gfn.py --parity --ndim 3     # the same loss and gradients on the same batch

Same hypergrid (R0=0.1, R1=0.5, R2=2), same k-hot encoding, same networks (separate P_F and P_B
MLPs, 2 hidden layers of 256), same Adam settings (1e-3, log Z 0.1), same batch and iterations.
Ours runs as users run it, inside a Lightning Trainer; torchgfn runs its documented training loop.
Both final samplers are scored by the same exact L1 distance (enumerating the grid). Speed is
reported per wall-clock second and per CPU second of the process (the steadier figure on a shared
machine). The sides run in paired rounds, one a seed, alternating which goes first; each round's ratio
is printed, then the median, minimum and maximum.

torchgfn needs numpy < 2, so it lives in an environment of its own, private to the checkout and pinned
(TORCHGFN_PINS), which sees the project's torch and lightning through a .pth file; make it once with

    python scripts/bench/op_gfn.py --setup          # .bench/torchgfn (ignored by git)

and the bench then runs itself under that environment's python.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

VENV = ROOT / ".bench" / "torchgfn"
TORCHGFN_PINS = ("torchgfn==2.4.1", "numpy==1.26.4", "tensordict==0.15.3", "einops==0.8.2",
                 "linear-attention-transformer==0.19.1", "dill==0.4.1")


def setup_torchgfn(path: Path) -> None:
    """torchgfn's pinned environment at ``path``; the project's packages (torch, lightning, the zoo's
    dependencies) come through a .pth file, so both sides run the same torch."""
    print(f"making {path} for torchgfn…", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = str(path / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    import sysconfig

    (Path(site) / "zoo_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", *TORCHGFN_PINS], check=True)


def in_torchgfn_env() -> None:
    """Run this script again under the torchgfn environment's python, unless already there."""
    try:
        import gfn  # noqa: F401
        return
    except ImportError:
        pass
    python = VENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no torchgfn environment at {VENV}: make it with python scripts/bench/op_gfn.py --setup")
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def exact_l1(pf_module, ndim: int, height: int) -> float:
    from zoo.op_gfn.data import HyperGrid
    from zoo.op_gfn.objective import exact_terminal_distribution

    env = HyperGrid(ndim, height)
    states = env.all_states()
    mask = env.forward_mask(states)
    children = torch.zeros(states.shape[0], env.n_actions - 1, dtype=torch.long)
    for a in range(env.n_actions - 1):
        ok = mask[:, a]
        children[ok, a] = env.index(env.step(states[ok], torch.full((int(ok.sum()),), a)))
    with torch.no_grad():
        log_pf = pf_module(env.encode(states)).masked_fill(~mask, float("-inf")).log_softmax(-1)
    p = exact_terminal_distribution(log_pf, children, 0, env.max_length)
    r = env.objectives(states)[:, 0]
    return (p - r / r.sum()).abs().sum().item()


def run_ours(args, seed: int) -> tuple[float, float]:
    import lightning as L

    from zoo.op_gfn import OPGFN

    L.seed_everything(seed, verbose=False)
    model = OPGFN(ndim=args.ndim, height=args.height, loss="tb", batch_size=args.batch_size,
                  hidden_dim=256, n_hidden_layers=2, lr=1e-3, lr_Z=0.1, steps_per_epoch=args.iterations)
    if args.same_init:  # torchgfn's initial weights for this seed: only the sampled batches differ
        torch.manual_seed(seed)
        _, module_pf, module_pb, _ = torchgfn_tb(args)
        copy_weights(model, module_pf, module_pb)
    trainer = L.Trainer(max_steps=args.iterations, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    start, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return args.iterations / wall, args.iterations / cpu, exact_l1(model.pf, args.ndim, args.height)


def run_torchgfn(args, seed: int) -> tuple[float, float]:
    torch.manual_seed(seed)
    env, module_pf, module_pb, gfn = torchgfn_tb(args)
    opt = torch.optim.Adam(gfn.pf_pb_parameters(), lr=1e-3)
    opt.add_param_group({"params": gfn.logz_parameters(), "lr": 0.1})
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.iterations):
        trajectories = gfn.sample_trajectories(env, n=args.batch_size, save_logprobs=True)
        opt.zero_grad()
        loss = gfn.loss(env, trajectories, recalculate_all_logprobs=False)
        loss.backward()
        opt.step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return args.iterations / wall, args.iterations / cpu, exact_l1(module_pf, args.ndim, args.height)


def torchgfn_tb(args, log_Z: float = 0.0):
    from gfn.estimators import DiscretePolicyEstimator
    from gfn.gflownet import TBGFlowNet
    from gfn.gym import HyperGrid
    from gfn.preprocessors import KHotPreprocessor
    from gfn.utils.modules import MLP

    env = HyperGrid(ndim=args.ndim, height=args.height, reward_fn_kwargs={"R0": 0.1, "R1": 0.5, "R2": 2.0})
    pre = KHotPreprocessor(height=args.height, ndim=args.ndim)
    module_pf = MLP(input_dim=pre.output_dim, output_dim=env.n_actions, hidden_dim=256, n_hidden_layers=2)
    module_pb = MLP(input_dim=pre.output_dim, output_dim=env.n_actions - 1, hidden_dim=256, n_hidden_layers=2)
    pf = DiscretePolicyEstimator(module_pf, env.n_actions, preprocessor=pre)
    pb = DiscretePolicyEstimator(module_pb, env.n_actions, preprocessor=pre, is_backward=True)
    return env, module_pf, module_pb, TBGFlowNet(pf=pf, pb=pb, init_logZ=log_Z)


def copy_weights(ours, module_pf, module_pb) -> None:
    """torchgfn's MLP (trunk of Linear, ReLU pairs, then last_layer) into ours (one Sequential)."""
    for net, mlp in ((ours.pf, module_pf), (ours.pb, module_pb)):
        for i, layer in enumerate((*mlp.trunk[::2], mlp.last_layer)):
            net[2 * i].load_state_dict(layer.state_dict())


def parity(args) -> None:
    """Both TB losses on one batch of torchgfn's trajectories, from the same weights: the loss and
    every gradient should agree to float rounding, which rules out any difference in the objective,
    the parameterisation (masking, log-softmax, P_B) or the scores."""
    from zoo.op_gfn import OPGFN

    torch.manual_seed(0)
    env, module_pf, module_pb, gfn = torchgfn_tb(args, log_Z=0.3)
    ours = OPGFN(ndim=args.ndim, height=args.height, loss="tb", hidden_dim=256, n_hidden_layers=2)
    copy_weights(ours, module_pf, module_pb)
    ours.log_Z.data.fill_(0.3)
    traj = gfn.sample_trajectories(env, n=args.batch_size, save_logprobs=True)
    loss_t = gfn.loss(env, traj, recalculate_all_logprobs=True)
    states, actions = traj.states.tensor.clone(), traj.actions.tensor.squeeze(-1)
    for t in range(1, states.shape[0]):  # torchgfn's sink state -1 after the stop: ours repeats the last state
        sink = (states[t] == -1).all(-1)
        states[t][sink] = states[t - 1][sink]
    mine = ours.score_trajectories(states[: actions.shape[0] + 1], actions)
    loss_o = ours.loss_of(mine, ours.env.objectives(mine.terminal))
    (loss_t + loss_o).backward()
    print(f"TB on one batch of {args.batch_size} torchgfn trajectories, {args.ndim}-D hypergrid of height {args.height}")
    print(f"loss: torchgfn {loss_t.item():.7f}, zoo {loss_o.item():.7f}")
    theirs = [*module_pf.parameters(), *module_pb.parameters(), gfn.logZ]
    mine_p = [*ours.pf.parameters(), *ours.pb.parameters(), ours.log_Z]
    worst = max((a.grad - b.grad).abs().max().item() / max(a.grad.abs().max().item(), 1e-12)
                for a, b in zip(theirs, mine_p))
    print(f"largest gradient difference, relative to the tensor's largest entry: {worst:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--height", type=int, default=8)
    parser.add_argument("--ndim", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parity", action="store_true", help="compare the two losses and gradients on one batch")
    parser.add_argument("--same-init", action="store_true", help="start ours from torchgfn's initial weights")
    parser.add_argument("--setup", action="store_true", help=f"make torchgfn's pinned environment ({VENV}), then stop")
    args = parser.parse_args()
    if args.setup:
        return setup_torchgfn(VENV)
    in_torchgfn_env()
    import importlib.metadata as m

    print(f"torchgfn {m.version('torchgfn')}, numpy {m.version('numpy')}, torch {torch.__version__}")
    torch.set_num_threads(args.threads)
    if args.parity:
        return parity(args)

    results = {"zoo": [], "torchgfn": []}
    for seed in range(args.seeds):  # paired rounds, one a seed, the sides alternating which goes first
        sides = [("torchgfn", run_torchgfn), ("zoo", run_ours)]
        for name, fn in (sides if seed % 2 == 0 else sides[::-1]):
            results[name].append(fn(args, seed))

    print(f"TB on the {args.ndim}-D hypergrid of height {args.height}: batch {args.batch_size}, "
          f"{args.iterations} iterations, {args.seeds} seeds, torch threads {args.threads}")
    print(f"{'':10s} {'iterations/s (wall)':>20s} {'iterations/CPU-s':>17s} {'exact L1':>18s}")
    for name, rows in results.items():
        l1 = [r[2] for r in rows]
        print(f"{name:10s} {statistics.mean(r[0] for r in rows):20.1f} {statistics.mean(r[1] for r in rows):17.1f} "
              f"{statistics.mean(l1):10.4f} ± {statistics.pstdev(l1):.4f}")
    for i, kind in ((0, "wall-clock"), (1, "CPU-time")):
        ratios = [z[i] / t[i] for z, t in zip(results["zoo"], results["torchgfn"])]
        print(f"speed ratio zoo / torchgfn ({kind}): median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}, "
              f"max {max(ratios):.2f} (per round: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"L1 zoo − torchgfn: {statistics.mean(r[2] for r in results['zoo']) - statistics.mean(r[2] for r in results['torchgfn']):+.4f}")


if __name__ == "__main__":
    main()
