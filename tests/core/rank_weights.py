"""A callback the conformance suite passes to DDP runs: each rank saves its weights when fit ends."""
from pathlib import Path

import lightning as L
import torch


class SaveRankWeights(L.Callback):
    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.directory / f"rank{trainer.global_rank}.pt")
