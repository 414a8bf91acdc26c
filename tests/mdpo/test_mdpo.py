"""MDPO end to end: the update schedules take the steps they say, the off-policy warm-up leaves the
optimisers untouched, the off-policy variant resumes exactly and runs under DDP, a released policy
acts in one call, validate logs the return, bad input fails clearly, and (slow) CartPole is solved in
100k steps by the final model."""
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import zoo
from zoo import hub
from zoo.rl import EnvPool, make_env

from ..conftest import ROOT, load_recipe

CONFIGS = ROOT / "recipes" / "configs" / "mdpo"
TINY = str(CONFIGS / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
OFF_POLICY = ["--config", str(CONFIGS / "tiny_off_policy.yaml")]


def fit(root, *args):
    cli = load_recipe("mdpo").main(["fit", "--config", TINY, "--trainer.default_root_dir", str(root), *QUIET, *args])
    return cli.trainer, cli.model


def adam_steps(model) -> list[set[int]]:
    """For each optimiser of a fitted model, the step counts Adam holds for its parameters."""
    return [{int(opt.state[p]["step"]) for g in opt.param_groups for p in g["params"] if p in opt.state}
            for opt in model.raw_optimizers()]


def test_full_batch_takes_m_policy_steps_and_its_own_value_steps(tmp_path):
    """The paper's schedule (the default): per iteration, m = sgd_epochs Adam steps of the policy on the
    whole rollout, and value_epochs passes of value_minibatch_size minibatches for V."""
    trainer, model = fit(tmp_path)
    assert trainer.global_step == 4 and model.hparams.update_schedule == "full_batch"
    # tiny.yaml: 2 envs × 16 steps = 32 transitions, m = 2, value: 2 epochs × 32/16 minibatches
    assert adam_steps(model) == [{4 * 2}, {4 * 2 * 2}]


def test_minibatch_schedule_steps_policy_and_value_together(tmp_path):
    _, model = fit(tmp_path, "--model.update_schedule", "minibatch", "--model.minibatch_size", "8")
    assert adam_steps(model) == [{4 * 2 * 4}, {4 * 2 * 4}]  # 2 epochs × 32/8 minibatches, one step each


def test_off_policy_warm_up_leaves_the_optimisers_untouched(tmp_path):
    """Iterations before learning_starts advance the trainer's step, but Adam's step count (its bias
    correction) counts only the real updates."""
    trainer, model = fit(tmp_path, *OFF_POLICY, "--trainer.max_steps", "5", "--model.autotune_alpha", "true",
                         "--model.learning_starts", "40")
    # 16 transitions per iteration: iterations 1-2 are warm-up (16, 32 < 40), iterations 3-5 learn 16 steps each
    assert trainer.global_step == 5 and int(model.env_steps) == 80
    assert adam_steps(model) == [{3 * 16}, {3 * 16}, {3 * 16}]  # actor, critics, temperature


def test_off_policy_step_size_is_constant_by_default(tmp_path):
    trainer, model = fit(tmp_path, *OFF_POLICY, "--model.step_size", "0.5")
    assert model.hparams.step_size_schedule == "constant"
    assert trainer.callback_metrics["train/t_k"].item() == 0.5
    trainer, _ = fit(tmp_path / "linear", *OFF_POLICY, "--model.step_size_schedule", "linear")
    # 4 iterations of 16 steps, refreshed every 16: K = 4 refreshes, and the last iteration has k = 4 → 1/K
    assert trainer.callback_metrics["train/t_k"].item() == pytest.approx(0.25)


@pytest.mark.parametrize("args", [[], OFF_POLICY], ids=["on_policy", "off_policy"])
def test_fp16_is_refused_for_both_algorithms(args):
    """Their updates step the optimisers directly, past 16-mixed's gradient scaler (on a CPU Lightning
    turns 16-mixed into bf16-mixed, so the refusal is checked on the module itself)."""
    from types import SimpleNamespace

    from zoo.errors import UserError

    model = load_recipe("mdpo").main(["--config", TINY, *QUIET, *args], run=False).model
    assert type(model).scales_fp16_gradients is False
    model._trainer = SimpleNamespace(precision="16-mixed")
    with pytest.raises(UserError, match="16-mixed: .*MDPO steps its optimisers outside Lightning's gradient scaler"):
        model.setup("fit")


def test_a_fine_tune_counts_its_own_environment_steps(tmp_path):
    _, model = fit(tmp_path / "a", *OFF_POLICY)
    hub.save(model, tmp_path / "release")
    _, tuned = fit(tmp_path / "b", *OFF_POLICY, "--model.init_from", str(tmp_path / "release"), "--trainer.max_steps", "1")
    assert int(model.env_steps) == 64 and int(tuned.env_steps) == 16 and int(tuned.n_refreshes) == 1


def test_off_policy_resume_equals_unbroken_run(tmp_path):
    _, unbroken = fit(tmp_path / "a", *OFF_POLICY)
    fit(tmp_path / "b", *OFF_POLICY, "--trainer.max_steps", "2", "--model.schedule_steps", "4")
    ckpt = torch.load(tmp_path / "b" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["mdpo_replay"]["size"] == 32 and ckpt["mdpo_envs"]["lengths"].tolist() == [16, 16]
    # only the filled part of the buffer is saved, not its preallocated capacity
    assert ckpt["mdpo_replay"]["obs"].untyped_storage().nbytes() == 32 * 3 * 4
    _, resumed = fit(tmp_path / "b", *OFF_POLICY, "--ckpt_path", "last")
    assert int(resumed.n_refreshes) == 4 and len(resumed.buffer) == 64
    for k, v in unbroken.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=f"{k} differs after resume")
    # the running episodes were replayed: the environments are where the unbroken run left them
    np.testing.assert_array_equal(resumed.pool.obs, unbroken.pool.obs)


def test_env_pool_replays_running_episodes():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = EnvPool(lambda: make_env("Pendulum-v1"), 2)
    a.reset(g1)
    for t in range(5):
        a.step(np.full((2, 1), 0.3 * t, np.float32), g1)
    b = EnvPool(lambda: make_env("Pendulum-v1"), 2)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.obs, b.obs)
    for pool, g in ((a, g1), (b, g2)):
        pool.step(np.full((2, 1), -1.0, np.float32), g)
    np.testing.assert_array_equal(a.obs, b.obs)


def test_released_policy_acts_in_one_call(tmp_path):
    _, model = fit(tmp_path / "run", *OFF_POLICY)
    hub.save(model, tmp_path / "release")
    policy = zoo.load(tmp_path / "release")
    env = make_env("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)
    assert action.shape == (1,) and env.action_space.contains(action.astype(np.float32))
    # a batch of two takes another matmul kernel than a single row: equal up to float rounding
    np.testing.assert_allclose(policy.act(np.stack([obs, obs])), np.stack([action, action]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        policy.act(np.full(3, np.nan))
    with pytest.raises(ValueError, match="shape"):
        policy.act(np.zeros(4))


def test_validate_logs_mean_return(tmp_path, capsys):
    _, model = fit(tmp_path / "run")
    hub.save(model, tmp_path / "release")
    cli = load_recipe("mdpo").main(["validate", "--config", TINY, *QUIET, "--trainer.limit_val_batches", "1",
                                    "--trainer.default_root_dir", str(tmp_path / "val"),
                                    "--model.init_from", str(tmp_path / "release"), "--model.n_eval_episodes", "3"])
    ret = cli.trainer.callback_metrics["val/return"]
    assert 8 <= ret <= 500  # CartPole returns lie in [8, 500]
    expected = model.evaluate(n_episodes=3)
    assert ret.item() == pytest.approx(float(np.mean(expected)))


@pytest.mark.parametrize("args, message", [
    (["--model.env", "NoSuchEnv-v9"], "unknown to gymnasium"),
    (["--model.env", "tests.mdpo.envs:not_an_env"], "not a gymnasium.Env"),
    (["--model.env", "tests.mdpo.envs:MultiDiscreteActions"], "Discrete and Box action spaces"),
    (["--model.sgd_steps", "10"], "sgd_steps"),
    (["--model", "OffPolicyMDPO"], "needs a Box action space"),
    (["--model.n_envs", "0"], "n_envs must be"),
])
def test_bad_input_fails_clearly(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:  # ZooCLI reports a rejected hyperparameter as a usage error
        load_recipe("mdpo").main(["--config", TINY, *QUIET, *args], run=False)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    error = err[err.find("error: "):].strip()
    assert message in error and len(error.splitlines()) <= 2, err  # the message, and where --help is


def test_a_checkpoint_of_the_other_algorithm_resumes_as_itself(tmp_path):
    """A resumed run is built from its checkpoint's class, whatever the default config names."""
    fit(tmp_path, *OFF_POLICY, "--trainer.max_steps", "2")
    cli = load_recipe("mdpo").main(["fit", "--trainer.default_root_dir", str(tmp_path), *QUIET, "--ckpt_path", "last",
                                    "--trainer.max_steps", "3", "--trainer.limit_val_batches", "0"])
    assert type(cli.model).__name__ == "OffPolicyMDPO" and cli.model.hparams.env == "Pendulum-v1"
    assert cli.trainer.global_step == 3


def test_unknown_class_fails_clearly(capsys):
    with pytest.raises(SystemExit) as exit_:
        load_recipe("mdpo").main(["--config", TINY, *QUIET, "--model", "NoSuchMDPO"], run=False)
    assert exit_.value.code == 2
    assert "NoSuchMDPO" in capsys.readouterr().err


def test_nan_observation_fails_clearly(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        fit(tmp_path, "--model.env", "tests.mdpo.envs:NaNAfter")
    assert exit.value.code == 2
    assert re.search(r"error: env 'tests.mdpo.envs:NaNAfter': observation with NaN.*step 3", capsys.readouterr().err)


@pytest.mark.slow
def test_cartpole_solved_within_100k_steps(tmp_path):
    """The default recipe, seed 0, judged on its final model: last.ckpt holds fit's last step."""
    out = subprocess.run([sys.executable, str(ROOT / "recipes" / "mdpo.py"), "fit", *QUIET,
                          "--trainer.default_root_dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    ckpt = torch.load(tmp_path / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    model = zoo.load(tmp_path / "version_0" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 48
    assert int(model.env_steps) <= 100_000
    returns = model.evaluate(n_episodes=20, seed=123)
    assert returns.mean() >= 475, returns


def test_continuous_on_policy_bf16_with_model_summary(tmp_path):
    trainer, model = fit(tmp_path, "--model.env", "Pendulum-v1", "--trainer.precision", "bf16-mixed",
                         "--trainer.enable_model_summary", "true")
    assert trainer.global_step == 4 and int(model.env_steps) == 4 * 2 * 16
    assert model.obs_norm.count.item() == 4 * 2 * 16  # the normaliser saw every observation once
    assert torch.isfinite(model.policy.log_std).all() and not torch.equal(model.policy.log_std, torch.zeros(1))


def test_record_gif(tmp_path):
    from PIL import Image

    from zoo.rl import record_gif

    path = record_gif(lambda obs: np.zeros(len(obs), np.int64), lambda **kw: make_env("tests.mdpo.envs:Painted", **kw),
                      tmp_path / "episode.gif", max_frames=50)
    gif = Image.open(path)
    assert gif.n_frames == 7  # the reset frame and six steps, then the episode ends
    gif.seek(6)
    assert np.asarray(gif.convert("RGB"))[0, 0, 0] == 240


def test_make_env_atari_preprocessing_or_a_clear_error():
    import importlib.util

    if importlib.util.find_spec("ale_py") is None:
        with pytest.raises(ValueError, match="install ale-py"):
            make_env("ALE/Pong-v5")
    else:
        obs, _ = make_env("ALE/Pong-v5").reset(seed=0)
        assert obs.shape == (4, 84, 84)


@pytest.mark.parametrize("release, env_id, at_least", [("mdpo-cartpole", "CartPole-v1", 475),
                                                        ("mdpo-pendulum", "Pendulum-v1", -400)])
def test_released_checkpoints_act(release, env_id, at_least):
    policy = zoo.load(release)
    env = make_env(env_id)
    obs, _ = env.reset(seed=11)
    total, done = 0.0, False
    while not done:
        obs, r, term, trunc, _ = env.step(policy.act(obs))
        total, done = total + r, term or trunc
    assert total >= at_least


DDP_SCRIPT = '''
import sys, torch
sys.path.insert(0, {root!r})
import lightning as L
from zoo.cli import ZooCLI
from zoo.mdpo import MDPO

class Dump(L.Callback):
    def on_fit_end(self, trainer, m):
        torch.save({{"state": {{k: v.cpu() for k, v in m.state_dict().items()}},
                    "obs": torch.as_tensor(m.pool.obs)}}, f"{out}/rank{{trainer.global_rank}}.pt")

cli = ZooCLI(MDPO, args=sys.argv[1:], run=False, subclass_mode_model=True)
cli.trainer.callbacks.append(Dump())
cli.trainer.fit(cli.model)
'''


def test_off_policy_ddp_ranks_share_weights_and_run_their_own_environments(tmp_path):
    """Under DDP each process steps its own, differently seeded, environments; the critic, actor and
    temperature updates each average their gradients over the ranks, which keeps the weights identical."""
    import os

    script = tmp_path / "run.py"
    script.write_text(DDP_SCRIPT.format(root=str(ROOT), out=str(tmp_path)))
    out = subprocess.run([sys.executable, str(script), *OFF_POLICY, *QUIET, "--trainer.accelerator", "cpu",
                          "--trainer.devices", "2", "--trainer.strategy", "ddp", "--model.normalize_obs", "true",
                          "--model.autotune_alpha", "true", "--trainer.default_root_dir", str(tmp_path / "run")],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k, v in r0["state"].items():
        torch.testing.assert_close(r1["state"][k], v, rtol=0, atol=0, msg=f"{k} differs between ranks")
    assert not torch.equal(r0["obs"], r1["obs"])
    assert r0["state"]["obs_norm.count"].item() == 2 * 4 * 2 * 8  # statistics of both ranks' observations
    assert not torch.equal(r0["state"]["log_alpha"], torch.tensor(0.2).log())  # the temperature learned
