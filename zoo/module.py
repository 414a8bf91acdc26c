"""The base LightningModule of every method in the zoo.

It holds the two things all nine methods need and nothing else:

- ``init_from``: start training from a released checkpoint (an id of ``zoo.list_models()``, a
  release directory or a Lightning ``.ckpt``). Weights load strictly; a shape mismatch is an error
  that names the tensor.
- ``generator``: the method's own random stream (trajectory sampling, exploration, mutation). It is
  seeded from the run's seed and the process rank, and saved in every checkpoint, so that
  ``fit --ckpt_path last`` continues the very same stream.
"""
from __future__ import annotations

from typing import Any

import lightning as L
import torch


class ZooModule(L.LightningModule):
    #: metrics plotted in the learning curve written next to the logs (``curve.png``)
    curve_metrics: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._generator: torch.Generator | None = None
        self._pending_rng_state: torch.Tensor | None = None
        self._initialised_from: str | None = None

    # -- starting from a released checkpoint -------------------------------------------------

    def setup(self, stage: str) -> None:
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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo_rng_state"] = self.generator.get_state()
        checkpoint["zoo_class_path"] = f"{type(self).__module__}.{type(self).__name__}"

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "zoo_rng_state" in checkpoint:
            self._pending_rng_state = checkpoint["zoo_rng_state"]
            self._generator = None


class Steps:
    """The "data" of a method that makes its own (trajectories, rollouts, generations): ``n`` step
    indices per epoch. It saves its position, so a run resumed mid-epoch ends its epoch where an
    unbroken run would."""

    def __init__(self, n: int) -> None:
        self.n, self.next_index, self._resume_at = n, 0, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        start, self._resume_at = self._resume_at, 0
        for i in range(start, self.n):
            self.next_index = i + 1  # Lightning does not prefetch from a loader of known length
            yield i

    def state_dict(self) -> dict[str, int]:
        return {"next_index": self.next_index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = state["next_index"]
