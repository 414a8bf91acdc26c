"""The Nash-MD recipe: tabular games, bad flags, the language-model step, and learning."""
import pytest
import torch

from zoo.errors import UserError
from zoo.nash_md import NashMD
from zoo.nash_md.data import preference_game

TABULAR = "recipes/configs/nash_md/tabular.yaml"


@pytest.mark.parametrize("game", ["rps_like", "random"])
def test_tabular_nash_md_reaches_the_regularised_equilibrium_and_the_baselines_do_not(game, tmp_path, recipe):
    cli = recipe("nash_md").main(["fit", "--config", TABULAR, "--model.game", game, "--trainer.max_steps", "300",
                                  "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
                                  "--model.eta_schedule", "decreasing"])
    m = cli.trainer.callback_metrics
    assert m["tabular/exploitability/nash_md"] < 1e-4
    assert m["tabular/exploitability/nash_md_vs_current"] < 1e-4
    assert m["tabular/exploitability/self_play"] > 0.02 and m["tabular/exploitability/rlhf"] > 0.02


@pytest.mark.parametrize("flag, value, message", [
    ("--model.beta", "1.5", "--model.beta must lie in \\[0, 1\\]"),
    ("--model.beta", "-0.1", "--model.beta must lie in \\[0, 1\\]"),
    ("--model.tau", "0", "--model.tau must be > 0"),
    ("--model.tau", "-1", "--model.tau must be > 0"),
    ("--model.game", "nope", "--model.game 'nope'"),
])
def test_bad_flags_fail_with_one_line_naming_them(flag, value, message, recipe, capsys):
    with pytest.raises(SystemExit) as exit_:
        recipe("nash_md").main(["fit", "--config", TABULAR, flag, value])
    assert exit_.value.code == 2
    import re

    assert re.search(message, capsys.readouterr().err)


def test_a_bad_game_file_is_refused(tmp_path):
    bad = tmp_path / "game.json"
    bad.write_text("[[0.5, 0.9], [0.3, 0.5]]")
    with pytest.raises(UserError, match="P\\[i\\]\\[j\\] \\+ P\\[j\\]\\[i\\] = 1"):
        preference_game(str(bad))


def test_rlhf_needs_a_reward_model(tmp_path):
    from types import SimpleNamespace

    model = NashMD(loss="rlhf", preference_model="keyword-judge")
    model._trainer = SimpleNamespace(precision="32-true")
    with pytest.raises(UserError, match="rlhf needs a reward model"):
        model.setup("fit")


def test_one_language_model_step_moves_the_policy_and_not_the_reference():
    torch.manual_seed(0)
    model = NashMD(max_new_tokens=24, lr=1e-3, preference_model="keyword-judge")
    model._trainer = None
    model.setup("fit")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref_before = {k: v.clone() for k, v in model.reference_model().state_dict().items()}
    opt = torch.optim.SGD(model.policy.parameters(), lr=1.0)
    loss = model.training_step(["The list type", "A function definition", "Exceptions are", "The import"], 0)
    loss.backward()
    opt.step()
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(v, ref_before[k]) for k, v in model.reference_model().state_dict().items())
    assert list(model.state_dict()) == [k for k in before]  # μ and the judge stay out of the state dict
    assert all(k.startswith("policy.") for k in before)


@pytest.mark.slow
def test_nash_md_on_the_tiny_lm_raises_the_win_rate_over_the_reference(tmp_path, recipe):
    cli = recipe("nash_md").main(["fit", "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "100",
                                  "--trainer.val_check_interval", "100", "--trainer.enable_progress_bar", "false"])
    assert cli.trainer.callback_metrics["val/win_rate"] > 0.55


def test_a_sequence_classification_reward_model_serves_as_a_bradley_terry_judge(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from zoo.lm.helpers import resolve_base
    from zoo.nash_md.module import load_judge

    folder = resolve_base("tiny-lm")
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(folder).save_pretrained(tmp_path)
    judge = load_judge(str(tmp_path)).eval()
    assert judge.kind == "bradley_terry"
    with torch.no_grad():
        p = judge.preference(["The list type"] * 2, [" holds values", " is code"], [" is code", " holds values"])
        r = judge.reward(["The list type"] * 2, [" holds values", " is code"])
    torch.testing.assert_close(p, torch.sigmoid(torch.stack([r[0] - r[1], r[1] - r[0]])))
