"""MDPO's environment keywords: one the environment does not take is a one-line error naming both."""
import pytest

from ..conftest import ROOT, load_recipe

TINY = str(ROOT / "recipes" / "configs" / "mdpo" / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def test_an_unknown_environment_keyword_is_one_line(tmp_path, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        load_recipe("mdpo").main(["fit", "--config", TINY, *QUIET, "--trainer.default_root_dir", str(tmp_path),
                                  "--model.env_kwargs", "{bogus: 1}"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) <= 2, err
    assert "--model.env_kwargs: CartPole-v1 takes no keyword 'bogus'; it takes" in err, err
