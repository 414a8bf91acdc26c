"""What a run shows while it runs: progress toward what will end it, evaluation progress, one final line,
the method's headline in the plain line, log files of whole lines, and a first screen without warnings."""
import io
import math
import os
import re
import subprocess
import sys
import types

import lightning as L
import pytest
import yaml
from lightning.pytorch.demos.boring_classes import BoringModel

from zoo import runs
from zoo.runs import PlainProgress

from ..conftest import ROOT, load_recipe


class Clock:
    """time.monotonic for zoo.runs that a test moves by hand: one second per training step."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(runs, "time", types.SimpleNamespace(monotonic=c.monotonic))
    return c


class Budgeted(BoringModel):
    """Ten environment steps per training step, a budget of 100: the budget ends the run, long before max_steps."""

    curve_metrics = ("train/best_score", "train/cells", "val/success", "train/start")

    def __init__(self, clock=None, budget: int = 100) -> None:
        super().__init__()
        self.clock, self.budget, self.env_steps = clock, budget, 0

    def progress(self) -> float:
        return self.env_steps / self.budget

    def training_step(self, batch, batch_idx):
        if self.clock is not None:
            self.clock.now += 1.0
        self.env_steps += 10
        out = super().training_step(batch, batch_idx)
        # Go-Explore's metrics: phase 1 logs the curve's first, phase 2 (from step 3 here) its fourth
        self.log("train/best_score" if self.global_step < 3 else "train/start", float(self.global_step))
        if self.env_steps >= self.budget:
            self.trainer.should_stop = True
        return out


def trainer(progress, **kwargs):
    kwargs = {"max_steps": 1000, "logger": False, "enable_checkpointing": False, "enable_model_summary": False,
              "limit_val_batches": 0, "callbacks": [progress], **kwargs}
    return L.Trainer(accelerator="cpu", devices=1, **kwargs)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_time_left_counts_toward_the_method_s_own_budget(clock):
    out = io.StringIO()
    trainer(PlainProgress(every=0.5, stream=out)).fit(Budgeted(clock))
    at_5 = next(line for line in lines(out) if line.startswith("step 5/1000 "))
    # 5 s for half the budget: 5 s left (counted from max_steps it would be 995 s)
    assert "50%" in at_5 and at_5.endswith("0:00:05 left"), at_5


def test_the_plain_line_shows_the_headline_the_run_logs(clock):
    """Each phase's own metrics: phase 1's stop showing once an epoch (4 steps) has passed without them."""
    out = io.StringIO()
    trainer(PlainProgress(every=0.5, stream=out), limit_train_batches=4).fit(Budgeted(clock))
    by_step = {int(line.split()[1].split("/")[0]): line for line in lines(out)}
    assert "train/best_score " in by_step[1] and "train/start" not in by_step[1], by_step[1]
    for step in range(9, 11):
        assert "train/start " in by_step[step] and "train/best_score" not in by_step[step], by_step[step]


def test_the_final_line_is_printed_once(clock):
    """Validation at the last step comes after its batch's end and before fit's end: one line, after it."""
    out = io.StringIO()
    trainer(PlainProgress(every=0, stream=out), limit_val_batches=2, val_check_interval=10).fit(Budgeted(clock))
    finals = [line for line in lines(out) if line.startswith("step 10/")]
    assert len(finals) == 1 and lines(out)[-1] == finals[0], lines(out)


def test_the_final_line_of_a_run_bounded_by_epochs_is_printed_once(clock):
    out = io.StringIO()
    trainer(PlainProgress(every=0, stream=out), max_steps=-1, max_epochs=2, limit_train_batches=3, limit_val_batches=1,
            num_sanity_val_steps=1).fit(Budgeted(clock, budget=1000))
    assert [line.split(" · ")[0] for line in lines(out)] == [
        "sanity check 1/1 batches", "step 1", "step 2", "step 3", "validating 1/1 batches", "step 4", "step 5",
        "validating 1/1 batches", "step 6"], lines(out)


@pytest.mark.parametrize("stage", ["test", "validate", "predict"])
def test_evaluation_prints_batches_done_of_the_total(stage):
    out = io.StringIO()
    t = trainer(PlainProgress(every=0, stream=out), **{f"limit_{'val' if stage == 'validate' else stage}_batches": 3})
    getattr(t, stage)(BoringModel(), verbose=False) if stage != "predict" else t.predict(BoringModel())
    word = {"test": "testing", "validate": "validating", "predict": "predicting"}[stage]
    assert [line.split(" · ")[0] for line in lines(out)] == [f"{word} {i}/3 batches" for i in (1, 2, 3)], lines(out)


# -- Deep GA: its budgets end the run, and its progress counts toward them -----------------------

DEEP_GA_TINY = str(ROOT / "recipes" / "configs" / "deep_ga" / "tiny.yaml")


def deep_ga(root, *args):
    return load_recipe("deep_ga").main(["fit", "--config", DEEP_GA_TINY, "--trainer.default_root_dir", str(root),
                                        "--trainer.logger", "false", *args]).model


def test_deep_ga_progress_is_its_share_of_the_env_step_budget():
    from zoo.deep_ga import DeepGA

    model = DeepGA(env="zoo/HardMaze-v0", env_kwargs={"steps": 30}, hidden_sizes=[8], max_env_steps=1000)
    model.env_steps = 250
    assert model.progress() == 0.25
    assert DeepGA(env="zoo/HardMaze-v0", env_kwargs={"steps": 30}, hidden_sizes=[8]).progress() is None


def test_deep_ga_checks_its_target_every_generation(tmp_path):
    """Validation comes every steps_per_epoch generations (3 here, and never with limit_val_batches 0); the target
    is checked after every generation all the same."""
    model = deep_ga(tmp_path, "--trainer.max_steps", "6", "--model.target_return=-1e9")
    assert model.generation == 1


def test_deep_ga_generation_that_crosses_the_env_step_budget_is_the_last(tmp_path):
    model = deep_ga(tmp_path, "--trainer.max_steps", "20", "--model.max_env_steps", "500")
    per_generation = model.env_steps / model.generation
    assert model.env_steps >= 500 and model.env_steps - per_generation < 500, (model.env_steps, model.generation)


# -- log files of whole lines, and a first screen without warnings ------------------------------

def run(args, tmp_path, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, timeout=timeout)
    # bytes, decoded here: text mode would turn a bar's carriage returns into line ends
    out.stdout, out.stderr = out.stdout.decode(), out.stderr.decode()
    assert out.returncode == 0, out.stderr[-3000:]
    return out


WARNING = re.compile(r"Warning|\.py:\d+: ")  # Python's warnings, and Lightning's (path.py:line: message)


def test_loading_the_zoo_s_language_models_writes_no_bar_and_no_warning(tmp_path):
    """A CPT release wraps tiny-lm with PEFT; a preference model loads tiny-lm's transformer: no "Loading weights"
    bar, no carriage return, no FutureWarning."""
    out = run(["-c", "import zoo; zoo.load('cpt-tiny-sst2'); zoo.load('tiny-lm'); zoo.load('pref-tiny')"], tmp_path)
    assert "\r" not in out.stderr and not WARNING.search(out.stderr), out.stderr


def test_the_gguf_dequantisation_bar_stays_out_of_log_files():
    import transformers.modeling_gguf_pytorch_utils as gguf

    from zoo.lm.helpers import quiet_loading

    shown, log = io.StringIO(), io.StringIO()
    for _ in gguf.tqdm(range(3), file=shown):
        pass
    with quiet_loading():
        for _ in gguf.tqdm(range(3), file=log):  # a file is not a terminal
            pass
    assert "\r" in shown.getvalue() and log.getvalue() == ""


SLOW = pytest.mark.slow  # half a minute each on a busy CPU
DEFAULTS = ["cpt", "npo", "preference", *(pytest.param(m, marks=SLOW) for m in (
    "deep_ga", "go_explore", "lm", "mdpo", "momentum_smoe", "nash_md", "op_gfn", "paretognn"))]


@pytest.mark.parametrize("method", DEFAULTS)
def test_the_default_config_starts_without_warnings(method, tmp_path):
    out = run([str(ROOT / "recipes" / f"{method}.py"), "fit", "--trainer.max_steps", "1", "--trainer.limit_val_batches",
               "1", "--trainer.default_root_dir", str(tmp_path)], tmp_path)
    warnings = [line for line in out.stderr.splitlines() if WARNING.search(line)]
    assert not warnings, warnings
    assert "\r" not in out.stderr


def test_cpt_configs_log_within_an_epoch():
    """An epoch of CPT is the k context examples in batches: a logging interval longer than that is never reached
    (Lightning warns at the start). Checked for every shipped config, the GGUF ones included."""
    for path in sorted((ROOT / "recipes" / "configs" / "cpt").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        data, trainer = config.get("data") or {}, config.get("trainer") or {}
        k = data.get("k", 16) or 8  # k: null draws 8 examples (from a release, its k)
        batches = math.ceil(k / data.get("batch_size", 4))  # the data module's defaults
        assert trainer.get("log_every_n_steps", 50) <= batches, (path.name, batches)


# -- zoo.list_models in a pipe --------------------------------------------------------------------

def test_list_models_in_an_80_column_pipe_is_a_line_per_release(capsys, monkeypatch):
    import zoo

    monkeypatch.setenv("COLUMNS", "80")
    rows = zoo.list_models()
    out = capsys.readouterr().out.splitlines()
    assert len(rows) > 10 and all(len(line) <= 80 for line in out), out
    assert len(out) <= len(rows) + 2, len(out)  # a title and a header at most
    for row in rows:  # each release on its own line: id, method, headline
        line = next(line for line in out if line.split()[:1] == [row["id"]])
        assert row["method"] in line and row["headline"]["name"] in line, line


def rich_bar(out: io.StringIO):
    from zoo.runs import StepsProgressBar

    return StepsProgressBar(console_kwargs={"file": out, "force_terminal": True, "width": 120})


def test_the_rich_bar_says_how_far_the_run_is_toward_its_budget():
    out = io.StringIO()
    trainer(rich_bar(out), limit_train_batches=4).fit(Budgeted())
    assert "40% of the run" in out.getvalue()  # the second epoch begins after 4 of the budget's 10 steps


def test_the_rich_bar_shows_evaluation():
    out = io.StringIO()
    trainer(rich_bar(out), limit_test_batches=3).test(BoringModel(), verbose=False)
    assert "Testing" in out.getvalue() and "3/3" in out.getvalue()
