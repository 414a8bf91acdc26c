"""Deep GA's bad input fails in one line naming what is wrong: an environment that returns non-finite
rewards or takes no such keyword, and a seed chain whose σ or seeds are corrupted in a release or a
checkpoint."""
import re

import pytest
import torch

import zoo
from zoo import hub
from zoo.deep_ga import DeepGA
from zoo.errors import CheckpointError

from ..conftest import ROOT, load_recipe, one_line_error
from ..core.test_hub import remanifest

TINY = str(ROOT / "recipes" / "configs" / "deep_ga" / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
MAZE = {"env": "zoo/HardMaze-v0", "env_kwargs": {"steps": 30}, "hidden_sizes": [8]}


def fit(root, *args):
    return load_recipe("deep_ga").main(["fit", "--config", TINY, *QUIET, "--trainer.default_root_dir", str(root), *args])


def test_nan_rewards_are_refused_naming_the_environment(tmp_path, capsys):
    """Ranking on NaN returns would select at random and log nan: the run stops at the first one."""
    err = one_line_error(capsys, lambda: fit(tmp_path, "--model.env", "tests.core.bad_envs:NaNReward",
                                             "--model.env_kwargs", "null"))
    assert re.search(r"env 'tests.core.bad_envs:NaNReward': reward nan \(episode seed \d+, step 3\); the "
                     "environment must return finite rewards", err), err


def test_an_unknown_environment_keyword_is_one_line(tmp_path, capsys):
    err = one_line_error(capsys, lambda: fit(tmp_path, "--model.env_kwargs", "{bogus: 1}"))
    assert "zoo/HardMaze-v0 takes no keyword 'bogus'" in err and "--model.env_kwargs" in err, err
    assert "it takes steps, render_mode" in err, err


@pytest.mark.parametrize("sigma, seeds, message", [
    (float("nan"), [0, 5, 7], "the seed chain's σ is nan"),
    (float("inf"), [0, 5], "the seed chain's σ is inf"),
    (-0.1, [0, 5], "the seed chain's σ is -0.1"),
    (0.1, [0, -3], "the seed chain holds the seed -3, outside"),
])
def test_a_release_with_a_corrupted_seed_chain_names_the_file(tmp_path, sigma, seeds, message):
    model = DeepGA(**MAZE)
    directory = tmp_path / "release"
    hub.save(model, directory)
    hub.write_safetensors({"seeds": torch.tensor(seeds, dtype=torch.int32), "sigma": torch.tensor([sigma])},
                          directory / hub.WEIGHTS)
    remanifest(directory)  # a file that verifies, whose content is wrong
    with pytest.raises(CheckpointError, match=re.escape(f"{directory / hub.WEIGHTS}: {message}")):
        zoo.load(directory)


def test_resuming_a_checkpoint_with_a_nan_sigma_names_the_file(tmp_path, capsys):
    fit(tmp_path / "run", "--trainer.max_steps", "2")
    ckpt_path = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["state_dict"]["chain_sigma"] = torch.tensor(float("nan"))
    bad = tmp_path / "nan_sigma.ckpt"
    torch.save(ckpt, bad)
    err = one_line_error(capsys, lambda: fit(tmp_path / "resume", "--ckpt_path", str(bad)))
    assert f"{bad}: the seed chain's σ is nan" in err, err
    err = one_line_error(capsys, lambda: fit(tmp_path / "tune", "--model.init_from", str(bad)))
    assert f"--model.init_from {bad}: the seed chain's σ is nan" in err, err
