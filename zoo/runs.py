"""What keeps a run safe and visible: its checkpoints, its interruption, its progress.

- ``AtomicCheckpointIO``: every checkpoint is written to a temporary file in its own folder, flushed
  to disk and renamed over the old one, so a kill at any moment leaves the previous checkpoint whole;
  every checkpoint is read with ``torch.load(weights_only=True)``, and only from a local file.
- ``RunCheckpoint``: Lightning's ModelCheckpoint that also writes ``last.ckpt`` when fit ends, so the
  last checkpoint always holds the last step, and a run resumed from it, bounded by steps or by epochs,
  takes the steps, counts the epochs and sees the batches an unbroken run would.
- ``SaveOnInterrupt``: the first Ctrl-C lets the current step finish, then ends fit (which saves
  ``last.ckpt``, from which ``--ckpt_path last`` resumes exactly); a second one quits at once.
- ``latest_checkpoint``: which ``last.ckpt`` ``--ckpt_path last`` means: the latest run's that is not
  still training. Each run keeps its checkpoints in its own ``version_N/checkpoints/``.
- ``RunFolder``: a run's ``version_N/``, locked while fit runs; a run refused before its first step
  removes what it wrote there.
- ``StepsProgressBar`` (a terminal) and ``PlainProgress`` (a file or a pipe): progress either way.
"""
from __future__ import annotations

import math
import os
import re
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no run locks
    fcntl = None

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.utilities import rank_zero_info

from zoo.errors import CheckpointError, UserError
from zoo.files import umask

REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.chmod(tmp, 0o666 & ~umask())  # mkstemp's 0600, made what open() and Lightning's own writer give
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        try:  # the rename itself reaches the disk
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if REMOTE.match(str(path)):
            raise CheckpointError(f"--ckpt_path {path}: only local files are read; download it, check where it "
                                  "came from, and pass the local path")
        if not Path(path).is_file():
            raise CheckpointError(f"--ckpt_path {path}: no such file")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - truncated, not a zip, pickled objects: the user's file
            raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose ``last.ckpt`` is also written when fit ends (and on Ctrl-C, which ends fit), holding
    the loops' progress as Lightning resumes it like an unbroken run (see ``_resumable_progress``); a run resumed
    from any checkpoint gives its data loaders their saved positions."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        fit_loop = trainer.fit_loop
        states = fit_loop._combined_loader_states_to_load
        if states and fit_loop._combined_loader is not None:
            # Lightning gives the loaders their saved positions only when the checkpoint's epoch is unfinished; a
            # loader that numbers its epochs (its shuffle) would otherwise begin again at epoch 0 after a checkpoint
            # taken at an epoch's end. Its first batch is drawn after this hook, and a saved position at the end of
            # an epoch makes it begin the next one.
            fit_loop._combined_loader._load_state_dicts(states)
            fit_loop._combined_loader_states_to_load = []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step and not trainer.sanity_checking:
            with _resumable_progress(trainer):
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


@contextmanager
def _resumable_progress(trainer: L.Trainer):
    """While fit's end saves: the loops' progress as a checkpoint written during the epoch would hold it.

    Lightning's restore reads checkpoints written during an epoch (at a batch's end, at validation's end); by
    fit's end its fit loop has closed the epoch it stopped in. Stopped inside an epoch (``max_steps``, Ctrl-C),
    that epoch is recorded as still running, so that a resumed run finishes it (under ``max_epochs``) and
    counts epochs as an unbroken run does. Stopped at an epoch's end, the epoch's batch counters are recorded
    reset, as the next epoch begins with them, which a resumed run bounded by ``max_steps`` would otherwise
    take for the next epoch's and so end that epoch at once."""
    fit_loop = trainer.fit_loop
    epoch_loop, epochs = fit_loop.epoch_loop, fit_loop.epoch_progress
    batches = epoch_loop.batch_progress
    per_epoch = (batches, epoch_loop.scheduler_progress, epoch_loop.automatic_optimization.optim_progress)
    progress = (epochs, *per_epoch, epoch_loop.val_loop.batch_progress)
    saved = [p.state_dict() for p in progress]
    now = epochs.current
    closed = now.ready == now.started == now.processed == now.completed > 0
    if closed and batches.current.ready > 0:
        if epoch_loop._num_ready_batches_reached():  # at the epoch's end
            for p in per_epoch:
                p.reset_on_run()
            epoch_loop.val_loop.batch_progress.total.reset()
        else:  # inside the epoch
            for p in (epochs.current, epochs.total):
                p.processed, p.completed = p.processed - 1, p.completed - 1
    try:
        yield
    finally:
        for p, state in zip(progress, saved):
            p.load_state_dict(state)


class SaveOnInterrupt(L.Callback):
    """The first SIGINT (Ctrl-C) ends fit after the current step; fit's end writes last.ckpt."""

    def __init__(self) -> None:
        self.interrupted = False
        self.previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.interrupted:  # the second Ctrl-C: quit now
            signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)
            raise KeyboardInterrupt
        self.interrupted = True
        print("\ninterrupted: finishing this step and saving last.ckpt (Ctrl-C again to quit at once)",
              file=sys.stderr, flush=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.interrupted = False
        try:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self.previous = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        stop = self.interrupted
        if trainer.world_size > 1:  # a Ctrl-C seen by any process stops all of them at the same step
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop and not trainer.should_stop:
            trainer.should_stop = True
            rank_zero_info(f"stopping at step {trainer.global_step}: resume with --ckpt_path last")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.previous is not None:
            try:
                signal.signal(signal.SIGINT, self.previous)
            except ValueError:
                pass
            self.previous = None


def run_checkpoints(root: str | Path) -> list[Path]:
    """The ``last.ckpt`` of every run under ``root``, latest (the highest ``version_N``) first."""
    found = []
    for ckpt in Path(root).glob("version_*/checkpoints/last.ckpt"):
        m = re.fullmatch(r"version_(\d+)", ckpt.parent.parent.name)
        if m:
            found.append((int(m.group(1)), ckpt))
    return [ckpt for _, ckpt in sorted(found, reverse=True)]


def latest_checkpoint(root: str | Path) -> Path | None:
    """The ``last.ckpt`` of the latest run under ``root`` that is not still training."""
    return next((ckpt for ckpt in run_checkpoints(root) if not is_live(run_folder_of(ckpt))), None)


# -- a run's own folder ---------------------------------------------------------------------------

LOCK = ".lock"
#: what a run writes in its folder before its first step (its config, the loggers' files, its lock)
RUN_FILES = ("config.yaml", "hparams.yaml", "metrics.csv", LOCK)


def run_folder_of(ckpt: str | Path) -> Path:
    """The run folder a checkpoint belongs to: ``version_N`` of ``version_N/checkpoints/x.ckpt``."""
    ckpt = Path(ckpt)
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def is_live(folder: str | Path) -> bool:
    """Whether a run is still training in ``folder``: a live run holds a lock on ``folder/.lock``, which the
    system drops when the process ends however it ends (a SIGKILLed run counts as stopped)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # and with it the lock just taken
    return False


class RunFolder(L.Callback):
    """The run's own folder (``version_N/``: its config, logs and checkpoints).

    - While fit runs, rank 0 holds a lock on ``version_N/.lock``: ``--ckpt_path last`` passes over a run
      still training, and a checkpoint of one given by path is refused.
    - A run refused before its first step (a bad data path, a setting the method refuses) removes the files
      it wrote there, and the folder if that empties it; nothing else.
    - A resumed run says which checkpoint it resumes, and at which step."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.created = False  # whether this run makes the folder (it did not exist when the trainer was built)
        self.started = False
        self._fd: int | None = None

    def claim(self, folder: str | Path) -> None:
        """Called once the trainer is built, before it writes anything."""
        self.folder = Path(folder)
        self.created = not self.folder.exists()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero or not self.created or fcntl is None or self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self.created = False  # another run's folder: nothing here is this run's to remove
            raise UserError(f"{self.folder}: another run started in the same folder at the same moment and holds it; "
                            "start this one again") from None
        self._fd = fd

    def _start(self, trainer: L.Trainer, *args: Any) -> None:
        self.started = True

    on_sanity_check_start = on_validation_start = on_test_start = on_predict_start = _start

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = True
        if trainer.ckpt_path:
            rank_zero_info(f"resuming {trainer.ckpt_path} at step {trainer.global_step}")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.release()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.release()

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Remove what this run wrote in its folder, if it was refused before its first step."""
        folder, held = self.folder, self._fd is not None
        self.release()
        if self.started or not self.created or folder is None or not folder.is_dir():
            return
        if not held and is_live(folder):  # another run's
            return
        for name in RUN_FILES:
            (folder / name).unlink(missing_ok=True)
        for events in folder.glob(f"events.out.tfevents.*.{os.getpid()}.*"):  # TensorBoard's, named by this process
            events.unlink(missing_ok=True)
        for empty in (folder / "checkpoints", folder):
            try:
                empty.rmdir()  # only if nothing else is there
            except OSError:
                pass


# -- progress ------------------------------------------------------------------------------------

def _without_version(items: dict[str, Any]) -> dict[str, Any]:
    items.pop("v_num", None)
    return items


def run_fraction(trainer: L.Trainer, pl_module: L.LightningModule) -> float | None:
    """How far the run is toward what will end it, in [0, 1]; None when nothing bounds it.

    The larger of the trainer's share (``global_step / max_steps``) and the method's own, where the method
    says how far it is toward a bound of its own (an environment-step budget): ``progress()``, a fraction."""
    shares = []
    if trainer.max_steps is not None and trainer.max_steps > 0:
        shares.append(trainer.global_step / trainer.max_steps)
    own = getattr(pl_module, "progress", None)
    if callable(own):
        share = own()
        if share is not None:
            shares.append(float(share))
    return min(max(shares), 1.0) if shares else None


def _not_logged_this_epoch(trainer: L.Trainer) -> set[str]:
    """The training metrics logged in an earlier epoch and not since this one began."""
    try:
        results = trainer.fit_loop.epoch_loop._results
        return {metric.meta.name for metric in results.values() if metric.has_reset}
    except AttributeError:  # another Lightning: every metric counts as current
        return set()


def _ends_fit(trainer: L.Trainer) -> bool:
    """Whether the training step just done is fit's last (a stop, max_steps, the last epoch's last batch)."""
    if trainer.should_stop or 0 < trainer.max_steps <= trainer.global_step:
        return True
    epochs = trainer.max_epochs
    return (epochs is not None and epochs >= 0 and trainer.current_epoch + 1 >= epochs
            and trainer.fit_loop.epoch_loop.batch_progress.current.ready >= trainer.num_training_batches)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StepsProgressBar(RichProgressBar):
    """The rich bar; a run bounded by steps says so instead of "Epoch 3/-2", and how far the whole run is;
    no logger version number. Validation, test and predict have their own bars (Lightning's)."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs < 0 and trainer.max_steps > 0:
            description = f"Epoch {current_epoch} (of max_steps={trainer.max_steps})"
        else:
            description = super()._get_train_description(current_epoch)
        fraction = run_fraction(trainer, trainer.lightning_module) if trainer.lightning_module is not None else None
        return description if fraction is None else f"{description} · {fraction:.0%} of the run"

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return _without_version(super().get_metrics(trainer, pl_module))


class PlainProgress(ProgressBar):
    """Progress for a log file or a pipe: one line every ``every`` seconds, and one at the end of fit —
    the step, the headline metrics, steps per second, and the time left toward what will end the run
    (``run_fraction``: max_steps, or the method's own budget). Validation, test and predict print a line
    every ``every`` seconds too, with the batches done of the total."""

    def __init__(self, every: float = 30.0, stream: Any = None) -> None:
        super().__init__()
        self.every, self.stream = every, stream
        self._enabled = True
        self._start = self._last = 0.0
        self._first_step = 0
        self._first_fraction: float | None = None
        self._printed: tuple[int, tuple[str, ...]] | None = None  # (step, metrics) of the last training line
        self._eval_start = self._eval_last = 0.0
        self._stale: set[str] = set()  # as of the last training step: fit's end has closed the epoch

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._first_step = trainer.global_step
        self._first_fraction = run_fraction(trainer, pl_module)
        self._printed, self._stale = None, set()

    def headline(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[str]:
        """Up to two metrics: the first of the method's ``curve_metrics`` (else the loss) that the run logs. A
        training metric not logged since the epoch began (a phase that has ended: Go-Explore's exploration
        once it robustifies) gives way to those that are."""
        metrics = {**trainer.callback_metrics, **self.get_metrics(trainer, pl_module)}
        shown = []
        for key in (*getattr(pl_module, "curve_metrics", ()), "loss", "train/loss"):
            try:
                shown.append((key, float(metrics[key])))
            except (KeyError, TypeError, ValueError):
                continue
        shown = [kv for kv in shown if kv[0] not in self._stale] or shown
        return [f"{key} {value:.4g}" for key, value in shown[:2]]

    def line(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        step, total = trainer.global_step, trainer.max_steps
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = (step - self._first_step) / elapsed
        parts = [f"step {step}" + (f"/{total}" if total and total > 0 else "")]
        parts += self.headline(trainer, pl_module)
        parts.append(f"{rate:.2f} steps/s")
        fraction, first = run_fraction(trainer, pl_module), self._first_fraction
        if fraction is not None:
            parts.append(f"{fraction:.0%}")
            if first is not None and fraction > first:
                parts.append(f"{_clock(elapsed * (1 - fraction) / (fraction - first))} left")
        return " · ".join(parts)

    def _train_line(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = time.monotonic()
        self._printed = (trainer.global_step, tuple(self.headline(trainer, pl_module)))
        self._print(self.line(trainer, pl_module))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._stale = _not_logged_this_epoch(trainer)
        now = time.monotonic()
        if self._enabled and trainer.is_global_zero and now - self._last >= self.every and not _ends_fit(trainer):
            self._train_line(trainer, pl_module)  # fit's last step is fit's end's line, after its validation

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        if self._printed != (trainer.global_step, tuple(self.headline(trainer, pl_module))):
            self._train_line(trainer, pl_module)

    # -- validation, test, predict: batches done of the total ---------------------------------------

    def _eval_start_now(self, *args: Any) -> None:
        self._eval_start = self._eval_last = time.monotonic()

    on_validation_start = on_test_start = on_predict_start = _eval_start_now

    def _eval_line(self, trainer: L.Trainer, what: str, done: int, total: Any) -> None:
        now = time.monotonic()
        if not (self._enabled and trainer.is_global_zero and now - self._eval_last >= self.every):
            return
        self._eval_last = now
        known = isinstance(total, int) or (isinstance(total, float) and math.isfinite(total))
        parts = [f"{what} {done}" + (f"/{int(total)} batches" if known else " batches")]
        elapsed = max(now - self._eval_start, 1e-9)
        parts.append(f"{done / elapsed:.2f} batches/s")
        if known and done > 0:
            parts.append(f"{_clock(elapsed * (int(total) - done) / done)} left")
        self._print(" · ".join(parts))

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self.has_dataloader_changed(dataloader_idx)  # which loader's total the counts are of
        what = "sanity check" if trainer.sanity_checking else "validating"
        self._eval_line(trainer, what, batch_idx + 1, self.total_val_batches_current_dataloader)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self.has_dataloader_changed(dataloader_idx)
        self._eval_line(trainer, "testing", batch_idx + 1, self.total_test_batches_current_dataloader)

    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self.has_dataloader_changed(dataloader_idx)
        self._eval_line(trainer, "predicting", batch_idx + 1, self.total_predict_batches_current_dataloader)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return _without_version(super().get_metrics(trainer, pl_module))
