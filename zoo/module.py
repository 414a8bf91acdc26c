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
- a ``tokenizer`` attribute (the language-model methods) is kept in every checkpoint, so that a run's
  ``last.ckpt`` exports to a complete release.

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
- ``save_release`` / ``load_release``: how a release directory holds the weights (safetensors of the
  state dict by default; the LM methods write Hugging Face folders).
- ``release_metrics``: measurements of the final model that a release card reports.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from zoo import offline
from zoo.errors import CheckpointError, UserError


class ZooModule(L.LightningModule):
    #: metrics plotted in the learning curve written next to the logs (``curve.png``), headline first
    curve_metrics: tuple[str, ...] = ()
    #: hyperparameters naming code to import; checked before a model is built from a file
    code_hparams: tuple[str, ...] = ()
    #: hyperparameters naming a model to load; offline only where the name comes from a file (zoo/offline.py)
    model_hparams: tuple[str, ...] = ()
    #: whether every optimiser step goes through Lightning's precision plugin (16-mixed's gradient scaler)
    scales_fp16_gradients: bool = True

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
            from zoo import hub

            hub.load_weights(self, init_from)
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
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is not None:
            from zoo.lm.tokenizer import tokenizer_files

            checkpoint["zoo_tokenizer"] = tokenizer_files(tokenizer)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if isinstance(checkpoint.get("state_dict"), dict):  # a clear error, before Lightning's strict load fails
            from zoo import hub

            mismatch = hub.state_mismatch(self, checkpoint["state_dict"])
            if mismatch:
                diff = hub.hparams_diff(checkpoint.get("hyper_parameters") or {}, dict(self.hparams), "checkpoint")
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
        if "zoo_tokenizer" in checkpoint and hasattr(self, "tokenizer"):
            from zoo.lm.tokenizer import tokenizer_from_files

            self.tokenizer = tokenizer_from_files(checkpoint["zoo_tokenizer"])

    # -- releases (zoo/hub.py calls these; override where a method stores its weights otherwise) ---

    def save_release(self, directory: Path) -> None:
        """Write the weights into a release directory: ``model.safetensors`` of the state dict."""
        from zoo import hub

        hub.write_safetensors(self.state_dict(), Path(directory) / hub.WEIGHTS)

    @classmethod
    def load_release(cls, directory: Path, init_args: dict[str, Any]) -> "ZooModule":
        """The module of a (verified) release directory, built from its hyperparameters."""
        from zoo import hub

        model = cls(**{k: v for k, v in init_args.items() if k != "init_from"})
        weights = Path(directory) / hub.WEIGHTS
        hub.load_state(model, hub.read_weights(weights), weights)
        return model

    def release_metrics(self) -> dict[str, float]:
        """Measurements of the final model for a release card, beyond the logged metrics (none by default)."""
        return {}


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
