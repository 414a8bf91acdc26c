"""OP-GFN's environment keywords: one the environment does not take is a one-line error naming both."""
import pytest

from ..conftest import ROOT, load_recipe

TINY = str(ROOT / "recipes" / "configs" / "op_gfn" / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.mark.parametrize("env, message", [
    ("hypergrid", "--model.env_kwargs: hypergrid takes no keyword 'bogus'; its settings are the flags --model.ndim"),
    ("moo_grid", "--model.env_kwargs: moo_grid takes no keyword 'bogus'; its settings are the flags --model.height"),
    ("tests.op_gfn.test_module:NaNReward",
     "--model.env_kwargs: tests.op_gfn.test_module:NaNReward takes no keyword 'bogus'; it takes value"),
])
def test_an_unknown_environment_keyword_is_one_line(tmp_path, capsys, env, message):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        load_recipe("op_gfn").main(["fit", "--config", TINY, *QUIET, "--trainer.default_root_dir", str(tmp_path),
                                    "--model.env", env, "--model.env_kwargs", "{bogus: 1}"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) <= 2, err
    assert message in err, err
