"""A CPT config's learning rate, ε and steps chosen by the rule of zoo/cpt/select.py from the config's own k
examples (its data.k and data.draw_seed): stratified cross-validation on those examples alone, no test or
validation example seen. What it prints is what a shipped config should carry for its own draw.

    python scripts/cpt_select.py --config recipes/configs/cpt/sst2_smollm2.yaml
    python scripts/cpt_select.py --config recipes/configs/cpt/trec_smollm2.yaml --lrs 0.003 0.03 --steps 0 25 50

Prints each candidate's cross-validated (class-balanced) accuracy and NLL, then the choice as `fit` flags.
Candidate steps of 0 are the untrained context (in-context learning): where no training helps on held-out
examples, the rule chooses none.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="a CPT recipe config")
    parser.add_argument("--lrs", nargs="+", type=float, default=[3e-3, 3e-2])
    parser.add_argument("--epsilons", nargs="+", default=["0.2/0.1"], help="ε/ε_format pairs")
    parser.add_argument("--steps", nargs="+", type=int, default=[0, 25, 50])
    parser.add_argument("--folds", type=int, default=2)
    args = parser.parse_args()

    import lightning as L

    from zoo.cpt import CPT, FewShotDataModule
    from zoo.cpt.select import select

    config = yaml.safe_load(args.config.read_text())
    torch.set_num_threads(int(config.get("torch_threads") or 1))
    model_args = {**config["model"], "method": "cpt"}
    data_args = {**config["data"]}
    seed = int(data_args.get("draw_seed", 0))
    L.seed_everything(seed, verbose=False)
    model, dm = CPT(**model_args), FewShotDataModule(**data_args)
    dm.setup("fit", model)
    examples = [tuple(e) for e in model.hparams.examples]
    words = list(model.hparams.label_words)
    print(f"{args.config.name}: k = {len(examples)} examples, draw {seed}, labels "
          + ", ".join(f"{w!r} × {sum(1 for _, y in examples if y == w)}" for w in words), flush=True)
    began = time.time()
    best, scored = select(model_args, examples, words, args.lrs,
                          [tuple(float(x) for x in e.split("/")) for e in args.epsilons], args.steps, args.folds,
                          int(data_args.get("batch_size", 4)), seed)
    print(f"\n{'lr':>8} {'ε':>5} {'ε_fmt':>5} {'steps':>5} {'cv acc':>7} {'cv nll':>7}")
    for c in sorted(scored, key=lambda c: (c.lr, c.epsilon, c.steps)):
        mark = "  ← chosen" if c == best else ""
        print(f"{c.lr:8g} {c.epsilon:5g} {c.format_epsilon:5g} {c.steps:5d} {c.acc:7.3f} {c.nll:7.3f}{mark}")
    print(f"\n({time.time() - began:.0f} s) chosen:")
    if best.steps == 0:
        print("  --model.method icl   (no training helps on held-out examples)")
    else:
        print(f"  --model.lr {best.lr:g} --model.epsilon {best.epsilon:g} --model.format_epsilon {best.format_epsilon:g} "
              f"--trainer.max_steps {best.steps} --trainer.val_check_interval {best.steps}")


if __name__ == "__main__":
    main()
