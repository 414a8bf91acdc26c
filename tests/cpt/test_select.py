"""The k-only selection rule: folds stratified by label, no held-out example in its fold's context, the choice by
held-out accuracy then NLL then fewer steps, and a run end to end on tiny-lm."""
import pytest

from zoo.cpt import select as S
from zoo.cpt.data import EMBEDDED_WORDS, draw_examples, embedded_task

EXAMPLES = [("a", " x"), ("b", " x"), ("c", " y"), ("d", " x"), ("e", " y"), ("f", " x"), ("g", " y"), ("h", " x")]


def test_folds_hold_every_example_once_and_each_label_in_its_share():
    parts = S.stratified_folds(EXAMPLES, 2, seed=3)
    assert sorted(i for p in parts for i in p) == list(range(8))
    for p in parts:
        assert sum(EXAMPLES[i][1] == " x" for i in p) in (2, 3) and sum(EXAMPLES[i][1] == " y" for i in p) in (1, 2)
    assert S.stratified_folds(EXAMPLES, 2, seed=3) == parts and S.stratified_folds(EXAMPLES, 4, seed=0) != parts


def test_a_held_out_example_never_stands_in_its_folds_context(monkeypatch):
    seen = []

    def fake(model_args, context, held, label_words, steps, batch_size, seed):
        seen.append((list(context), list(held), model_args["lr"]))
        return {s: (0.5, 1.0) for s in steps}

    monkeypatch.setattr(S, "fold_curve", fake)
    S.select({}, EXAMPLES, [" x", " y"], [0.1, 0.2], [(0.2, 0.1)], [0, 5], folds=4, log=lambda *_: None)
    assert len(seen) == 8  # 2 learning rates × 4 folds
    for context, held, _ in seen:
        assert not set(context) & set(held) and sorted(context + held) == sorted(EXAMPLES)
    assert sorted(e for context, held, lr in seen if lr == 0.1 for e in held) == sorted(EXAMPLES)


def test_the_choice_is_held_out_accuracy_then_nll_then_fewer_steps(monkeypatch):
    curves = {0.1: {0: (0.5, 1.0), 5: (0.75, 2.0), 10: (0.75, 1.5)},  # lr 0.1: best accuracy, lower NLL at step 10
              0.2: {0: (0.5, 1.0), 5: (0.75, 1.5), 10: (0.5, 0.1)}}  # lr 0.2: ties with lr 0.1 step 10 at step 5

    monkeypatch.setattr(S, "fold_curve", lambda args, *rest: curves[args["lr"]])
    best, scored = S.select({}, EXAMPLES, [" x", " y"], [0.1, 0.2], [(0.2, 0.1)], [0, 5, 10], folds=2, log=lambda *_: None)
    assert (best.lr, best.steps, best.acc, best.nll) == (0.2, 5, 0.75, 1.5)  # 0.75 and NLL 1.5: fewer steps wins
    assert len(scored) == 6
    flat = {0.1: {0: (0.5, 1.0), 5: (0.5, 2.0)}, 0.2: {0: (0.5, 1.0), 5: (0.5, 1.0)}}  # training does not help
    monkeypatch.setattr(S, "fold_curve", lambda args, *rest: flat[args["lr"]])
    best, _ = S.select({}, EXAMPLES, [" x", " y"], [0.1, 0.2], [(0.2, 0.1)], [0, 5], folds=2, log=lambda *_: None)
    assert best.steps == 0  # no training: in-context learning


def test_selection_runs_on_tiny_lm():
    words = list(EMBEDDED_WORDS.values())
    examples = [(t, EMBEDDED_WORDS[y]) for t, y in draw_examples(embedded_task()["train"], 6, 0)]
    args = dict(base="tiny-lm", input_template="{}", output_template="#{}", intra_separator=" ")
    best, scored = S.select(args, examples, words, [0.05], [(4.0, 2.0)], [0, 2], folds=2, log=lambda *_: None)
    assert {c.steps for c in scored} == {0, 2} and best in scored
    assert all(0 <= c.acc <= 1 and c.nll > 0 for c in scored)
    # step 0 is the untrained context: its held-out accuracy is in-context learning's on the held-out examples
    from zoo.cpt import CPT

    parts = S.stratified_folds(examples, 2)
    accs = []
    for part in parts:
        model = CPT(**args, method="icl", examples=[list(e) for i, e in enumerate(examples) if i not in part],
                    label_words=words)
        accs.append(S.held_out_score(model, [examples[i] for i in part])[0])
    assert next(c for c in scored if c.steps == 0).acc == pytest.approx(sum(accs) / 2)


def test_held_out_scores_weigh_each_class_the_same(monkeypatch):
    """Three examples of one class and one of the other, all answered with the first: balanced accuracy 0.5
    (plain accuracy would be 0.75), and the NLL the mean of each class's mean."""
    import math

    import torch

    from zoo.cpt import CPT

    words = [" number", " string"]
    model = CPT(base="tiny-lm", method="icl", examples=[["1", " number"]], label_words=words, input_template="{}",
                output_template="#{}")
    p = torch.tensor([[0.9, 0.1]])
    monkeypatch.setattr(model, "scores", lambda batch: p.log().expand(batch["label"].shape[0], -1))
    held = [("1", " number"), ("2", " number"), ("3", " number"), ("'a'", " string")]
    acc, nll = S.held_out_score(model, held)
    assert acc == pytest.approx(0.5)
    assert nll == pytest.approx((-math.log(0.9) - math.log(0.1)) / 2)
