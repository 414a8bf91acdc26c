"""Go-Explore end to end: a resumed run continues the same archive and episodes, DDP processes keep
identical archives, a release replays its best trajectory to its score, the downscaled representation
adapts, bad input fails in one line, and (slow) the default config finds the goal and robustifies."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import zoo
from zoo import hub
from zoo.go_explore import GoExplore

from ..conftest import ROOT, load_recipe

pytest.importorskip("minigrid")
TINY = str(ROOT / "recipes" / "configs" / "go_explore" / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit(root, *args):
    cli = load_recipe("go_explore").main(["fit", "--config", TINY, "--trainer.default_root_dir", str(root), *QUIET, *args])
    return cli.trainer, cli.model


def assert_same_archive(a, b):
    assert a.keys == b.keys and a.score == b.score and a.length == b.length
    assert (a.seen, a.chosen, a.since_new) == (b.seen, b.chosen, b.since_new)
    for x, y in zip(a.states + a.actions, b.states + b.actions):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("sil", [[], ["--model.sil_coef", "0"]], ids=["self-imitation", "without"])
def test_resume_continues_the_same_archive_and_episodes(tmp_path, sil):
    # stopped after phase 1 (step 2 of 4) and mid phase 2 (step 3): both resume to the unbroken run; in an
    # empty room two iterations of phase 1 reach the goal on any seed, so phase 2 has a demonstration to imitate
    sil = ["--model.env", "MiniGrid-Empty-5x5-v0", *sil]
    _, unbroken = fit(tmp_path / "a", *sil)
    assert len(unbroken.demo) > 0
    assert (unbroken.imitation is None) == ("--model.sil_coef" in sil)
    for stop in (2, 3):
        root = tmp_path / f"stop{stop}"
        fit(root, "--trainer.max_steps", str(stop), "--model.schedule_steps", "4", *sil)
        ckpt = torch.load(root / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
        assert len(ckpt["go_explore"]["archive"]["score"]) == len(unbroken.archive)
        _, resumed = fit(root, "--ckpt_path", "last", *sil)
        assert_same_archive(resumed.archive, unbroken.archive)
        assert resumed.runner.start == unbroken.runner.start and resumed.history == unbroken.history
        np.testing.assert_array_equal(resumed.runner.stack, unbroken.runner.stack)
        for k, v in unbroken.state_dict().items():
            torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)


def test_ddp_processes_keep_identical_archives(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    saver = json.dumps([{"class_path": "tests.go_explore.rank_archive.SaveRankArchive",
                         "init_args": {"directory": str(tmp_path / "ranks")}}])
    cmd = [sys.executable, str(ROOT / "recipes" / "go_explore.py"), "fit", "--config", TINY, *QUIET,
           "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.default_root_dir", str(tmp_path),
           "--trainer.callbacks", saver]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / "ranks" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["explored"] != rank1["explored"]  # each process explored its own cells…
    for k in ("keys", "score", "length", "seen", "chosen", "states", "actions", "start", "frames"):
        a, b = (torch.as_tensor(rank[k]) for rank in (rank0, rank1))
        shown = [t.tolist() if t.numel() < 20 else tuple(t.shape) for t in (a, b)]
        assert torch.equal(a, b), f"{k} differs between the ranks: {shown[0]} against {shown[1]}"
    assert 2 * 2 * 480 <= rank0["frames"] <= 2 * 2 * (480 + 30)  # …and the total counts both


def test_release_replays_its_best_trajectory_to_its_score(tmp_path):
    _, model = fit(tmp_path / "run", "--model.write_media", "true", "--model.phase1_steps", "6",
                   "--trainer.max_steps", "8")
    assert float(model.best_score) > 0, "the tiny run should find the goal of the two-room grid"
    hub.save(model, tmp_path / "release")
    assert (tmp_path / "release" / "best_trajectory.gif").is_file() and (tmp_path / "release" / "progress.png").is_file()
    assert (tmp_path / "run" / "version_0" / "best_trajectory.gif").is_file()
    loaded = zoo.load(tmp_path / "release")
    np.testing.assert_array_equal(loaded.best_actions, model.best_actions)
    score, frames = loaded.replay()
    assert score == float(model.best_score) and len(frames) == len(model.best_actions) + 1
    returns, successes = loaded.evaluate(n_episodes=3)
    assert returns.shape == successes.shape == (3,)
    metrics = model.release_metrics()
    assert metrics["best_score"] == float(model.best_score) and metrics["cells"] == len(model.archive)


def test_shorten_demo_robustifies_the_loop_erased_trajectory(tmp_path):
    args = ("--model.phase1_steps", "6", "--trainer.max_steps", "7")
    _, plain = fit(tmp_path / "plain", *args)
    _, short = fit(tmp_path / "short", *args, "--model.shorten_demo", "true")
    np.testing.assert_array_equal(plain.best_actions, short.best_actions)  # phase 1 is the same
    assert len(plain.demo) == len(plain.best_actions)
    assert len(short.demo) < len(short.best_actions), "random walks of the two-room grid loop"
    assert short.demo.score >= plain.demo.score > 0  # the same goal, no later


def test_self_imitation_replays_the_demonstration(tmp_path):
    """The replays' steps are the demonstration's: its observations (stacked from where the replay started),
    its actions, its discounted returns, weighted by 1 − the success rate from each point."""
    from zoo.go_explore.robustify import SelfImitation

    _, model = fit(tmp_path, "--model.phase1_steps", "6", "--trainer.max_steps", "7")
    demo = model.demo
    assert len(demo) > 3 and demo.score > 0
    replay = SelfImitation(demo, n=3, frame_stack=2, horizon=2, before_max=10, from_start_prob=0.3, gamma=0.5,
                           reward_clip=False)
    success = np.linspace(0, 1, len(demo) + 1)
    out = replay.rollout(4, start=len(demo) - 2, point_success=success, generator=torch.Generator().manual_seed(0))
    assert out["obs"].shape == (12, 2, *demo.obs[0].shape)  # 4 steps of 3 replays, step-major
    for r in range(3):
        # replay r's last step was at point t (it is now at t + 1), from first ≤ t, within 10 before the start point
        t, first = int(replay.t[r]) - 1, int(replay.first[r])
        assert 0 <= first <= t < len(demo) and (first == 0 or first >= len(demo) - 2 - 10)
        step = 9 + r  # its last step in the rollout
        np.testing.assert_array_equal(out["obs"][step, 1], demo.obs[t])
        np.testing.assert_array_equal(out["obs"][step, 0], demo.obs[t - 1] if t > first else np.zeros_like(demo.obs[t]))
        assert int(out["actions"][step]) == demo.actions[t]
        assert float(out["weights"][step]) == pytest.approx(1 - success[t])
        rest = np.diff(demo.returns)[t:]
        assert float(out["returns"][step]) == pytest.approx(sum(r * 0.5 ** k for k, r in enumerate(rest)))


def test_the_downscaled_representation_is_chosen_and_the_archive_refiled():
    pytest.importorskip("ale_py")
    torch.manual_seed(0)
    model = GoExplore(env="ALE/MontezumaRevenge-v5", cell="downscaled", frames_per_step=200, explore_steps=50,
                      mean_repeat=20.0, first_recompute=400, recent_frame_prob=0.5, split_iterations=30)
    model.explore_iteration()
    assert model.downscaling.params is None and len(model.archive) == 1  # every frame is one cell at first
    while model.downscaling.params is None:
        model.explore_iteration()
    w, h, d = model.downscaling.params
    assert 1 <= w < 80 and 1 <= h < 105 and 2 <= d <= 255
    for _ in range(3):  # the one cell re-filed is one cell still; new ones come from exploring
        model.explore_iteration()
    assert len(model.archive) > 1 and all(len(k) == w * h for k in model.archive.keys)
    # the stored frame of every cell gives its key
    for key, frame in zip(model.archive.keys, model.archive.frames):
        assert model.cell_of.of_frame(frame) == key


def test_bad_input_fails_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        load_recipe("go_explore").main(["fit", "--config", TINY, "--model.env", "tests.go_explore.envs:no_restore"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "cannot save and restore its state: it lacks get_state() and set_state()" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        load_recipe("go_explore").main(["fit", "--config", TINY, "--model.env", "NoSuchEnv-v3"])
    assert "--model.env NoSuchEnv-v3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load_recipe("go_explore").main(["fit", "--config", TINY, "--model.sticky", "1.5"])
    assert "--model.sticky must lie in [0, 1]" in capsys.readouterr().err


def test_a_user_environment_with_the_protocol_trains(tmp_path):
    _, model = fit(tmp_path, "--model.env", "tests.go_explore.envs:corridor", "--model.explore_steps", "30",
                   "--model.success_score", "null")
    assert float(model.best_score) == 1.0 and 11 <= len(model.best_actions) <= 15  # the shortest way is 11 steps
    assert model.runner.threshold == 1.0


@pytest.mark.slow
def test_phase_1_finds_the_goal_and_phase_2_robustifies_it(tmp_path):
    """Two-room MiniGrid: exploration finds the goal, the backward algorithm walks the start to the
    beginning, and the policy reaches the goal from reset under sticky actions in most episodes."""
    _, model = fit(tmp_path, "--model.phase1_steps", "12", "--trainer.max_steps", "72", "--model.n_envs", "16",
                   "--model.n_steps", "64", "--model.hidden_sizes", "[64, 64]", "--model.sgd_epochs", "4",
                   "--model.minibatch_size", "256", "--model.min_episodes", "16", "--model.start_window", "10",
                   "--model.noop_max", "10", "--model.lr", "0.001")
    assert float(model.best_score) > 0 and model.runner.start == 0
    returns, successes = model.evaluate(n_episodes=50, seed=5_000_000)
    assert successes.mean() >= 0.8, f"success from reset {successes.mean():.2f}"
