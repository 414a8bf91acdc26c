"""What keeps a run safe and visible: checkpoints that hold the last step, survive kills and Ctrl-C,
belong to their run and method; errors in one line; progress in a log file; a run exported as a
release; a release that brings its own hyperparameters."""
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

import zoo
from zoo import hub
from zoo.runs import AtomicCheckpointIO, is_live, latest_checkpoint

from ..conftest import ROOT, load_recipe

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def tiny(method: str) -> str:
    return str(ROOT / "recipes" / "configs" / method / "tiny.yaml")


def fit(method: str, root, *args: str):
    cli = load_recipe(method).main(["fit", "--config", tiny(method), "--trainer.default_root_dir", str(root), *QUIET, *args])
    return cli.trainer, cli.model


def run_recipe(method: str, *args: str, cwd, timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(ROOT / "recipes" / f"{method}.py"), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def one_line_error(capsys, exit_) -> str:
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) <= 2, err  # the message, and where --help is
    return err


# -- checkpoints ------------------------------------------------------------------------------

def test_last_ckpt_holds_the_last_step(tmp_path):
    """max_steps 5 with a checkpoint every 2 steps: last.ckpt holds step 5, not step 4."""
    fit("op_gfn", tmp_path, "--trainer.max_steps", "5")
    ckpt = torch.load(tmp_path / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 5


def test_two_runs_in_one_folder_keep_their_own_checkpoints(tmp_path, capsys):
    fit("op_gfn", tmp_path, "--trainer.max_steps", "2")
    fit("op_gfn", tmp_path, "--trainer.max_steps", "3")
    a, b = (tmp_path / f"version_{v}" / "checkpoints" / "last.ckpt" for v in (0, 1))
    assert torch.load(a, weights_only=True)["global_step"] == 2
    assert torch.load(b, weights_only=True)["global_step"] == 3
    assert latest_checkpoint(tmp_path) == b
    trainer, _ = fit("op_gfn", tmp_path, "--trainer.max_steps", "4", "--ckpt_path", "last")
    assert trainer.ckpt_path == str(b) and trainer.global_step == 4


def test_a_checkpoint_of_another_method_is_refused_naming_both(tmp_path, capsys):
    fit("op_gfn", tmp_path / "gfn", "--trainer.max_steps", "2")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        fit("mdpo", tmp_path / "rl", "--ckpt_path", str(tmp_path / "gfn" / "version_0" / "checkpoints" / "last.ckpt"))
    err = one_line_error(capsys, exit_)
    assert "a checkpoint of op_gfn" in err and "this recipe trains mdpo" in err


def test_resume_with_nothing_to_resume_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        fit("op_gfn", tmp_path, "--ckpt_path", "last")
    assert "--ckpt_path last: no run under" in one_line_error(capsys, exit_)
    with pytest.raises(SystemExit) as exit_:
        fit("op_gfn", tmp_path, "--ckpt_path", str(tmp_path / "nope.ckpt"))
    assert "nope.ckpt: no such file" in one_line_error(capsys, exit_)


def test_a_resume_whose_flags_change_the_architecture_says_which(tmp_path, capsys):
    fit("op_gfn", tmp_path, "--trainer.max_steps", "2")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        fit("op_gfn", tmp_path, "--ckpt_path", "last", "--model.hidden_dim", "32")
    err = one_line_error(capsys, exit_)
    assert "shape mismatches" in err and "hidden_dim 16 (checkpoint) vs 32 (this model)" in err


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def hold_lock(folder) -> subprocess.Popen:
    """A second process holding a run folder's lock, as a run still training does."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_resume_passes_over_a_run_still_training(tmp_path, capsys, caplog):
    """--ckpt_path last resumes the latest run that has stopped (a SIGKILLed run has), never one still training;
    a checkpoint of a run still training, given by path, is a one-line error; the resumed run says which it resumes."""
    fit("op_gfn", tmp_path, "--trainer.max_steps", "2")
    fit("op_gfn", tmp_path, "--trainer.max_steps", "3")
    stopped, live = (tmp_path / f"version_{v}" / "checkpoints" / "last.ckpt" for v in (0, 1))
    holder = hold_lock(live.parent.parent)
    try:
        assert is_live(live.parent.parent) and latest_checkpoint(tmp_path) == stopped
    finally:
        holder.kill()  # SIGKILL: the system drops the lock
        holder.wait()
    assert not is_live(live.parent.parent) and latest_checkpoint(tmp_path) == live
    holder = hold_lock(live.parent.parent)
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as exit_:
            fit("op_gfn", tmp_path, "--ckpt_path", str(live))
        assert f"its run ({live.parent.parent}) is still training" in one_line_error(capsys, exit_)
        caplog.clear()
        trainer, _ = fit("op_gfn", tmp_path, "--trainer.max_steps", "4", "--ckpt_path", "last")
        assert trainer.ckpt_path == str(stopped) and trainer.global_step == 4
        assert f"resuming {stopped} at step 2" in caplog.text
    finally:
        holder.kill()
        holder.wait()
    holders = [hold_lock(tmp_path / f"version_{v}") for v in (0, 1, 2)]
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as exit_:
            fit("op_gfn", tmp_path, "--ckpt_path", "last")
        assert "every run under" in one_line_error(capsys, exit_)
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


def test_a_run_refused_before_its_first_step_leaves_no_folder(tmp_path, capsys, monkeypatch):
    """Refused by its model's setup (as fp16 is for a method that steps its optimisers by hand) or by its data (a
    bad path): no version_N/ is left behind, and nothing is removed that the run did not write."""
    from zoo.errors import UserError
    from zoo.op_gfn import OPGFN

    fit("op_gfn", tmp_path, "--trainer.max_steps", "1")
    (tmp_path / "version_0" / "notes.txt").write_text("the user's")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    capsys.readouterr()

    def refuse(self, stage):
        raise UserError("--trainer.precision 16-mixed: refused")

    with monkeypatch.context() as m:
        m.setattr(OPGFN, "setup", refuse)
        with pytest.raises(SystemExit) as exit_:
            fit("op_gfn", tmp_path)
        assert "refused" in one_line_error(capsys, exit_)
    with pytest.raises(SystemExit) as exit_:
        fit("lm", tmp_path, "--data.path", str(tmp_path / "no-such-text"))
    assert "no-such-text" in one_line_error(capsys, exit_)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=lambda u: f"umask-{u:03o}")
def test_checkpoints_are_written_with_the_mode_the_umask_gives(umask, tmp_path):
    """A checkpoint's mode is what open() gives a new file (0o666 less the umask), as with Lightning's own
    writer, not mkstemp's 0o600; the temporary file is gone."""
    old = os.umask(umask)
    try:
        AtomicCheckpointIO().save_checkpoint({"w": torch.ones(2)}, tmp_path / "last.ckpt")
        (tmp_path / "opened").write_bytes(b"")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"last.ckpt": 0o666 & ~umask, "opened": 0o666 & ~umask}


def test_a_killed_write_leaves_the_previous_checkpoint_whole(tmp_path):
    """A process killed in the middle of writing a checkpoint (here: os._exit halfway through
    torch.save) leaves the previous file intact and no partial file under its name."""
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1, "w": torch.ones(4)}, path)
    script = f"""
import os, torch
from zoo.runs import AtomicCheckpointIO
real = torch.save
def dying_save(obj, f, *a, **k):
    f.write(b"PK" + b"\\0" * 100000)
    f.flush()
    os._exit(9)
torch.save = dying_save
AtomicCheckpointIO().save_checkpoint({{"step": 2, "w": torch.zeros(1 << 20)}}, {str(path)!r})
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 9
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["step"] == 1 and torch.equal(ckpt["w"], torch.ones(4))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert all(name.startswith(".last.ckpt.") for name in leftovers)  # a stray temp file at most, never last.ckpt


def test_ctrl_c_saves_the_step_it_stops_at_and_resumes_exactly(tmp_path):
    """SIGINT mid-run: the run finishes its step, writes last.ckpt and exits cleanly; resumed to step N
    it equals an unbroken run to N."""
    common = ["fit", "--config", tiny("op_gfn"), *QUIET, "--checkpoint.every_n_train_steps", "1000"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "recipes" / "op_gfn.py"), *common,
                             "--trainer.max_steps", "100000", "--trainer.default_root_dir", str(tmp_path / "b"),
                             "--trainer.log_every_n_steps", "1"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "b" / "version_0" / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") > 40):
        time.sleep(0.5)
    assert is_live(tmp_path / "b" / "version_0")  # a run holds its folder's lock while it trains
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert not is_live(tmp_path / "b" / "version_0")
    assert "interrupted: finishing this step" in err
    ckpt = torch.load(tmp_path / "b" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    stopped = ckpt["global_step"]
    assert 20 < stopped < 100000
    target = str(stopped + 3)
    resumed_trainer, resumed = fit("op_gfn", tmp_path / "b", "--checkpoint.every_n_train_steps", "1000",
                                   "--trainer.max_steps", target, "--ckpt_path", "last")
    unbroken_trainer, unbroken = fit("op_gfn", tmp_path / "a", "--checkpoint.every_n_train_steps", "1000",
                                     "--trainer.max_steps", target)
    assert (resumed_trainer.global_step, resumed_trainer.current_epoch) == \
        (unbroken_trainer.global_step, unbroken_trainer.current_epoch)
    for k, v in unbroken.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("step", [3, 4], ids=["at-epoch-end", "mid-epoch"])
@pytest.mark.parametrize("bound", [["--trainer.max_steps", "5"], ["--trainer.max_steps", "-1", "--trainer.max_epochs", "2"]],
                         ids=["max_steps", "max_epochs"])
def test_ctrl_c_then_resume_counts_epochs_as_an_unbroken_run(bound, step, tmp_path):
    """A Ctrl-C at the last step of the first epoch (3 steps an epoch) or at the first of the second, then a resume:
    the same steps, epoch count and weights as an unbroken run, bounded by steps or by epochs."""
    common = ["--checkpoint.every_n_train_steps", "1000", *bound]
    ctrl_c = json.dumps([{"class_path": "tests.core.interrupt.InterruptAt", "init_args": {"step": step}}])
    fit("op_gfn", tmp_path / "b", *common, "--trainer.callbacks", ctrl_c)
    assert torch.load(tmp_path / "b" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == step
    resumed_trainer, resumed = fit("op_gfn", tmp_path / "b", *common, "--ckpt_path", "last")
    unbroken_trainer, unbroken = fit("op_gfn", tmp_path / "a", *common)
    assert unbroken_trainer.global_step in (5, 6)
    assert (resumed_trainer.global_step, resumed_trainer.current_epoch) == \
        (unbroken_trainer.global_step, unbroken_trainer.current_epoch)
    for k, v in unbroken.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)


# -- errors in one line -----------------------------------------------------------------------

def test_user_errors_met_while_running_print_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(SystemExit) as exit_:
        fit("lm", tmp_path, "--data.path", str(empty))
    assert "empty.txt: the file is empty" in one_line_error(capsys, exit_)
    with pytest.raises(SystemExit) as exit_:
        fit("op_gfn", tmp_path, "--model.init_from", "no-such-release")
    assert "'no-such-release' is neither a released id" in one_line_error(capsys, exit_)


def test_init_from_a_release_of_another_size_names_what_differs(tmp_path, capsys):
    _, model = fit("op_gfn", tmp_path / "a")
    hub.save(model, tmp_path / "release")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        fit("op_gfn", tmp_path / "b", "--model.init_from", str(tmp_path / "release"), "--model.hidden_dim", "8")
    err = one_line_error(capsys, exit_)
    assert "release" in err and "hidden_dim 16 (release) vs 8 (this model)" in err


def test_init_from_a_release_of_another_method_is_refused(tmp_path, capsys):
    _, model = fit("op_gfn", tmp_path / "a")
    hub.save(model, tmp_path / "release")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        fit("mdpo", tmp_path / "b", "--model.init_from", str(tmp_path / "release"))
    assert "a release of op_gfn" in one_line_error(capsys, exit_)


# -- starting from a release ------------------------------------------------------------------

def test_init_from_builds_the_model_from_the_release_hparams(tmp_path):
    """validate --model.init_from with the default config (another network size) builds the release's
    model; a flag still overrides a release value."""
    _, model = fit("mdpo", tmp_path / "a", "--model.hidden_sizes", "[24]")
    hub.save(model, tmp_path / "release")
    cli = load_recipe("mdpo").main(["validate", *QUIET, "--trainer.default_root_dir", str(tmp_path / "b"),
                                    "--trainer.limit_val_batches", "1", "--model.n_eval_episodes", "1",
                                    "--model.init_from", str(tmp_path / "release"), "--model.n_envs", "3"])
    assert list(cli.model.hparams.hidden_sizes) == [24] and cli.model.hparams.n_envs == 3
    for k, v in model.state_dict().items():
        torch.testing.assert_close(cli.model.state_dict()[k], v, rtol=0, atol=0)


def test_a_config_given_with_init_from_applies_to_the_release(tmp_path):
    """A release fine-tuned (objective finetune, lr 3e-3) then started from with an unlearning --config: the
    config's objective and learning rate hold, not the release's (which would fine-tune on the forget set);
    with no --config, the release's own values hold over the default config's."""
    _, model = fit("npo", tmp_path / "a", "--model.objective", "finetune", "--model.lr", "0.003",
                   "--data.train_split", "full", "--trainer.max_steps", "1")
    hub.save(model, tmp_path / "release")
    _, tuned = fit("npo", tmp_path / "b", "--model.init_from", str(tmp_path / "release"), "--trainer.max_steps", "1")
    assert tuned.hparams.objective == "npo_rt" and tuned.hparams.lr == 0.001  # recipes/configs/npo/tiny.yaml's
    cli = load_recipe("npo").main(["validate", *QUIET, "--trainer.default_root_dir", str(tmp_path / "c"),
                                   "--trainer.limit_val_batches", "1", "--model.init_from", str(tmp_path / "release")])
    assert cli.model.hparams.objective == "finetune" and cli.model.hparams.lr == 0.003  # over default.yaml's


def test_a_fine_tune_of_an_rl_release_counts_its_own_steps(tmp_path):
    _, model = fit("mdpo", tmp_path / "a")
    assert int(model.env_steps) > 0
    hub.save(model, tmp_path / "release")
    _, tuned = fit("mdpo", tmp_path / "b", "--model.init_from", str(tmp_path / "release"), "--trainer.max_steps", "1")
    assert int(tuned.env_steps) == tuned.hparams.n_envs * tuned.hparams.n_steps


# -- exporting a run --------------------------------------------------------------------------

def test_an_lm_run_exports_to_a_complete_hf_release(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zoo.__main__ import main as zoo_main

    _, model = fit("lm", tmp_path / "run")
    ckpt = tmp_path / "run" / "version_0" / "checkpoints" / "last.ckpt"
    assert zoo.load(ckpt).tokenizer is not None
    assert zoo_main(["export", str(ckpt), str(tmp_path / "release")]) == 0
    hub.verify(tmp_path / "release")
    hf, tok = AutoModelForCausalLM.from_pretrained(tmp_path / "release"), AutoTokenizer.from_pretrained(tmp_path / "release")
    ids = torch.tensor([tok("def f(x): return x")["input_ids"]])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), rtol=0, atol=0)


# -- what the terminal shows ------------------------------------------------------------------

def test_progress_goes_to_a_log_file_as_plain_lines(tmp_path):
    out = run_recipe("op_gfn", "fit", "--config", tiny("op_gfn"), "--trainer.enable_progress_bar", "true",
                     "--trainer.default_root_dir", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.startswith("step ")]
    assert lines and lines[-1].startswith("step 4/4 · ") and "steps/s" in lines[-1]
    assert "v_num" not in out.stderr + out.stdout


def test_the_first_screen_shows_no_tips_or_deprecation_notices(tmp_path):
    out = run_recipe("lm", "fit", "--config", tiny("lm"), "--trainer.default_root_dir", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    screen = out.stdout + out.stderr
    for noise in ("Tip:", "litlogger", "deprecated", "FutureWarning", "DeprecationWarning"):
        assert noise not in screen, noise


def test_a_bad_flag_is_one_line_not_the_usage_screen(capsys):
    with pytest.raises(SystemExit) as exit_:
        load_recipe("op_gfn").main(["fit", "--trainer.max_stepz", "3"])
    err = one_line_error(capsys, exit_)
    assert "max_stepz" in err and "--help" in err


@pytest.mark.parametrize("env, message", [
    ("tests.core.bad_envs:NaNReward", r"reward nan \(copy 0, episode seed \d+, step 2\); the environment must return finite"),
    ("tests.core.bad_envs:crashing_factory", r"the entry point raised KeyError: 'no such key' \(.*bad_envs\.py:\d+\)"),
])
def test_a_broken_user_environment_is_one_line(env, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        fit("mdpo", tmp_path, "--model.env", env)
    import re

    assert re.search(message, one_line_error(capsys, exit_))
