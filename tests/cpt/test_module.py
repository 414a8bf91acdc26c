"""CPT's module and data: the context's masks, the projection bound, frozen labels, every method's
training, the data formats, and bad input rejected with the file and line or the flag."""
import json
import math

import lightning as L
import pytest
import torch

from tests.conftest import SHARED_DATA, load_recipe
from zoo.cpt import CPT, FewShotDataModule
from zoo.cpt.context import Templates, build_context, encode_example
from zoo.errors import UserError
from zoo.lm import load_causal_lm

QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
             enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
COMPACT = dict(input_template="{}", output_template="#{}", intra_separator=" ")


@pytest.fixture(scope="module")
def tokenizer():
    return load_causal_lm("tiny-lm")[1]


def test_context_types_by_hand(tokenizer):
    templates = Templates("in {}", "out {}", " ", "\n")
    tok = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    ids, types = build_context(tokenizer, templates, [("a", " yes"), ("b", " no")])
    one = [tok("in "), tok("a"), tok(" "), tok("out "), tok(" yes"), tok("\n")]
    two = [tok("in "), tok("b"), tok(" "), tok("out "), tok(" no"), tok("\n")]
    assert ids == [t for part in one + two for t in part]
    kinds = [1, 2, 0, 3, 4, 0]
    expected = [k for part, k in zip(one, kinds) for _ in part] + [k + 4 if k else 0 for part, k in zip(two, kinds) for _ in part]
    assert types == expected
    q_ids, q_types = encode_example(tokenizer, templates, "c", None)
    assert q_ids == tok("in ") + tok("c") + tok(" ") + tok("out ") and max(q_types) == 3


def fit(model, data, steps):
    trainer = L.Trainer(max_steps=steps, **QUIET)
    trainer.fit(model, data)
    return trainer


def test_projection_bound_and_label_tokens_never_move():
    torch.manual_seed(0)
    model = CPT(method="cpt", lr=0.05, epsilon=0.2, format_epsilon=0.1, **COMPACT)
    fit(model, FewShotDataModule(k=4, batch_size=2, val_size=0), 12)
    prompt = model.prompt()
    delta, types = prompt.delta_embedding.weight.detach(), model.context_types
    d = delta.shape[1]
    norm = delta.norm(dim=1)
    kind = types % 4
    inputs, templates, frozen = (types > 0) & (kind == 2), (types > 0) & (kind % 2 == 1), (types == 0) | (kind == 0)
    assert inputs.any() and templates.any() and frozen.any()
    assert (norm[inputs] <= 0.2 * math.sqrt(d / 2048) + 1e-7).all()
    assert (norm[templates] <= 0.1 * math.sqrt(d / 2048) + 1e-7).all()
    assert norm[inputs].max() > 0.5 * 0.2 * math.sqrt(d / 2048), "the inputs' δ did not move towards the bound"
    assert torch.equal(delta[frozen], torch.zeros_like(delta[frozen])), "a label or separator token moved"
    base, _ = load_causal_lm("tiny-lm")  # the language model itself is frozen, and so is E_C
    assert torch.equal(prompt.embedding.weight, base.transformer.wte.weight[model.context_ids])
    for (name, p), (_, q) in zip(model.model.get_base_model().named_parameters(), base.named_parameters()):
        assert torch.equal(p, q), name


class Snapshot(L.Callback):
    """Every parameter as training starts (after setup has built the method's model around the base)."""

    def on_train_start(self, trainer, pl_module):
        self.before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


@pytest.mark.parametrize("method", ["icl", "prompt_tuning", "lora", "full"])
def test_baselines_train_what_they_should(method):
    """After three steps, exactly the method's own tensors have moved: nothing for ICL (it has no optimiser),
    the soft prompt for prompt tuning, the LoRA matrices for LoRA, every weight for full fine-tuning; the
    base model's weights stay those of the base as loaded wherever they are frozen."""
    torch.manual_seed(0)
    model = CPT(method=method, lr=1e-2, num_virtual_tokens=4, **COMPACT)
    data = FewShotDataModule(k=4, batch_size=2, val_size=0)
    snapshot = Snapshot()
    trainer = L.Trainer(max_steps=3, max_epochs=2, callbacks=[snapshot], **QUIET)
    trainer.fit(model, data)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, snapshot.before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    own = {"icl": set(), "full": set(snapshot.before),
           "prompt_tuning": {n for n in snapshot.before if "prompt_encoder" in n},
           "lora": {n for n in snapshot.before if "lora_" in n}}[method]
    assert own or method == "icl"
    assert trainable == own and moved == own, (sorted(moved ^ own)[:5], sorted(trainable ^ own)[:5])
    if method == "icl":
        assert model.configure_optimizers() is None
        assert model.training_step(next(iter(data.train_dataloader())), 0) is None
    else:
        assert trainer.global_step == 3
    if method != "full":  # the frozen base is the base as loaded
        base, _ = load_causal_lm("tiny-lm")
        frozen = {n.replace(".base_layer", ""): p for n, p in model.model.get_base_model().named_parameters()
                  if "lora_" not in n}  # LoRA wraps each linear layer's base weights
        assert len(frozen) == len(list(base.parameters()))
        for name, p in base.named_parameters():
            assert torch.equal(frozen[name], p), name


def test_classify_and_release_roundtrip(tmp_path):
    import zoo
    from zoo import hub

    torch.manual_seed(0)
    model = CPT(method="cpt", lr=0.05, **COMPACT)
    fit(model, FewShotDataModule(k=4, batch_size=2, val_size=0), 2)
    hub.save(model, tmp_path)
    assert (tmp_path / "model.safetensors").stat().st_size < 200_000, "the release should hold the context, not the LM"
    loaded = zoo.load(tmp_path)
    texts = ["3 + 4", "'a' * 3", "[1] * 2"]
    assert loaded.classify(texts) == model.eval().classify(texts)
    assert set(loaded.classify(texts)) <= {" number", " string", " list"}


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")


def test_label_text_and_jsonl_folders(tmp_path):
    (tmp_path / "a").mkdir()
    write(tmp_path / "a" / "train.txt", ["0 a dull film", "1 a fine film", "1 lovely"])
    write(tmp_path / "a" / "test.txt", ["0 boring", "1 great fun"])
    data = FewShotDataModule(str(tmp_path / "a"), label_map={"0": " bad", "1": " good"}, k=2, val_size=0)
    data.read()
    assert data.splits["test"] == [("boring", "0"), ("great fun", "1")]
    (tmp_path / "b").mkdir()
    write(tmp_path / "b" / "train.jsonl", [json.dumps({"text": "x", "label": "pos"}), json.dumps({"text": "y", "label": "neg"})])
    write(tmp_path / "b" / "test.jsonl", [json.dumps({"text": "z", "label": "pos"})])
    data = FewShotDataModule(str(tmp_path / "b"), label_map={"pos": " good", "neg": " bad"}, k=2, val_size=1)
    data.read()
    assert len(data.splits["train"]) == 1 and len(data.splits["val"]) == 1


def test_bad_input_names_the_file_and_line_or_the_flag(tmp_path):
    write(tmp_path / "train.txt", ["0 fine", "7 what is this label"])
    write(tmp_path / "test.txt", ["0 ok"])
    with pytest.raises(UserError, match=r"train.txt:2: the label '7' is not in --data.label_map"):
        FewShotDataModule(str(tmp_path), label_map={"0": " no", "1": " yes"}).read()
    write(tmp_path / "train.txt", ["0 fine", "1 "])
    with pytest.raises(UserError, match=r"train.txt:2: the text is empty"):
        FewShotDataModule(str(tmp_path), label_map={"0": " no", "1": " yes"}).read()
    write(tmp_path / "train.txt", [json.dumps({"text": "a", "label": 0})])
    (tmp_path / "train.txt").rename(tmp_path / "train.jsonl")
    write(tmp_path / "test.jsonl", ["{not json"])
    (tmp_path / "test.txt").unlink()
    with pytest.raises(UserError, match=r"test.jsonl:1: not valid JSON"):
        FewShotDataModule(str(tmp_path), label_map={"0": " no"}).read()
    with pytest.raises(UserError, match=r"--data.k 5000 is larger than the training set"):
        FewShotDataModule(k=5000, val_size=0).setup("fit", model=CPT(**COMPACT))
    with pytest.raises(UserError, match=r"--model.input_template 'input:' must hold the slot"):
        CPT(input_template="input:")
    with pytest.raises(UserError, match=r"--model.method 'adapter'"):
        CPT(method="adapter")
    with pytest.raises(UserError, match=r"cannot fit the model's 256 positions"):
        CPT(examples=[["x", " a"]] * 40, label_words=[" a"])


def test_a_bad_flag_value_is_one_line_from_the_recipe(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        load_recipe("cpt").main(["fit", "--data.k", "100000", "--trainer.default_root_dir", str(tmp_path),
                                 "--trainer.enable_progress_bar", "false"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --data.k 100000 is larger than the training set")


@pytest.mark.skipif(not (SHARED_DATA / "sentence-classification" / "trec").is_dir(), reason="needs the shared TREC copy")
def test_shared_trec_loads_with_its_config():
    import yaml

    from tests.conftest import ROOT

    config = yaml.safe_load((ROOT / "recipes" / "configs" / "cpt" / "trec.yaml").read_text())["data"]
    data = FewShotDataModule(str(SHARED_DATA / "sentence-classification" / "trec"), label_map=config["label_map"],
                             encoding=config["encoding"], val_size=0)
    data.read()
    assert len(data.splits["test"]) == 500 and len(data.splits["train"]) == 5452
    assert {label for _, label in data.splits["test"]} == set(config["label_map"])


@pytest.mark.slow
def test_default_config_learns(tmp_path):
    """The default run (CPT, k = 8 on the embedded task) ends with a validation accuracy above the
    untrained context's (ICL) by a margin."""
    cli = load_recipe("cpt").main(["fit", "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"])
    rows = [r.split(",") for r in (tmp_path / "version_0" / "metrics.csv").read_text().splitlines()]
    col = rows[0].index("val/acc")
    accs = [float(r[col]) for r in rows[1:] if r[col]]
    assert cli.trainer.global_step == cli.trainer.max_steps
    assert accs[-1] >= accs[0] + 0.05, accs


@pytest.mark.parametrize("words", [None, [" number", " a string", " list of"]], ids=["one-token", "multi-token"])
@pytest.mark.parametrize("method", ["cpt", "prompt_tuning", "lora"])
def test_scores_with_the_shared_context_cache_equal_peft_forward(method, words):
    """Evaluation runs the context once per batch and shares its keys and values (and, where every label
    word is one token, scores them all from one row per query); the label words' scores equal those of
    PEFT's full forward pass on every row."""
    from zoo.cpt.data import collate_queries
    from zoo.cpt.objective import label_scores

    torch.manual_seed(0)
    model = CPT(method=method, lr=0.05, num_virtual_tokens=4, **COMPACT)
    fit(model, FewShotDataModule(k=4, batch_size=2, val_size=0), 2)
    model.eval()
    if words is not None:  # words of several tokens: every row scored on its own
        model.hparams.label_words = words
    lengths = [len(model.tokenizer(w, add_special_tokens=False)["input_ids"]) for w in model.hparams.label_words]
    assert (max(lengths) == 1) == (words is None)
    items = [{"label": 0, **model.encode_query(t)} for t in ["3 + 4", "sorted([3, 1])", "'x'.upper() + 'yz'"]]
    batch = collate_queries(items, model.pad_id)
    with torch.no_grad():
        full = model(batch["input_ids"], batch["attention_mask"])  # PEFT's forward, past the context
        expected = label_scores(full, batch["input_ids"], batch["target"]).view(3, -1)
        torch.testing.assert_close(model.scores(batch), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["cpt", "icl"])
def test_an_evaluation_epoch_runs_the_context_once(method):
    """Within a test epoch the context runs at the first batch and its keys and values serve every batch
    (batches of different sizes); the scores equal those of a context run per batch, and each epoch runs
    it afresh (δ may have moved since the last)."""
    from zoo.cpt.data import collate_queries

    torch.manual_seed(0)
    model = CPT(method=method, lr=0.05, **COMPACT)
    data = FewShotDataModule(k=4, batch_size=2, val_size=0, test_size=7, eval_batch_size=3)
    fit(model, data, 2)
    model.eval()
    texts = ["3 + 4", "sorted([3, 1])", "'x'.upper() + 'yz'", "[1] * 2", "7 // 2", "None", "1.5 * 2"]
    batches = [collate_queries([{"label": 0, **model.encode_query(t)} for t in chunk], model.pad_id)
               for chunk in (texts[:3], texts[3:6], texts[6:])]
    runs, context = [], model._context
    model._context = lambda keep=0: runs.append(keep) or context(keep)
    with torch.no_grad():
        per_batch = [model.scores(b) for b in batches]
        assert len(runs) == 3
        model.on_test_epoch_start()
        shared = [model.scores(b) for b in batches]
        assert len(runs) == 4
        model.on_test_epoch_end()
    for a, b in zip(shared, per_batch):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    runs.clear()
    trainer = L.Trainer(**QUIET)
    trainer.test(model, data, verbose=False)
    trainer.test(model, data, verbose=False)
    assert runs == [1, 1]  # once per epoch, though the test split makes three batches


def test_training_with_the_shared_context_equals_peft_forward():
    """A CPT training step runs the context once for the batch: its loss and δ's gradient equal those of
    PEFT's full forward pass on every row (the context repeated in each)."""
    from zoo.cpt.objective import cpt_loss

    torch.manual_seed(0)
    model = CPT(method="cpt", lr=0.05, **COMPACT)
    data = FewShotDataModule(k=4, batch_size=3, val_size=0)
    fit(model, data, 2)  # δ away from 0
    model.train()
    batch = next(iter(data.train_dataloader()))
    delta = model.prompt().delta_embedding.weight
    loss = model.training_step(batch, 0)
    shared, = torch.autograd.grad(loss, delta)
    ids, types = batch["input_ids"], batch["types"]
    B = ids.shape[0]
    full = model.model(input_ids=ids, attention_mask=batch["attention_mask"]).logits  # PEFT's forward
    query_types = torch.where(types > 0, types + model.context_types.max(), types)
    expected = cpt_loss(full, torch.cat([model.context_ids.expand(B, -1), ids], 1),
                        torch.cat([model.context_types.expand(B, -1), query_types], 1), model.hparams.loss_decay)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shared, torch.autograd.grad(expected, delta)[0], rtol=1e-4, atol=1e-7)
    assert shared.abs().sum() > 0


def test_a_hidden_example_is_not_seen_by_its_own_query():
    """hide_own_example: a training query attends to every context example but its own; the training loss
    is CPT's loss on those logits (a change to the hidden example's δ moves the other rows, not its own)."""
    from zoo.cpt.objective import cpt_loss

    torch.manual_seed(0)
    model = CPT(method="cpt", lr=0.05, epsilon=4.0, format_epsilon=2.0, hide_own_example=True, **COMPACT)
    data = FewShotDataModule(k=4, batch_size=3, val_size=0)
    data.setup("fit", model)
    model.train()
    batch = data.train_dataloader().batch([1, 2, 0])  # queries of examples 1, 2, 0
    ids, mask, example = batch["input_ids"], batch["attention_mask"], batch["example"]
    hidden = model.own_example_mask(example)
    assert hidden.shape == (3, len(model.context_ids)) and hidden[0][(model.context_types - 1) // 4 == 1].sum() == 0
    with torch.no_grad():
        before = model._after_context(ids, mask, context_mask=hidden)[1]
        delta = model.prompt().delta_embedding.weight
        delta[model.context_types == 4 * 1 + 2] += 0.5  # example 1's text
        after = model._after_context(ids, mask, context_mask=hidden)[1]
    torch.testing.assert_close(after[0], before[0])  # example 1's own query: unmoved
    assert not torch.allclose(after[1], before[1])  # example 2's query sees example 1
    loss = model.training_step(batch, 0)
    context, rows = model._after_context(ids, mask, context_mask=hidden)
    B = ids.shape[0]
    query_types = torch.where(batch["types"] > 0, batch["types"] + model.context_types.max(), batch["types"])
    expected = cpt_loss(torch.cat([context.expand(B, -1, -1), rows], 1), torch.cat([model.context_ids.expand(B, -1), ids], 1),
                        torch.cat([model.context_types.expand(B, -1), query_types], 1), model.hparams.loss_decay)
    torch.testing.assert_close(loss, expected)
    model.hparams.hide_own_example = False
    assert not torch.allclose(model.training_step(batch, 0), expected)  # seeing itself, the query's loss differs


def test_balanced_classes_weigh_each_class_the_same():
    """balance_classes: each label token of the loss weighs n / (C · n_c) by its example's class (a draw of three
    of one class and one of the other: 2/3 and 2), in the context and in the queries alike."""
    from zoo.cpt.objective import balance_weights, cpt_loss

    torch.testing.assert_close(balance_weights(torch.tensor([0, 0, 0, 1])), torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0]))
    torch.testing.assert_close(balance_weights(torch.tensor([2, 0, 2, 0])), torch.ones(4))
    words = [" number", " string"]
    examples = [["1 + 2", " number"], ["3 * 4", " number"], ["'a' + 'b'", " string"], ["7 - 5", " number"]]
    model = CPT(method="cpt", examples=examples, label_words=words, balance_classes=True, **COMPACT)
    model.train()
    encoded = model.encode_examples()
    from zoo.cpt.data import QueryBatches

    batch = QueryBatches(encoded, 2, model.pad_id, 0).batch([2, 3])
    w = model.class_weights(batch["example"], batch["input_ids"].shape[1])
    n = len(model.context_ids)
    label = model.context_types % 4 == 0
    context_labels = w[0, :n][label & (model.context_types > 0)]
    assert context_labels.tolist() == pytest.approx([2 / 3] * 2 + [2.0] + [2 / 3])  # examples 0-3, one token each
    assert w[0, n:].unique().tolist() == pytest.approx([2.0]) and w[1, n:].unique().tolist() == pytest.approx([2 / 3])
    loss = model.training_step(batch, 0)
    context, rows = model._after_context(batch["input_ids"], batch["attention_mask"])
    ids, types = batch["input_ids"], batch["types"]
    query_types = torch.where(types > 0, types + model.context_types.max(), types)
    args = (torch.cat([context.expand(2, -1, -1), rows], 1), torch.cat([model.context_ids.expand(2, -1), ids], 1),
            torch.cat([model.context_types.expand(2, -1), query_types], 1), model.hparams.loss_decay)
    torch.testing.assert_close(loss, cpt_loss(*args, w))
    assert not torch.allclose(loss, cpt_loss(*args))
