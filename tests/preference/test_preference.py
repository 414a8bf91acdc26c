"""The preference and reward models: symmetry by construction, learning, releases, bad input."""
import json

import pytest
import torch

from zoo.errors import UserError
from zoo.preference import PreferenceModel
from zoo.preference.data import PreferenceData, family_counts, keyword_judge, read_pairs


@pytest.mark.parametrize("kind", ["pairwise", "bradley_terry"])
def test_preferences_are_antisymmetric_and_half_on_ties(kind):
    torch.manual_seed(0)
    model = PreferenceModel(kind=kind).eval()
    x, y, y2 = ["The list type", "A function"], [" holds values", " is called"], [" of objects", " returns code"]
    with torch.no_grad():
        p, q, same = model.preference(x, y, y2), model.preference(x, y2, y), model.preference(x, y, y)
    torch.testing.assert_close(p + q, torch.ones(2))
    torch.testing.assert_close(same, torch.full((2,), 0.5))


def test_the_keyword_judge_is_a_cycle_with_a_transitive_part():
    objects, values, code = " the class object", " a list of values", " a function call"
    assert family_counts(objects).tolist() == [2.0, 0.0, 0.0]
    p = keyword_judge([objects, values, code], [values, code, objects])
    assert (p > 0.5).all()  # objects ≻ values ≻ code ≻ objects
    torch.testing.assert_close(keyword_judge([values], [objects]), 1 - p[:1])
    assert keyword_judge([" a class object and a method"], [" and so on"]).item() > 0.8  # more on-topic words win


def write(tmp_path, rows):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"prompt": "Q", "chosen": "a", "rejected": "b"}


@pytest.mark.parametrize("bad, message", [
    ({"prompt": "Q", "chosen": "same", "rejected": "same"}, r"pairs.jsonl:2: chosen is identical to rejected"),
    ({"prompt": "Q", "chosen": "a"}, r"pairs.jsonl:2: missing field 'rejected'"),
    ({"prompt": "Q", "chosen": "a", "rejected": ["b"]}, r"pairs.jsonl:2: field 'rejected' must be a string"),
    ("{not json", r"pairs.jsonl:2: not valid JSON"),
])
def test_bad_preference_lines_name_the_file_and_line(tmp_path, bad, message):
    with pytest.raises(UserError, match=message):
        read_pairs(write(tmp_path, [GOOD, bad]))


def test_the_recipe_reports_a_bad_file_in_one_line(tmp_path, recipe, capsys):
    path = write(tmp_path, [GOOD, {"prompt": "Q", "chosen": "x", "rejected": "x"}])
    with pytest.raises(SystemExit) as exit_:
        recipe("preference").main(["fit", "--config", "recipes/configs/preference/tiny.yaml", "--data.path", str(path),
                                   "--trainer.default_root_dir", str(tmp_path)])
    assert exit_.value.code == 2
    assert f"{path}:2: chosen is identical to rejected" in capsys.readouterr().err


def test_the_shipped_pairs_hold_out_their_prompts():
    data = PreferenceData()
    data.setup("fit")
    assert len(data.train_rows) == 3672 and len(data.val_rows) == 408
    assert not {r["prompt"] for r in data.train_rows} & {r["prompt"] for r in data.val_rows}


@pytest.mark.parametrize("kind", ["pairwise", "bradley_terry"])
def test_a_preference_model_learns_a_preference_from_a_jsonl_file(kind, tmp_path, recipe):
    """People who prefer the response that speaks of objects: after 40 steps, held-out accuracy is high."""
    data = PreferenceData()
    data.setup("fit")
    texts = [r["chosen"] for r in data.train_rows[:400]]
    rows = [{"prompt": f"Question {i}", "chosen": texts[2 * i] + " the object", "rejected": texts[2 * i + 1]}
            for i in range(200)]
    path = write(tmp_path, rows)
    args = ["fit", "--config", "recipes/configs/preference/tiny.yaml", "--trainer.default_root_dir", str(tmp_path),
            "--data.path", str(path), "--data.limit_train_pairs", "null", "--data.batch_size", "16",
            "--trainer.max_steps", "40", "--trainer.val_check_interval", "40", "--trainer.limit_val_batches", "4",
            "--model.lr", "0.001", "--model.max_response_tokens", "32", "--model.kind", kind]
    cli = recipe("preference").main(args)
    assert cli.trainer.callback_metrics["val/accuracy"] > 0.9


def test_minilm_backbone_loads_offline():
    model = PreferenceModel(backbone="all-minilm-l6-v2", max_response_tokens=8).eval()
    with torch.no_grad():
        p = model.preference(["The list type"], [" holds values"], [" is code"])
    assert 0 < float(p) < 1 and model.tokenizer.cls_token_id is not None


def test_the_objective_by_hand():
    """Hand values: a logit of 1.5 is P = 1/(1 + e^−1.5) = 0.817574 and a loss −log P = log(1 + e^−1.5) =
    0.201413; a logit of −2 is P = 0.119203 and a loss 2.126928; far in the tail the loss stays finite."""
    from zoo.preference.objective import bradley_terry_logit, pairwise_logit, preference_nll

    logit = pairwise_logit(torch.tensor([2.0, 1.0]), torch.tensor([0.5, 3.0]))  # s(x, y, y') − s(x, y', y)
    torch.testing.assert_close(torch.sigmoid(logit), torch.tensor([0.817574, 0.119203]), rtol=0, atol=1e-6)
    torch.testing.assert_close(bradley_terry_logit(torch.tensor([0.25]), torch.tensor([1.0])), torch.tensor([-0.75]))
    assert float(preference_nll(logit)) == pytest.approx((0.201413 + 2.126928) / 2, abs=1e-6)
    assert float(preference_nll(torch.tensor([-200.0]))) == pytest.approx(200.0)


@pytest.mark.parametrize("kind", ["pairwise", "bradley_terry"])
def test_one_training_step_by_hand(kind):
    """The loss of a (prompt, chosen, rejected) batch, computed here from the backbone's hidden states and the
    head's weights: pairwise, s(x, a, b) = W₂ GELU(W₁ [h(a); h(b)] + b₁) + b₂ with h read at the separators
    closing a and b in x sep a sep b sep, logit = s(x, chosen, rejected) − s(x, rejected, chosen);
    Bradley–Terry, r(x, y) = wᵀ h + c at the separator closing y in x sep y sep, logit = r(chosen) − r(rejected);
    loss = mean log(1 + e^−logit), accuracy = the share of positive logits."""
    import math

    from zoo.preference.nets import separator_ids

    torch.manual_seed(0)
    model = PreferenceModel(kind=kind).eval()
    with torch.no_grad():  # a head away from its initialisation, so the two orders differ clearly
        for p in model.net.head.parameters():
            p.add_(0.5 * torch.randn(p.shape))
    tok, (cls, sep) = model.tokenizer, separator_ids(model.tokenizer)
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    rows = [("The list type", " holds values", " is code"), ("A function", " returns a value", " of objects and more")]

    def hidden(seq):
        with torch.no_grad():
            return model.net.backbone(input_ids=torch.tensor([seq])).last_hidden_state[0]

    def s(x, a, b):
        seq = cls + ids(x) + [sep] + ids(a) + [sep] + ids(b) + [sep]
        h = hidden(seq)
        z = torch.cat([h[len(cls) + len(ids(x)) + len(ids(a)) + 1], h[-1]])
        first, _, last = model.net.head
        with torch.no_grad():
            return float(last.weight[0] @ torch.nn.functional.gelu(first.weight @ z + first.bias) + last.bias[0])

    def r(x, y):
        h = hidden(cls + ids(x) + [sep] + ids(y) + [sep])[-1]
        with torch.no_grad():
            return float(model.net.head.weight[0] @ h + model.net.head.bias[0])

    logits = [s(x, c, j) - s(x, j, c) if kind == "pairwise" else r(x, c) - r(x, j) for x, c, j in rows]
    assert min(abs(v) for v in logits) > 1e-3
    logged = {}
    model.logging_step = lambda: True
    model.log = lambda name, value, **kwargs: logged.__setitem__(name, float(torch.as_tensor(value).detach()))
    loss = model.training_step([{"prompt": x, "chosen": c, "rejected": j} for x, c, j in rows], 0)
    expected = sum(math.log1p(math.exp(-v)) for v in logits) / len(logits)
    assert float(loss) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert logged["train/loss"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert logged["train/accuracy"] == sum(v > 0 for v in logits) / len(logits)
