"""Go-Explore's bad input fails in one line naming the file or the flag: an environment keyword the
game does not take, a release trajectory without actions or with action ids the game does not have, and
a checkpoint whose archive does not hold together."""

import pytest
import torch

import zoo
from zoo import hub
from zoo.errors import CheckpointError
from zoo.go_explore import GoExplore
from zoo.go_explore.module import TRAJECTORY

from ..conftest import ROOT, load_recipe, one_line_error
from ..core.test_hub import remanifest

pytest.importorskip("minigrid")
TINY = str(ROOT / "recipes" / "configs" / "go_explore" / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
ENV = "MiniGrid-MultiRoom-N2-S4-v0"


def fit(root, *args):
    return load_recipe("go_explore").main(["fit", "--config", TINY, "--trainer.default_root_dir", str(root), *QUIET, *args])


def test_an_unknown_environment_keyword_is_one_line(tmp_path, capsys):
    err = one_line_error(capsys, lambda: fit(tmp_path, "--model.env_kwargs", "{bogus: 1}"))
    assert f"--model.env_kwargs: {ENV} takes no keyword 'bogus'" in err, err


@pytest.mark.parametrize("tensors, message", [
    ({"moves": torch.zeros(3, dtype=torch.uint8)}, "no 'actions' tensor"),
    ({"actions": torch.tensor([0, 2, 200], dtype=torch.uint8)}, "the trajectory holds the action id 200, but "
                                                                 f"--model.env {ENV} has 7 actions"),
    ({"actions": torch.zeros(2, 3, dtype=torch.uint8)}, "a trajectory is a 1-D tensor of integer action ids"),
], ids=["no-actions", "out-of-range", "not-1-d"])
def test_a_release_trajectory_the_game_cannot_play_names_the_file(tmp_path, tensors, message):
    model = GoExplore(env=ENV, hidden_sizes=[16], write_media=False)
    directory = tmp_path / "release"
    hub.save(model, directory)
    hub.write_safetensors({**tensors, "score": torch.zeros(1, dtype=torch.float64)}, directory / TRAJECTORY)
    remanifest(directory)  # a file that verifies, whose content is wrong
    with pytest.raises(CheckpointError, match=f"^{directory / TRAJECTORY}: .*{message}"):
        zoo.load(directory)


def test_resuming_an_inconsistent_archive_names_the_file(tmp_path, capsys):
    fit(tmp_path / "run", "--trainer.max_steps", "2")
    ckpt = torch.load(tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    archive = ckpt["go_explore"]["archive"]
    n = len(archive["score"])
    cases = {
        "extra_score": ({"score": torch.cat([archive["score"], torch.zeros(1, dtype=torch.float64)])},
                        f"{n + 1} scores but {n} keys"),
        "short_offsets": ({"action_offsets": archive["action_offsets"][:-1]},
                          f"action_offsets do not cut the {len(archive['actions'])} bytes of actions into {n} pieces"),
        "bad_action": ({"actions": torch.full_like(archive["actions"], 250)}, "actions hold the action 250"),
    }
    assert len(archive["actions"]) > 0
    for name, (patch, message) in cases.items():
        bad = tmp_path / f"{name}.ckpt"
        torch.save({**ckpt, "go_explore": {**ckpt["go_explore"], "archive": {**archive, **patch}}}, bad)
        err = one_line_error(capsys, lambda: fit(tmp_path / name, "--ckpt_path", str(bad)))
        assert f"{bad}: the Go-Explore archive is inconsistent ({message}" in err, err
