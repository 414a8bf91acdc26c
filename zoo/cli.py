"""ZooCLI: the one LightningCLI every recipe uses.

    python recipes/<method>.py fit                              # recipes/configs/<method>/default.yaml
    python recipes/<method>.py fit --config recipes/configs/<method>/paper.yaml \\
        --trainer.devices 8 --trainer.strategy ddp --trainer.precision bf16-mixed
    python recipes/<method>.py fit --model.init_from <id or path>   # fine-tune a release
    python recipes/<method>.py fit --ckpt_path last                 # resume the last run

What it adds to LightningCLI: the method's default config when no ``--config`` is given; a seed
(0 unless ``--seed_everything`` says otherwise); a rich progress bar; CSV logs (and TensorBoard
when it is installed) under ``logs/<method>/version_N``; a ``ModelCheckpoint`` saving
``last.ckpt`` to ``logs/<method>/checkpoints`` (``--checkpoint.*`` configures it); and
``curve.png`` of the method's headline metrics at the end of fit.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.loggers import CSVLogger

from zoo.curves import LearningCurve

# ZooCLI passes sys.argv on itself, with the default config inserted: not the mistake this warns of
warnings.filterwarnings("ignore", "LightningCLI's args parameter is intended")

CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"
SUBCOMMANDS = ("fit", "validate", "test", "predict")


def method_of(model_class: type) -> str:
    """zoo.op_gfn.module.OPGFN -> 'op_gfn'."""
    parts = model_class.__module__.split(".")
    return parts[1] if parts[0] == "zoo" and len(parts) > 2 else model_class.__name__.lower()


def with_default_config(args: list[str], default: Path) -> list[str]:
    """Insert ``--config default.yaml`` after the subcommand when no config is given."""
    if not args or args[0] not in SUBCOMMANDS or not default.exists():
        return args
    if any(a in ("--config", "-c") or a.startswith("--config=") for a in args):
        return args
    return [args[0], "--config", str(default), *args[1:]]


class StepsProgressBar(RichProgressBar):
    """The rich bar; a run bounded by steps rather than epochs says so instead of "Epoch 3/-2"."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs < 0 and trainer.max_steps > 0:
            return f"Epoch {current_epoch} (of max_steps={trainer.max_steps})"
        return super()._get_train_description(current_epoch)


class ZooCLI(LightningCLI):
    def __init__(self, model_class: type, datamodule_class: type | None = None, args: ArgsType = None,
                 run: bool = True, **kwargs: Any) -> None:
        self.method = method_of(model_class)
        if args is None or isinstance(args, list):
            args = with_default_config(list(sys.argv[1:] if args is None else args),
                                       CONFIGS / self.method / "default.yaml")
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", {"default_root_dir": f"logs/{self.method}"})
        super().__init__(model_class, datamodule_class, args=args, run=run,
                         auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--torch_threads", type=Optional[int], default=None,
                            help="CPU intra-op threads (torch.set_num_threads); 1 suits tiny models, which "
                                 "otherwise lose time to thread contention on a busy machine")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0,
                             "checkpoint.every_n_train_steps": 100,
                             "checkpoint.enable_version_counter": False})

    def instantiate_classes(self) -> None:
        """A hyperparameter the model or data rejects (ValueError) is a usage error, reported as one."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("torch_threads"):
            torch.set_num_threads(config["torch_threads"])
        try:
            super().instantiate_classes()
        except ValueError as e:
            self._parser(self.subcommand).error(str(e))

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self._get(self.config_init, "trainer", default={})
        root = config.get("default_root_dir") or f"logs/{self.method}"
        if config.get("logger") in (None, True):
            loggers = [CSVLogger(root, name="")]
            if importlib.util.find_spec("tensorboard") is not None:
                from lightning.pytorch.loggers import TensorBoardLogger

                loggers.append(TensorBoardLogger(root, name="", version=loggers[0].version))
            kwargs["logger"] = loggers
        callbacks = [LearningCurve()]
        user_callbacks = config.get("callbacks") or []
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in user_callbacks):
            callbacks.append(StepsProgressBar())
        for c in [self._get(self.config_init, k) for k in self._parser(self.subcommand).callback_keys]:
            if isinstance(c, ModelCheckpoint) and c.dirpath is None:
                c.dirpath = os.path.join(root, "checkpoints")
        kwargs["callbacks"] = [*user_callbacks, *callbacks]
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        """Say where the logs, the checkpoint and the learning curve went."""
        from rich.console import Console

        trainer = self.trainer
        if not trainer.is_global_zero:
            return
        where = {"logs": trainer.loggers[0].log_dir if trainer.loggers else trainer.default_root_dir}
        if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.last_model_path:
            where["checkpoint"] = trainer.checkpoint_callback.last_model_path
        curve = next((c.path for c in trainer.callbacks if isinstance(c, LearningCurve) and c.path), None)
        if curve is not None:
            where["curve"] = str(curve)
        console = Console(stderr=True, soft_wrap=True)
        for k, v in where.items():
            console.print(f"[bold]{k}[/bold]: {v}")
