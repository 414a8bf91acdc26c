"""A callback that presses Ctrl-C for a test: it sends its own process a SIGINT after a given training step."""
import os
import signal

import lightning as L


class InterruptAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)
