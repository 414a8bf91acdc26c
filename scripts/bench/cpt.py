"""CPT's training step in the zoo (Lightning, zoo/cpt) against a bare PEFT CPT loop, same model and batch.

    python scripts/bench/cpt.py                     # tiny-lm, k = 16 short generated examples, batch 4
    python scripts/bench/cpt.py --sst2 ../shared/data/sentence-classification/sst2 --batch_size 1 \
        --rounds 5 --json docs/cpt/bench.jsonl      # k = 16 whole SST-2 sentences, one query a step

The bare loop is what PEFT's example does without the HF Trainer: ``model(input_ids, attention_mask,
labels, input_type_mask).loss`` (PEFT builds the context's labels and masks and computes the decayed
loss), backward, AdamW step. The zoo's step is a Lightning ``fit``: the context run once and its keys
and values shared by the batch's rows (PEFT's forward repeats it in every row), the loss of
zoo/cpt/objective.py on the whole sequence, backward, AdamW with the linear schedule, δ projected
after the step. Both start from the same context (the k examples written by zoo/cpt/context.py) and
see the same batch of queries every step. Rounds alternate the two; each round times ``--steps``
steps after a warm-up, per step (between consecutive batch starts for Lightning); each round's ratio
is of its two medians, and the bench prints every round's and their minimum, median and maximum.
One thread.

The context: without ``--sst2``, k texts of the zoo's generated task (four short expressions each,
about 10 tokens a text: shorter than an SST-2 sentence); with ``--sst2 DIR``, the first k sentences
of DIR/train.txt (``label text`` lines), whole, with the label words " negative" / " positive". The
queries are the context's own examples, as CPT trains. The zoo runs the context once per batch, so its advantage grows with
the batch; at batch 1 both run it once a step.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sst2", type=Path, help="a folder with SST-2's train.txt: whole sentences as the context")
    parser.add_argument("--json", type=Path, help="append this run's figures here, one JSON line")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import lightning as L
    from peft import CPTConfig, get_peft_model

    from zoo.cpt import CPT
    from zoo.cpt.data import QueryBatches, embedded_task
    from zoo.lm import load_causal_lm

    if args.sst2:  # whole sentences: the first k as the context
        lines = (args.sst2 / "train.txt").read_text(encoding="utf-8").splitlines()
        words = [" negative", " positive"]
        shots = [(text, words[int(label)]) for label, _, text in (line.partition(" ") for line in lines[:args.k])]
    else:  # the embedded task's expressions, four to a text
        pool = embedded_task()["train"]
        shots = [(" ; ".join(t for t, _ in pool[4 * i:4 * i + 4]), f" {pool[4 * i][1]}") for i in range(args.k)]
        words = [" number", " string", " list"]
    compact = dict(input_template="{}", output_template="#{}", intra_separator=" ")
    make = lambda: CPT(method="cpt", examples=[list(s) for s in shots], label_words=words, lr=3e-3, **compact)  # noqa: E731
    ref = make()
    encoded = ref.encode_examples()  # CPT trains on the context's own examples as queries
    batch = QueryBatches(encoded, args.batch_size, ref.pad_id, seed=0).batch(list(range(args.batch_size)))

    class Repeat:
        def __len__(self):
            return args.warmup + args.steps

        def __iter__(self):
            return iter([batch] * len(self))

    class SameBatch(L.LightningDataModule):
        def train_dataloader(self):
            return Repeat()

    class StepTimes(L.Callback):
        def __init__(self):
            self.starts = []

        def on_train_batch_start(self, *a):
            self.starts.append(time.perf_counter())

        def on_train_end(self, *a):
            self.starts.append(time.perf_counter())

    def zoo_round() -> list[float]:
        model, timer = make(), StepTimes()
        L.Trainer(max_steps=args.warmup + args.steps, accelerator="cpu", devices=1, logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                  limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer]).fit(model, SameBatch())
        s = timer.starts
        return [b - a for a, b in zip(s[args.warmup:], s[args.warmup + 1:])]

    def peft_round() -> list[float]:
        base, _ = load_causal_lm("tiny-lm")
        config = CPTConfig(task_type="CAUSAL_LM", cpt_token_ids=ref.context_ids.tolist(),
                           cpt_mask=[1] * ref.n_prefix, cpt_tokens_type_mask=ref.context_types.tolist(),
                           opt_weighted_loss_type="decay", opt_loss_decay_factor=0.95,
                           opt_projection_epsilon=0.2, opt_projection_format_epsilon=0.1)
        model = get_peft_model(base, config)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.0)
        times = []
        for step in range(args.warmup + args.steps):
            t = time.perf_counter()
            loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["input_ids"],
                         input_type_mask=batch["types"].clone()).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            if step >= args.warmup:
                times.append(time.perf_counter() - t)
        return times

    ratios, zoo_ms, peft_ms = [], [], []
    for r in range(args.rounds):
        times = {}
        for name, fn in (("peft", peft_round), ("zoo", zoo_round))[::1 if r % 2 == 0 else -1]:
            times[name] = 1000 * statistics.median(fn())
        ratios.append(times["zoo"] / times["peft"])
        zoo_ms.append(times["zoo"])
        peft_ms.append(times["peft"])
        print(f"round {r}: PEFT {times['peft']:.1f} ms/step, zoo {times['zoo']:.1f} ms/step, zoo/PEFT {ratios[-1]:.3f}",
              flush=True)
    context = "whole SST-2 sentences" if args.sst2 else "generated texts"
    per_example = (ref.n_prefix / args.k)
    print(f"\ncontext: k = {args.k} {context}, {ref.n_prefix} tokens ({per_example:.0f} an example); batch "
          f"{args.batch_size} queries; tiny-lm, one thread")
    print(f"zoo/PEFT step time over {args.rounds} paired rounds: median {statistics.median(ratios):.3f} (min "
          f"{min(ratios):.3f}, max {max(ratios):.3f}); lower is faster")
    if args.json:
        import json
        import platform

        import peft

        record = {"k": args.k, "context": context, "context_tokens": ref.n_prefix, "batch_size": args.batch_size,
                  "steps": args.steps, "rounds": args.rounds, "zoo_ms": zoo_ms, "peft_ms": peft_ms, "ratio": ratios,
                  "median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                  "versions": {"torch": torch.__version__, "lightning": L.__version__, "peft": peft.__version__,
                               "python": platform.python_version()}}
        with open(args.json, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
