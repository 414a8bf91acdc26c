"""Throughput of SMoE, MomentumSMoE, AdamSMoE and Robust MomentumSMoE of equal size, side by side.

    python scripts/bench/momentum_smoe.py                      # CPU, one thread, the default.yaml size
    python scripts/bench/momentum_smoe.py --device cuda --d_model 352 --n_layer 6 --num_experts 16 \\
        --d_hidden 352 --block_size 512 --batch_size 8 --precision bf16

Each model is the same network (identical parameter count) with a different layer update; the
training step (forward, backward, AdamW) and the eval forward are timed in interleaved rounds, and
tokens/s are reported with their ratio to SMoE. Goal: momentum costs under 5 % of throughput.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from zoo.lm.objective import next_token_nll  # noqa: E402
from zoo.momentum_smoe import MomentumSMoE  # noqa: E402
from zoo.momentum_smoe.nets import NORMS  # noqa: E402
from zoo.momentum_smoe.objective import adam_smoe_update, momentum_smoe_update, smoe_update  # noqa: E402

VARIANTS = {"smoe": "SMoE", "momentum": "MomentumSMoE", "adam": "AdamSMoE", "robust": "Robust MomentumSMoE"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--norm", choices=NORMS, default="official", help="where the LayerNorms sit")
    p.add_argument("--d_model", type=int, default=64)
    p.add_argument("--n_layer", type=int, default=4)
    p.add_argument("--n_head", type=int, default=4)
    p.add_argument("--num_experts", type=int, default=8)
    p.add_argument("--top_k", type=int, default=2)
    p.add_argument("--d_hidden", type=int, default=64)
    p.add_argument("--vocab_size", type=int, default=4096)
    p.add_argument("--block_size", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--steps", type=int, default=10, help="steps per model per round")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    size = dict(norm=args.norm, vocab_size=args.vocab_size, n_positions=args.block_size, d_model=args.d_model,
                n_layer=args.n_layer, n_head=args.n_head, num_experts=args.num_experts, top_k=args.top_k,
                d_hidden=args.d_hidden, dropout=0.0)
    torch.manual_seed(0)
    models = {v: MomentumSMoE(variant=v, **size).to(dev) for v in VARIANTS}
    state = models["smoe"].state_dict()
    for m in models.values():
        m.load_state_dict(state)  # the same weights: only the update differs
    opts = {v: torch.optim.AdamW(m.parameters(), lr=1e-4) for v, m in models.items()}
    ids = torch.randint(0, args.vocab_size, (args.batch_size, args.block_size + 1), device=dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def train(v: str) -> None:
        m, opt = models[v].train(), opts[v]
        with autocast:
            logits, s = m.net(ids[:, :-1])
            loss = next_token_nll(logits, ids[:, :-1]) + 0.01 * torch.stack(s.balance).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer(v: str) -> None:
        with autocast:
            models[v].eval()(ids[:, :-1])

    times = {(v, kind): [] for v in VARIANTS for kind in ("train", "eval")}
    for v in VARIANTS:  # warm-up
        train(v)
        infer(v)
    order = list(VARIANTS)
    for r in range(args.rounds):
        for v in order[r % len(order):] + order[:r % len(order)]:  # each variant first in turn
            for kind, fn in (("train", train), ("eval", infer)):
                sync()
                t = time.perf_counter()
                for _ in range(args.steps):
                    fn(v)
                sync()
                times[(v, kind)].append(time.perf_counter() - t)
    tokens = args.batch_size * args.block_size * args.steps
    n_params = {v: sum(p.numel() for p in m.parameters()) for v, m in models.items()}
    print(f"device {args.device}, {args.threads} thread(s), {args.precision}; {args.norm}-norm, d={args.d_model}, L={args.n_layer}, "
          f"E={args.num_experts}, top-{args.top_k}, batch {args.batch_size}×{args.block_size}; "
          f"median of {args.rounds} rounds of {args.steps} steps; 'vs SMoE' is the median (min-max) of the paired rounds' ratios")
    print("| model | parameters | train tokens/s | vs SMoE | eval tokens/s | vs SMoE |")
    print("|---|---|---|---|---|---|")
    for v, name in VARIANTS.items():
        # paired: SMoE's time over this variant's in the same round, so a load that drifts over the run cancels
        ratio = {kind: sorted(s / t for s, t in zip(times[("smoe", kind)], times[(v, kind)])) for kind in ("train", "eval")}
        spread = {kind: f"{statistics.median(r):.3f} ({r[0]:.2f}-{r[-1]:.2f})" for kind, r in ratio.items()}
        tr = tokens / statistics.median(times[(v, "train")])
        ev = tokens / statistics.median(times[(v, "eval")])
        print(f"| {name} | {n_params[v]:,} | {tr:,.0f} | {spread['train']} | {ev:,.0f} | {spread['eval']} |")
    update_cost(models, args, dev, statistics.median(times[("smoe", "train")]) / args.steps)


def update_cost(models: dict, args, dev: torch.device, smoe_step: float) -> None:
    """The residual updates alone, forward and backward through all layers on tensors of the model's shape,
    less SMoE's x + f: what momentum adds to a training step, timed apart from the noise of a whole step.
    Each layer applies its block's own variant and parameters (AdamSMoE: Adam first, heavy ball above)."""
    shape = (args.batch_size, args.block_size, args.d_model)
    x0 = torch.randn(shape, device=dev)
    fs = [torch.randn(shape, device=dev, requires_grad=True) for _ in range(args.n_layer)]

    def chain(v: str) -> None:
        x, p, pa, m = x0, 0.0, 0.0, 0.0
        for block, f in zip(models[v].net.blocks, fs):
            q = block.params
            if block.variant == "smoe":
                x = smoe_update(x, f)
            elif block.variant == "adam":
                x, pa, m = adam_smoe_update(x, f, pa, m, q.adam_mu, q.adam_beta, q.adam_gamma, q.adam_eps)
                p = -f + q.mu * p  # the heavy-ball state runs on through the Adam layer, as in Block.update
            else:
                x, p = momentum_smoe_update(x, f, p, q.mu, q.gamma)
        x.sum().backward()

    cost = {}
    for v in ("smoe", "momentum", "adam"):
        chain(v)
        runs = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            for _ in range(20):
                chain(v)
            runs.append((time.perf_counter() - t) / 20)
        cost[v] = statistics.median(runs)
    print(f"the updates alone (forward + backward, {args.n_layer} layers): " + ", ".join(
        f"{VARIANTS[v]} +{1e3 * (cost[v] - cost['smoe']):.2f} ms = {100 * (cost[v] - cost['smoe']) / smoe_step:.1f} % "
        f"of SMoE's training step ({1e3 * smoe_step:.1f} ms)" for v in ("momentum", "adam")))

if __name__ == "__main__":
    main()
