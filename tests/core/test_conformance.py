"""Every recipe meets the zoo's contract: configs parse, fit runs, save → load is exact, a resumed
run equals an unbroken one, 2-process DDP works on CPU, and bad flags fail clearly."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo import hub

from ..conftest import ROOT, load_recipe

METHODS = sorted(p.stem for p in (ROOT / "recipes").glob("*.py"))
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def tiny(method: str) -> str:
    return str(ROOT / "recipes" / "configs" / method / "tiny.yaml")


def fit(method: str, root: Path, *args: str):
    cli = load_recipe(method).main(["fit", "--config", tiny(method), "--trainer.default_root_dir", str(root), *QUIET, *args])
    return cli.trainer, cli.model


def test_every_method_has_a_recipe():
    methods = [p.name for p in (ROOT / "zoo").iterdir() if (p / "module.py").exists()]
    assert methods and sorted(methods) == [m for m in METHODS if m in methods]
    for m in methods:
        assert (ROOT / "recipes" / "configs" / m / "default.yaml").exists()
        assert Path(tiny(m)).exists()


@pytest.mark.parametrize("config", sorted((ROOT / "recipes" / "configs").glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        load_recipe(config.parent.name).main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    assert "model:" in capsys.readouterr().out


@pytest.mark.parametrize("method", METHODS)
def test_default_config_is_used_without_config(method, capsys):
    with pytest.raises(SystemExit):
        load_recipe(method).main(["fit", "--print_config"])
    printed = capsys.readouterr().out
    default = (ROOT / "recipes" / "configs" / method / "default.yaml").read_text()
    assert "max_steps" in printed
    for line in default.splitlines():
        if line.strip().startswith("max_steps:"):
            assert line.strip() in printed


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One tiny fit per method, shared by the tests that only read its result."""
    cache = {}

    def get(method):
        if method not in cache:
            root = tmp_path_factory.mktemp(method)
            torch.manual_seed(0)
            init = {k: v.clone() for k, v in load_recipe(method).main(
                ["--config", tiny(method), *QUIET], run=False).model.state_dict().items()}
            trainer, model = fit(method, root)
            cache[method] = (trainer, model, init, root)
        return cache[method]

    return get


@pytest.mark.parametrize("method", METHODS)
def test_fit_runs_and_trains(method, fitted):
    trainer, model, init, root = fitted(method)
    assert trainer.global_step == trainer.max_steps > 0
    assert (root / "version_0" / "checkpoints" / "last.ckpt").exists()
    changed = [k for k, v in model.state_dict().items() if k in init and v.is_floating_point() and not torch.equal(v, init[k])]
    assert changed, "no weight moved during fit"


@pytest.mark.parametrize("method", METHODS)
def test_save_load_identical_outputs(method, fitted, tmp_path):
    _, model, _, _ = fitted(method)
    hub.save(model, tmp_path / "release")
    loaded = zoo.load(tmp_path / "release")
    assert not loaded.training
    model.eval()
    x = model.example_input_array
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_init_from_a_release_starts_from_its_weights(method, fitted, tmp_path):
    _, model, _, _ = fitted(method)
    hub.save(model, tmp_path / "release")
    cli = load_recipe(method).main(["validate", "--config", tiny(method), *QUIET, "--trainer.default_root_dir",
                                    str(tmp_path), "--model.init_from", str(tmp_path / "release")])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(cli.model.state_dict()[k].cpu(), v.cpu(), rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_load_lightning_checkpoint(method, fitted):
    _, model, _, root = fitted(method)
    loaded = zoo.load(root / "version_0" / "checkpoints" / "last.ckpt")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v.cpu(), rtol=0, atol=0)


def schedule_flag(method: str, steps: int) -> list[str]:
    """``--model.schedule_steps`` for a method whose schedules have a length, else nothing."""
    cls = load_recipe(method).main(["--config", tiny(method), *QUIET], run=False).model
    return ["--model.schedule_steps", str(steps)] if "schedule_steps" in cls.hparams else []


@pytest.mark.parametrize("method", METHODS)
def test_resume_equals_unbroken_run(method, tmp_path):
    # the tiny config runs 4 steps and checkpoints every 2: stop at 3, mid-schedule and between two
    # periodic checkpoints (fit's end writes last.ckpt), then resume to 4
    unbroken_trainer, unbroken = fit(method, tmp_path / "a")
    fit(method, tmp_path / "b", "--trainer.max_steps", "3", *schedule_flag(method, 4))
    ckpt = torch.load(tmp_path / "b" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3, "last.ckpt does not hold the last step"
    resumed_trainer, resumed = fit(method, tmp_path / "b", "--ckpt_path", "last")
    assert (resumed_trainer.global_step, resumed_trainer.current_epoch) == \
        (unbroken_trainer.global_step, unbroken_trainer.current_epoch)
    a, b = unbroken.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=f"{k} differs after resume")


def short_epochs(method: str, tmp_path: Path) -> list[str]:
    """Flags that cut the tiny config's epoch to a few steps (the methods that make their own data have 2 or 3)."""
    import pydoc_data.topics

    text = "\n".join(pydoc_data.topics.topics.values())
    if method in ("lm", "momentum_smoe"):
        (tmp_path / "text.txt").write_text(text[:2200])
        return ["--data.path", str(tmp_path / "text.txt")]
    if method == "nash_md":
        (tmp_path / "prompts.txt").write_text("\n".join([line for line in text.splitlines() if len(line.split()) > 3][:10]))
        return ["--data.path", str(tmp_path / "prompts.txt")]
    return {"npo": ["--data.forget_split", "forget01"], "preference": ["--data.limit_train_pairs", "8"]}.get(method, [])


@pytest.mark.parametrize("method", METHODS)
def test_resume_by_epochs_equals_unbroken_run(method, tmp_path):
    """A run bounded by max_epochs, stopped at an epoch's end (its last.ckpt written on that step, or when fit ends) or
    inside an epoch, then resumed: the same steps, the same epoch count and the same weights as an unbroken run."""
    data = short_epochs(method, tmp_path)
    epochs = ["--trainer.max_steps", "-1", "--trainer.max_epochs", "2", *schedule_flag(method, 100), *data]
    unbroken_trainer, unbroken = fit(method, tmp_path / "a", *epochs)
    n = unbroken_trainer.num_training_batches
    assert 2 <= n <= 4 and unbroken_trainer.global_step == 2 * n and unbroken_trainer.current_epoch == 2
    stops = {"epoch's end, on its last step": (n, ["--trainer.max_epochs", "1", "--checkpoint.every_n_train_steps", str(n)]),
             "epoch's end, when fit ends": (n, ["--trainer.max_epochs", "1", "--checkpoint.every_n_train_steps", "1000"]),
             "mid-epoch": (n + 1, ["--trainer.max_steps", str(n + 1), "--checkpoint.every_n_train_steps", "1000"])}
    for i, (where, (step, stop)) in enumerate(stops.items()):
        root = tmp_path / str(i)
        fit(method, root, *epochs, *stop)
        assert torch.load(root / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == step
        trainer, resumed = fit(method, root, *epochs, "--ckpt_path", "last")
        assert (trainer.global_step, trainer.current_epoch) == (2 * n, 2), f"resumed from the {where} stop"
        a, b = unbroken.state_dict(), resumed.state_dict()
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=f"{k} differs after resuming from the {where} stop")


@pytest.mark.parametrize("method", [m for m in METHODS if schedule_flag(m, 1)])
def test_a_resume_keeps_its_schedule_and_says_so(method, tmp_path, caplog):
    """Stopped at 2 with max_steps 2 (a schedule of 2 steps), resumed with max_steps 4: the schedule
    stays 2 steps long, as the checkpoint says, and the run says so; a new length is announced."""
    fit(method, tmp_path, "--trainer.max_steps", "2")
    caplog.clear()
    fit(method, tmp_path, "--trainer.max_steps", "4", "--ckpt_path", "last")
    assert "keeps its schedule of 2 steps" in caplog.text
    ckpt = torch.load(tmp_path / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["zoo_schedule_steps"] == 2 and ckpt["global_step"] == 4
    with pytest.warns(UserWarning, match="changes the schedule of the resumed run, which had 2 steps"):
        fit(method, tmp_path, "--trainer.max_steps", "5", "--ckpt_path", "last", *schedule_flag(method, 8))


@pytest.mark.parametrize("method", METHODS)
def test_ddp_two_processes_on_cpu_end_with_identical_weights(method, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    saver = json.dumps([{"class_path": "tests.core.rank_weights.SaveRankWeights",
                         "init_args": {"directory": str(tmp_path / "ranks")}}])
    cmd = [sys.executable, str(ROOT / "recipes" / f"{method}.py"), "fit", "--config", tiny(method), *QUIET,
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
           "--trainer.default_root_dir", str(tmp_path), "--trainer.callbacks", saver]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Starting with 2 processes" in out.stderr + out.stdout
    ckpt = torch.load(tmp_path / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] > 0
    rank0, rank1 = (torch.load(tmp_path / "ranks" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for k in rank0:
        torch.testing.assert_close(rank1[k], rank0[k], rtol=0, atol=0, msg=f"{k} differs between the ranks")


@pytest.mark.parametrize("method", METHODS)
def test_tiny_fit_in_bf16_mixed_on_cpu(method, tmp_path):
    trainer, model = fit(method, tmp_path, "--trainer.precision", "bf16-mixed")
    assert trainer.global_step == trainer.max_steps
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_fp16_with_hand_written_steps_is_refused():
    from types import SimpleNamespace

    from zoo.errors import UserError
    from zoo.module import ZooModule

    class HandSteps(ZooModule):
        scales_fp16_gradients = False

    model = HandSteps()
    model._trainer = SimpleNamespace(precision="16-mixed")
    with pytest.raises(UserError, match="16-mixed: HandSteps steps its optimisers outside Lightning's gradient scaler"):
        model.setup("fit")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("flag, expected", [(["--trainer.max_stepz", "3"], "max_stepz"),
                                            (["--trainer.max_steps", "three"], "max_steps"),
                                            (["--model.no_such_arg", "1"], "no_such_arg")])
def test_bad_flag_fails_clearly(method, flag, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        load_recipe(method).main(["fit", *flag])
    assert exit_.value.code not in (0, None)
    assert expected in capsys.readouterr().err
