"""Learning on the embedded fictitious authors: tiny-lm fine-tuned on them, then forget10 unlearned with
NPO and with GA on the same budget (30 epochs at lr 3e-5). NPO more than halves the forget-set
probability while the retain-set probability keeps at least a fifth of its value; GA, which does not
slow down as the answers become unlikely, lowers the retain-set probability further.

The margin is wide because the embedded authors share their question templates: for a 1.35 M-parameter
model, unlearning "X was born in Lisbon." also unlearns "Y was born in Oslo." (measured with these
settings: forget 0.79 → NPO 0.195, GA 0.142; retain 0.78 → NPO 0.195, GA 0.134)."""
import pytest

from ..conftest import load_recipe

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
CONFIGS = "recipes/configs/npo"


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    cli = load_recipe("npo").main(["fit", "--config", f"{CONFIGS}/default.yaml", *QUIET, "--trainer.default_root_dir",
                                   str(root), "--trainer.max_steps", "120", "--trainer.val_check_interval", "120",
                                   "--model.eval_size", "40", "--model.max_new_tokens", "16"])
    return root / "version_0" / "checkpoints" / "last.ckpt", cli.model.last_eval["metrics"]


def unlearn(ckpt, root, objective):
    cli = load_recipe("npo").main(["fit", "--config", f"{CONFIGS}/unlearn.yaml", *QUIET, "--trainer.default_root_dir",
                                   str(root), "--model.init_from", str(ckpt), "--model.objective", objective,
                                   "--model.lr", "3e-5", "--trainer.max_steps", "60",
                                   "--trainer.val_check_interval", "60", "--model.eval_size", "40",
                                   "--model.max_new_tokens", "16"])
    return cli.model.last_eval["metrics"]


@pytest.mark.slow
def test_npo_forgets_and_keeps_the_retain_set_better_than_ga(finetuned, tmp_path):
    ckpt, before = finetuned
    assert before["forget_prob"] > 0.2, "fine-tuning did not learn the facts"
    npo, ga = unlearn(ckpt, tmp_path / "npo", "npo"), unlearn(ckpt, tmp_path / "ga", "ga")
    assert npo["forget_prob"] < 0.5 * before["forget_prob"]
    assert npo["retain_prob"] > 0.2 * before["retain_prob"]  # the stated margin: keeps a fifth
    assert ga["retain_prob"] < 0.8 * npo["retain_prob"]
