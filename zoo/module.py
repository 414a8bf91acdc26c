"""ZooModule: the base LightningModule of every method in the zoo, and the contract it defines.

A method subclasses ZooModule; its typed ``__init__`` arguments are its hyperparameters (saved with
``self.save_hyperparameters()``, shown by ``--help``, written to every checkpoint and release). What
the base gives every method:

- ``init_from``: start training from a released checkpoint (an id of ``zoo.list_models()``, a release
  directory or a Lightning ``.ckpt``). Weights load strictly; a mismatch names the tensors and the
  hyperparameters that differ.
- random streams: ``self.generator`` is the method's own stream (trajectory sampling, exploration,
  mutation), seeded from the run's seed and the process rank. It and torch's global stream (which
  dropout draws from) are saved in every checkpoint, so ``fit --ckpt_path last`` continues both.
- schedules: ``self.schedule_steps()`` is the length K of the method's schedules (learning-rate
  decay, step sizes): ``--model.schedule_steps`` where the method has that hyperparameter, else the
  K stored in the checkpoint being resumed, else the trainer's ``max_steps``. It is stored in every
  checkpoint, so a run resumed with a larger ``max_steps`` keeps its schedule, and says so.
- one state: ``extra_state()`` is what the model is beyond its state dict (a tokenizer, a trajectory, a
  context), and ``load_extra_state`` takes it back. Every path carries it alike: a checkpoint keeps it
  under ``zoo_extra_state``; a release holds each group as ``<group>.safetensors`` or ``<group>.json``
  (zoo/files.py), listed by the manifest; ``load`` (``zoo.load`` of a release or a ``.ckpt``, and so
  ``python -m zoo export``), ``--model.init_from`` and ``--ckpt_path`` all go through
  ``load_model_state``. A ``tokenizer`` attribute (the language-model methods) is extra state by default.

What a method declares or overrides (all optional; the defaults are right for most methods):

- ``curve_metrics``: the metrics plotted in ``curve.png`` at the end of fit, headline first.
- ``code_hparams``: hyperparameters that name code to import (an environment's ``module:Class``).
  Building the model from a file (a release, a checkpoint) imports such code only where it is the
  zoo's own, unless the user passes it on the command line or says ``trust_code`` (zoo/trust.py).
- ``model_hparams``: hyperparameters that name a model to load (a base, a judge, a backbone). Such a name
  read from a file (a release, a checkpoint) loads offline only, at the revision the file records; the
  hub is reached only for a name the user typed (zoo/offline.py). The module keeps the marks in force
  when it was built (``_names_from_files``) for what it loads later, and its checkpoints record the
  revisions of the hub names it was built from (``zoo_revisions``).
- ``scales_fp16_gradients``: False where the method steps its optimisers by hand, outside Lightning's
  precision plugin, so that 16-mixed's gradient scaler would be bypassed; such a method refuses
  ``--trainer.precision 16-mixed`` (bf16-mixed needs no scaler and is fine).
- ``extra_state`` / ``load_extra_state``: the method's state beyond its weights (see above); call super.
- ``save_release`` / ``load_release``: how a release directory holds the weights (safetensors of the
  state dict by default; the LM methods write Hugging Face folders, which hold the tokenizer as well:
  ``release_weights_hold`` names the extra-state groups that such a format already holds).
- ``release_metrics``: measurements of the final model that a release card reports.
- ``progress``: how far the run is toward a bound of the method's own (Deep GA's environment-step
  budget), so that the progress bars' time left counts toward what will end the run.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from zoo import files, hub, offline
from zoo.errors import CheckpointError, UserError
from zoo.trust import check_code


class ZooModule(L.LightningModule):
    #: metrics plotted in the learning curve written next to the logs (``curve.png``), headline first
    curve_metrics: tuple[str, ...] = ()
    #: hyperparameters naming code to import; checked before a model is built from a file
    code_hparams: tuple[str, ...] = ()
    #: hyperparameters naming a model to load; offline only where the name comes from a file (zoo/offline.py)
    model_hparams: tuple[str, ...] = ()
    #: whether every optimiser step goes through Lightning's precision plugin (16-mixed's gradient scaler)
    scales_fp16_gradients: bool = True
    #: extra-state groups that the release's weights format already holds (a Hugging Face folder's tokenizer)
    release_weights_hold: tuple[str, ...] = ("tokenizer",)

    def __init__(self) -> None:
        super().__init__()
        self._generator: torch.Generator | None = None
        self._pending_rng_state: torch.Tensor | None = None
        self._initialised_from: str | None = None
        self._stored_schedule_steps: int | None = None
        self._schedule_steps: int | None = None
        self._names_from_files = offline.marked()  # for the models the method loads after it is built

    # -- starting a run ----------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        trainer = self._trainer
        if (stage == "fit" and not self.scales_fp16_gradients and trainer is not None
                and str(trainer.precision) in ("16-mixed", "16")):
            raise UserError(f"--trainer.precision {trainer.precision}: {type(self).__name__} steps its optimisers "
                            "outside Lightning's gradient scaler, so fp16 gradients would go unscaled; use "
                            "bf16-mixed (no scaler needed) or 32-true")
        init_from = self.hparams.get("init_from")
        if init_from and self._initialised_from != init_from:
            load_weights(self, init_from)
            self._initialised_from = init_from

    # -- logging ---------------------------------------------------------------------------

    def logging_step(self) -> bool:
        """Whether this training step's metrics reach the loggers (every ``log_every_n_steps``).

        ``self.log`` costs about a millisecond of Python per call; methods whose steps take a few
        milliseconds skip the calls on the steps no logger would record anyway."""
        trainer = self._trainer
        if trainer is None:  # called outside a Trainer: nothing would receive the values
            return False
        return (trainer.fit_loop.total_batch_idx + 1) % trainer.log_every_n_steps == 0

    def count_step(self) -> None:
        """Count this training step as an optimiser step, for a method that has no optimiser (a generation of
        a genetic algorithm, an iteration of exploration): Lightning's ``global_step``, which ``max_steps``,
        checkpoints and logging follow, counts optimiser steps only."""
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()

    # -- schedules ---------------------------------------------------------------------------

    def schedule_steps(self) -> int:
        """K, the training steps the method's schedules span (see the module docstring)."""
        if self._schedule_steps is not None:
            return self._schedule_steps
        explicit, stored = self.hparams.get("schedule_steps"), self._stored_schedule_steps
        max_steps = self._trainer.max_steps if self._trainer is not None else -1
        if explicit:
            if stored and stored != explicit:
                rank_zero_warn(f"--model.schedule_steps {explicit} changes the schedule of the resumed run, "
                               f"which had {stored} steps: from here on it follows the new length")
            K = int(explicit)
        elif stored:
            if max_steps > 0 and max_steps != stored:
                rank_zero_info(f"the resumed run keeps its schedule of {stored} steps (--trainer.max_steps is "
                               f"{max_steps}); --model.schedule_steps sets another length")
            K = stored
        elif max_steps > 0:
            K = max_steps
        else:
            raise UserError(f"{type(self).__name__}'s schedule needs its length: set --trainer.max_steps "
                            "or --model.schedule_steps")
        self._schedule_steps = K
        return K

    # -- the method's own random stream ------------------------------------------------------

    @property
    def generator(self) -> torch.Generator:
        device = self.device
        if self._generator is None or self._generator.device != device:
            g = torch.Generator(device=device)
            if self._pending_rng_state is not None:
                g.set_state(self._pending_rng_state)
                self._pending_rng_state = None
                if self.global_rank > 0:  # the checkpoint holds rank 0's stream: fork one per rank
                    g.manual_seed(int(torch.randint(2**62, (1,), generator=g, device=device)) + self.global_rank)
            else:
                g.manual_seed(torch.initial_seed() + 7919 * self.global_rank)
            self._generator = g
        return self._generator

    # -- what every checkpoint holds besides the weights --------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo_class_path"] = f"{type(self).__module__}.{type(self).__name__}"
        checkpoint["zoo_rng_state"] = self.generator.get_state()
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["cuda_rng_state"] = torch.cuda.get_rng_state()
        if self._schedule_steps is not None:
            checkpoint["zoo_schedule_steps"] = self._schedule_steps
        if offline.revisions(self):
            checkpoint["zoo_revisions"] = offline.revisions(self)
        checkpoint["zoo_extra_state"] = self.extra_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if isinstance(checkpoint.get("state_dict"), dict):  # a clear error, before Lightning's strict load fails
            mismatch = files.state_mismatch(self, checkpoint["state_dict"])
            if mismatch:
                diff = files.hparams_diff(checkpoint.get("hyper_parameters") or {}, dict(self.hparams), "checkpoint")
                raise CheckpointError(f"the checkpoint does not match the model ({mismatch}); "
                                      f"{diff or 'the model was built with other hyperparameters'}")
        if "zoo_rng_state" in checkpoint:
            self._pending_rng_state = checkpoint["zoo_rng_state"]
            self._generator = None
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
        if "cuda_rng_state" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state(checkpoint["cuda_rng_state"])
        if "zoo_schedule_steps" in checkpoint:
            self._stored_schedule_steps, self._schedule_steps = int(checkpoint["zoo_schedule_steps"]), None
        trainer = self._trainer
        where = str(trainer.ckpt_path) if trainer is not None and trainer.ckpt_path else "the checkpoint"
        self.load_extra_state(checkpoint_extra_state(checkpoint), where)

    # -- the model's whole state: its weights and its extra state -----------------------------------

    def extra_state(self) -> dict[str, Any]:
        """What the model is beyond its state dict, {group: value}: a value is a mapping of names to tensors
        (a release holds it as ``<group>.safetensors``) or anything JSON holds (``<group>.json``). A method
        with such state overrides this and ``load_extra_state``, calling super. By default: the tokenizer."""
        tokenizer = getattr(self, "tokenizer", None)
        return {"tokenizer": files.tokenizer_files(tokenizer)} if tokenizer is not None else {}

    def load_extra_state(self, state: dict[str, Any], source: str) -> None:
        """Take back what ``extra_state`` returned (any subset of its groups: an older file may lack one);
        ``source`` names the file, for errors."""
        if state.get("tokenizer") is not None and hasattr(self, "tokenizer"):
            self.tokenizer = files.tokenizer_from_files(state["tokenizer"], source)

    def load_model_state(self, weights: dict[str, torch.Tensor], extra: dict[str, Any], source: Path | str,
                         differing: str = "") -> None:
        """The model's whole state from a file: the weights, strictly, then the extra state."""
        files.load_state(self, weights, source, differing)
        self.load_extra_state(extra, str(source))

    # -- releases (zoo/hub.py calls these; override where a method stores its weights otherwise) ---

    def write_release(self, directory: Path) -> None:
        """The model's whole state into a release directory: the weights (``save_release``), then each group of
        the extra state that the weights' format does not already hold, as one file (zoo/files.py)."""
        self.save_release(directory)
        extra = {k: v for k, v in self.extra_state().items() if k not in self.release_weights_hold}
        clash = [name for name in (files.extra_state_file(k, v) for k, v in extra.items()) if (Path(directory) / name).exists()]
        if clash:
            raise ValueError(f"{type(self).__name__}: the extra state's file {clash[0]} is written by save_release as well")
        files.write_extra_state(extra, Path(directory))

    @classmethod
    def read_release(cls, directory: Path, init_args: dict[str, Any]) -> "ZooModule":
        """The model of a (verified) release directory: built and given its weights by ``load_release``, then its
        extra state from the groups' files."""
        model = cls.load_release(directory, init_args)
        groups = [k for k in model.extra_state() if k not in model.release_weights_hold]
        for group, value in files.read_extra_state(Path(directory), groups).items():  # errors name the group's file
            model.load_extra_state({group: value}, str(Path(directory) / files.extra_state_file(group, value)))
        return model

    def save_release(self, directory: Path) -> None:
        """Write the weights into a release directory: ``model.safetensors`` of the state dict."""
        files.write_safetensors(self.state_dict(), Path(directory) / files.WEIGHTS)

    @classmethod
    def load_release(cls, directory: Path, init_args: dict[str, Any]) -> "ZooModule":
        """The module of a (verified) release directory, built from its hyperparameters, with its weights."""
        model = cls(**{k: v for k, v in init_args.items() if k != "init_from"})
        weights = Path(directory) / files.WEIGHTS
        files.load_state(model, files.read_weights(weights), weights)
        return model

    def release_metrics(self) -> dict[str, float]:
        """Measurements of the final model for a release card, beyond the logged metrics (none by default)."""
        return {}

    def progress(self) -> float | None:
        """How far the run is toward a bound of the method's own (an environment-step budget), in [0, 1]; None
        where only the trainer's ``max_steps`` bounds it. The progress bars count toward the nearer bound."""
        return None


def checkpoint_extra_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The extra state a checkpoint keeps (``zoo_extra_state``; a checkpoint written before it kept the
    tokenizer alone, under ``zoo_tokenizer``)."""
    extra = dict(checkpoint.get("zoo_extra_state") or {})
    if "zoo_tokenizer" in checkpoint:
        extra.setdefault("tokenizer", checkpoint["zoo_tokenizer"])
    return extra


# -- building a model from a release or a checkpoint: zoo.load, --model.init_from ----------------------

def import_class(class_path: Any, source: Path | str) -> type[ZooModule]:
    """The ZooModule class named by ``class_path``; nothing outside the zoo package is imported."""
    if not isinstance(class_path, str) or not class_path.startswith("zoo."):
        raise CheckpointError(f"{source}: class_path {class_path!r} is outside the zoo package: refusing to import it")
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise CheckpointError(f"{source}: class_path {class_path!r} does not exist ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, ZooModule)):
        raise CheckpointError(f"{source}: class_path {class_path!r} is not a zoo model (a ZooModule): refusing it")
    return cls


def release_hparams(id_or_path: str | Path) -> tuple[type[ZooModule], dict[str, Any], Path]:
    """(class, init_args, the file they come from) of a release or checkpoint, verified, without building it."""
    class_path, init_args, source = hub.release_spec(id_or_path)
    return import_class(class_path, source), init_args, source


def load(id_or_path: str | Path, map_location: str | torch.device = "cpu", trust_code: bool = False) -> ZooModule:
    """The released (or saved) model, with its whole state, in eval mode.

    ``id_or_path``: an id from ``zoo.list_models()``, a release directory, or a Lightning ``.ckpt``
    written by a ``fit`` run of a zoo recipe. ``trust_code``: allow hyperparameters that name code
    outside the zoo (a user environment) to be imported; only for files whose origin you trust.
    """
    cls, init_args, source = release_hparams(id_or_path)
    check_code(cls, init_args, source, trust_code)
    init_args.pop("init_from", None)
    if source.suffix != ".ckpt":
        with offline.from_file(cls, init_args, source):  # models the file names load offline only
            return cls.read_release(source.parent, init_args).to(map_location).eval()
    ckpt = hub.read_checkpoint(source)
    with offline.from_file(cls, init_args, source, ckpt.get("zoo_revisions") or {}):
        model = cls(**init_args)
    model.load_model_state(ckpt["state_dict"], checkpoint_extra_state(ckpt), source)
    return model.to(map_location).eval()


def load_weights(module: ZooModule, id_or_path: str | Path, trust_code: bool = False) -> None:
    """Load a release's (or checkpoint's) whole state into ``module``, of the same class (fine-tuning);
    a mismatch of method or size names the release and what differs."""
    cls, init_args, source = release_hparams(id_or_path)
    if cls is not type(module):
        raise CheckpointError(f"{id_or_path}: a release of {cls.__module__}.{cls.__name__}, but this run trains "
                              f"{type(module).__module__}.{type(module).__name__}; init_from takes a release of the same method")
    own = {k: v for k, v in dict(module.hparams).items() if not k.startswith("_") and k != "init_from"}
    check_code(cls, init_args, source, trust_code, given=own)
    init_args.pop("init_from", None)
    differing = files.hparams_diff(init_args, own)
    if source.suffix == ".ckpt":
        ckpt = hub.read_checkpoint(source)
        weights, extra = ckpt["state_dict"], checkpoint_extra_state(ckpt)
    else:  # the module's own names keep the marks they were built under; the file's new ones load offline
        args = {**init_args, **{k: own[k] for k in own if k not in init_args}}
        with offline.marking(getattr(module, "_names_from_files", {})), \
                offline.from_file(cls, init_args, source, given=own):
            released = cls.read_release(source.parent, args)
        weights, extra = released.state_dict(), released.extra_state()
    module.load_model_state(weights, extra, id_or_path, differing)


class Steps:
    """The "data" of a method that makes its own (trajectories, rollouts, generations): ``n`` step
    indices per epoch. It saves its position, so a run resumed mid-epoch ends its epoch where an
    unbroken run would, and a run resumed from its epoch's last step starts the next epoch whole."""

    def __init__(self, n: int) -> None:
        self.n, self.next_index, self._resume_at = n, 0, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        start, self._resume_at = self._resume_at, 0
        if start >= self.n:
            # saved on the epoch's last step: Lightning's fit loop counts that epoch as done and asks for the
            # next one, which starts at 0 (as zoo.lm.data.Batches and the zoo's other loaders do)
            start = 0
        for i in range(start, self.n):
            self.next_index = i + 1  # Lightning does not prefetch from a loader of known length
            yield i

    def state_dict(self) -> dict[str, int]:
        return {"next_index": self.next_index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = state["next_index"]
