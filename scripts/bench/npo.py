"""NPO's training step against the raw passes it needs, side by side in one run.

    python scripts/bench/npo.py [--objective npo_rt] [--data PATH] [--steps 30] [--rounds 3]

A step of the recipe (Lightning's loop, the module's training_step, AdamW) is timed against the
bare minimum a hand-written loop would do for the same objective: the policy's forward on the forget
batch (and the retain batch), the reference's forward on the forget batch, the backward pass and the
AdamW step, on the same batches. The rounds alternate which runs first; each round's ratio is of its
two medians, and the bench prints every round's and their minimum, median and maximum.
Goal: a step costs at most 1.15× the raw passes.

open-unlearning (locuslab/open-unlearning) is not on PyPI: with ``--open-unlearning PATH`` (a local
checkout of it) the script makes a virtual environment under .bench-venv/ with its pinned
requirements (torch 2.4.1, transformers 4.45.1, deepspeed, bitsandbytes) and says whether they
install; the project never imports it.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from zoo.lm.objective import sequence_log_probs  # noqa: E402
from zoo.npo import NPO, TOFUDataModule  # noqa: E402
from zoo.npo.objective import nll, npo_loss  # noqa: E402


def batches(data: str | None, objective: str, n: int, batch_size: int, tokenizer) -> list[dict]:
    dm = TOFUDataModule(path=data, forget_split="forget10", train_split="forget", batch_size=batch_size)
    dm.tokenizer = tokenizer
    from zoo.npo.data import load_splits

    dm.splits = load_splits(data, "forget10")
    loader = dm.train_dataloader()
    out = []
    while len(out) < n:
        out.extend(iter(loader))
    return out[:n]


def lightning_steps(objective: str, base: str, data: list[dict], lr: float) -> list[float]:
    """Seconds per training step of the recipe's module under a Lightning Trainer."""
    import lightning as L

    class Timer(L.Callback):
        def __init__(self):
            self.times, self.t0 = [], 0.0

        def on_train_batch_start(self, *args):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, *args):
            self.times.append(time.perf_counter() - self.t0)

    model = NPO(base=base, objective=objective, lr=lr, warmup_steps=1)
    timer = Timer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=len(data), logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer])

    class Batches:  # a plain iterable: Lightning reads a bare list as several loaders
        def __iter__(self):
            return iter(data)

        def __len__(self):
            return len(data)

    class Data(L.LightningDataModule):
        def train_dataloader(self):
            return Batches()

    trainer.fit(model, datamodule=Data())
    return timer.times[2:]  # the first steps warm up allocators and caches


def raw_steps(objective: str, base: str, data: list[dict], lr: float) -> list[float]:
    """Seconds per step of the bare passes: policy forwards, reference forward, backward, AdamW."""
    from zoo.lm.helpers import load_causal_lm

    policy, _ = load_causal_lm(base)
    reference, _ = load_causal_lm(base)
    policy.train()
    reference.eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr)
    times = []
    for batch in data:
        t0 = time.perf_counter()
        f, r = batch["train"], batch["retain"]
        logits = policy(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits
        logp = sequence_log_probs(logits, f["input_ids"], f["target_mask"])
        with torch.no_grad():
            ref = reference(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits
            ref_logp = sequence_log_probs(ref, f["input_ids"], f["target_mask"])
        loss = npo_loss(logp, ref_logp, 0.1)
        if objective == "npo_rt":
            rl = policy(input_ids=r["input_ids"], attention_mask=r["attention_mask"]).logits
            loss = loss + nll(sequence_log_probs(rl, r["input_ids"], r["target_mask"]), r["target_mask"][:, 1:].sum(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times[2:]


def open_unlearning(path: str) -> str:
    """Try to install open-unlearning's pinned requirements into its own venv; say what happened."""
    venv = ROOT / ".bench-venv" / "open-unlearning"
    req = Path(path) / "requirements.txt"
    if not req.is_file():
        return f"{req}: missing; --open-unlearning takes a local checkout of locuslab/open-unlearning"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    out = subprocess.run([str(venv / "bin" / "pip"), "install", "-r", str(req), "-e", str(path)],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return "open-unlearning did not install: " + out.stderr.strip().splitlines()[-1][:300]
    return f"open-unlearning installed in {venv}; run its NPO trainer there on the same model and batch"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objective", default="npo_rt", choices=["npo", "npo_rt"])
    p.add_argument("--base", default="tiny-lm")
    p.add_argument("--data", default=None, help="a TOFU folder (default: the embedded fictitious authors)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--open-unlearning", default=None, help="a local checkout of locuslab/open-unlearning")
    args = p.parse_args()
    torch.set_num_threads(1)
    from zoo.lm.helpers import load_causal_lm

    _, tok = load_causal_lm(args.base)
    data = batches(args.data, args.objective, args.steps, args.batch_size, tok)
    ratios, step_ms, raw_ms = [], [], []
    for k in range(args.rounds):
        order = [("step", lightning_steps), ("raw", raw_steps)]
        got = {name: statistics.median(fn(args.objective, args.base, data, 1e-4))
               for name, fn in (order if k % 2 == 0 else order[::-1])}
        ratios.append(got["step"] / got["raw"])
        step_ms.append(1000 * got["step"])
        raw_ms.append(1000 * got["raw"])
        print(f"round {k}: recipe step {step_ms[-1]:.1f} ms, raw passes {raw_ms[-1]:.1f} ms, step / raw {ratios[-1]:.3f}",
              flush=True)
    print(f"objective {args.objective}, base {args.base}, batch {args.batch_size} forget"
          f"{' + ' + str(args.batch_size) + ' retain' if args.objective == 'npo_rt' else ''} pairs, data "
          f"{args.data or 'embedded'}: {args.steps} steps a side and round")
    print(f"  step / raw over {args.rounds} paired rounds: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
          f"max {max(ratios):.3f}; goal ≤ 1.15)")
    if args.open_unlearning:
        print(open_unlearning(args.open_unlearning))
    else:
        print("open-unlearning: not on PyPI; pass --open-unlearning <checkout> to try its pinned requirements "
              "(torch 2.4.1, transformers 4.45.1, deepspeed) in .bench-venv/")


if __name__ == "__main__":
    main()
