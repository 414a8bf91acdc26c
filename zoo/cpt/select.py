"""Choosing CPT's learning rate, ε and steps from the k examples alone (no test set, no validation set).

The few-shot protocol gives k labelled examples and nothing else, so the settings are chosen by
cross-validation on them: the k examples are split into ``folds`` parts, stratified by label; for each
part, CPT is trained on a context of the other examples and scores the part's examples as queries
(accuracy, and the mean negative log-likelihood of the true label word among the label words, both
averaged per class first: the test sets of the protocol are near balanced, an uneven draw is not). Each
candidate (lr, ε) trains once per fold and is scored at each of the ``steps`` along its schedule; step 0
is the untrained context, in-context learning. The chosen setting has the best mean held-out accuracy,
ties going to the lower NLL and then to fewer steps: where training does not help on held-out examples
the rule chooses no training, so CPT does not fall below its own start by the rule's measure.
"""
from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch

Example = Sequence[str]  # (text, label word)


@dataclass(frozen=True)
class Choice:
    lr: float
    epsilon: float
    format_epsilon: float
    steps: int
    acc: float
    nll: float


def stratified_folds(examples: Sequence[Example], folds: int, seed: int = 0) -> list[list[int]]:
    """Indices of the examples in ``folds`` parts, each label dealt round-robin after a seeded shuffle, so every
    part holds each label in about its share."""
    rng = random.Random(seed)
    parts: list[list[int]] = [[] for _ in range(folds)]
    at = 0
    for word in dict.fromkeys(y for _, y in examples):
        rows = [i for i, (_, y) in enumerate(examples) if y == word]
        rng.shuffle(rows)
        for i in rows:
            parts[at % folds].append(i)
            at += 1
    return [sorted(p) for p in parts]


@torch.no_grad()
def held_out_score(model, examples: Sequence[Example]) -> tuple[float, float]:
    """(accuracy, mean NLL of the true label word among the label words) of ``examples`` as queries, both
    balanced: the mean over the classes present of each class's own (so a model that answers an uneven
    draw's majority label everywhere does not score its share)."""
    from zoo.cpt.data import collate_queries

    words = list(model.hparams.label_words)
    items = [{"label": words.index(y), **model.encode_query(x)} for x, y in examples]
    batch = {k: v.to(model.device) for k, v in collate_queries(items, model.pad_id).items()}
    was_training = model.training
    model.eval()
    scores = torch.log_softmax(model.scores(batch).float(), -1)
    model.train(was_training)
    label = batch["label"]
    right = (scores.argmax(-1) == label).float()
    nll = -scores.gather(1, label[:, None]).squeeze(1)
    classes = label.unique()  # each class present weighs the same, however unevenly the k were drawn
    return (float(torch.stack([right[label == c].mean() for c in classes]).mean()),
            float(torch.stack([nll[label == c].mean() for c in classes]).mean()))


def fold_curve(model_args: dict[str, Any], context: Sequence[Example], held: Sequence[Example], label_words: list[str],
               steps: Sequence[int], batch_size: int, seed: int) -> dict[int, tuple[float, float]]:
    """CPT trained on ``context`` for max(steps) steps; the held-out score at each of ``steps`` (0: before any)."""
    import lightning as L

    from zoo.cpt import CPT
    from zoo.cpt.data import QueryBatches

    L.seed_everything(seed, verbose=False)
    model = CPT(**{**model_args, "method": "cpt", "examples": [list(e) for e in context], "label_words": label_words})
    curve = {0: held_out_score(model, held)} if 0 in steps else {}
    last = max(steps)
    if last == 0:
        return curve

    class Score(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step in steps:
                curve[trainer.global_step] = held_out_score(pl_module, held)

    batches = QueryBatches(model.encode_examples(), min(batch_size, len(context)), model.pad_id, seed)
    L.Trainer(max_steps=last, callbacks=[Score()], accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
              limit_val_batches=0).fit(model, train_dataloaders=batches)
    return curve


def select(model_args: dict[str, Any], examples: Sequence[Example], label_words: list[str], lrs: Sequence[float],
           epsilons: Sequence[tuple[float, float]], steps: Sequence[int], folds: int = 2, batch_size: int = 4,
           seed: int = 0, log=print) -> tuple[Choice, list[Choice]]:
    """The chosen setting and every candidate's cross-validated score (module docstring)."""
    parts = stratified_folds(examples, folds, seed)
    table: dict[tuple[float, float, float, int], list[tuple[float, float]]] = {}
    for lr, (eps, feps) in itertools.product(lrs, epsilons):
        for f, part in enumerate(parts):
            held = [examples[i] for i in part]
            context = [e for i, e in enumerate(examples) if i not in part]
            curve = fold_curve({**model_args, "lr": lr, "epsilon": eps, "format_epsilon": feps}, context, held,
                               label_words, sorted(set(steps)), batch_size, seed + f)
            for s, score in curve.items():
                table.setdefault((lr, eps, feps, s), []).append(score)
            log(f"lr {lr:g} ε {eps:g}/{feps:g} fold {f + 1}/{folds}: " +
                ", ".join(f"step {s} acc {a:.3f} nll {n:.3f}" for s, (a, n) in sorted(curve.items())))
    scored = [Choice(lr, eps, feps, s, sum(a for a, _ in v) / len(v), sum(n for _, n in v) / len(v))
              for (lr, eps, feps, s), v in table.items() if len(v) == folds]
    best = min(scored, key=lambda c: (-round(c.acc, 9), c.nll if math.isfinite(c.nll) else math.inf, c.steps))
    return best, scored
