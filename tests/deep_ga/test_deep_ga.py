"""The Deep GA module: bad inputs, seed-chain releases, DDP equals one process, learning on the maze."""
import json
import os
import subprocess
import sys

import pytest
import torch

import zoo
from zoo import hub
from zoo.deep_ga import DeepGA
from zoo.deep_ga.objective import theta_from_chain
from zoo.errors import UserError

from ..conftest import ROOT, load_recipe

TINY = str(ROOT / "recipes" / "configs" / "deep_ga" / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
MAZE = {"env": "zoo/HardMaze-v0", "env_kwargs": {"steps": 30}, "hidden_sizes": [8]}


@pytest.mark.parametrize("kwargs, message", [
    ({"population_size": 10, "truncation": 20}, "population_size 10 is smaller than --model.truncation 20"),
    ({"sigma": 0.0}, "--model.sigma must be > 0"),
    ({"sigma": -0.1}, "--model.sigma must be > 0"),
    ({"env": "NoSuchEnv-v9"}, "--model.env NoSuchEnv-v9"),
    ({"archive_probability": 1.5}, "archive_probability must lie in"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    with pytest.raises(UserError, match=message):
        DeepGA(**{**MAZE, **kwargs})


def test_bad_flag_from_the_command_line_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        load_recipe("deep_ga").main(["fit", "--config", TINY, *QUIET, "--model.truncation", "50"])
    assert exit_.value.code == 2
    assert "is smaller than --model.truncation 50" in capsys.readouterr().err


def test_a_million_weights_released_in_under_a_kilobyte(tmp_path):
    model = DeepGA(env="ALE/Frostbite-v5", policy="dqn", sigma=0.002, chain_capacity=64)
    chain = tuple(range(1000, 1050))  # 49 generations of mutations
    model.set_elite(chain)
    hub.save(model, tmp_path / "release")
    size = (tmp_path / "release" / hub.WEIGHTS).stat().st_size
    assert model.theta.numel() > 1_000_000 and size < 1024
    loaded = zoo.load(tmp_path / "release")
    torch.testing.assert_close(loaded.theta, theta_from_chain(chain, model.init_scale, 0.002), rtol=0, atol=0)
    torch.testing.assert_close(loaded.theta, model.theta, rtol=0, atol=0)


def fit(root, *args):
    cli = load_recipe("deep_ga").main(["fit", "--config", TINY, *QUIET, "--trainer.default_root_dir", str(root), *args])
    return cli.model


def test_fine_tuning_continues_the_released_chain(tmp_path, capsys):
    model = fit(tmp_path / "a")
    hub.save(model, tmp_path / "release")
    tuned = fit(tmp_path / "b", "--model.init_from", str(tmp_path / "release"), "--trainer.max_steps", "1")
    assert tuned.elite()[: len(model.elite())] == model.elite()  # the first generation mutates the release's elite
    with pytest.raises(SystemExit):
        fit(tmp_path / "c", "--model.init_from", str(tmp_path / "release"), "--model.sigma", "0.5")
    assert "the chain continues with the same σ: pass --model.sigma 0.1" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_select_what_one_process_selects(tmp_path):
    """Rank 0 draws the seeds, each rank plays its share: the run is the same on any number of processes."""
    one = fit(tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(ROOT / "recipes" / "deep_ga.py"), "fit", "--config", TINY, *QUIET, "--trainer.devices", "2",
           "--trainer.strategy", "ddp", "--trainer.default_root_dir", str(tmp_path / "two")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = torch.load(tmp_path / "two" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    state = ckpt["deep_ga"]
    assert state["env_steps"] == one.env_steps
    chains = [tuple(int(s) for s in row[:n]) for row, n in zip(state["chains"], state["lengths"])]
    assert chains == one.population
    torch.testing.assert_close(ckpt["state_dict"]["theta"], one.theta, rtol=0, atol=0)


def test_ga_moves_the_robot_toward_the_goal(tmp_path):
    model = fit(tmp_path, "--trainer.max_steps", "12", "--model.env_kwargs", json.dumps({"steps": 60}),
                "--model.population_size", "16")
    start = DeepGA(**{**MAZE, "env_kwargs": {"steps": 60}})  # the untrained policy: chain (0,)
    before, after = start.evaluate(n_episodes=1)[0], model.evaluate(n_episodes=1)[0]
    assert after > before + 5, (before, after)  # returns are minus the distance to the goal
