"""A callback the DDP test passes: each rank saves its archive, its explorations and its start point."""
from pathlib import Path

import lightning as L
import torch


class SaveRankArchive(L.Callback):
    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.explored: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.archive is not None:  # which cells this rank's stream would pick next
            g = torch.Generator().manual_seed(0)
            g.set_state(pl_module.generator.get_state())
            self.explored.append(int(torch.randint(2**31, (1,), generator=g)))

    def on_train_end(self, trainer, pl_module) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        a = pl_module.archive.state_dict()
        state = {k: a[k] for k in ("keys", "score", "length", "seen", "chosen", "states", "actions")}
        state.update(start=pl_module.runner.start, frames=pl_module.frames, explored=self.explored)
        torch.save(state, self.directory / f"rank{trainer.global_rank}.pt")
