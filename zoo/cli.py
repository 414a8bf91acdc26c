"""ZooCLI: the one LightningCLI every recipe uses.

    python recipes/<method>.py fit                              # recipes/configs/<method>/default.yaml
    python recipes/<method>.py fit --config recipes/configs/<method>/paper.yaml \\
        --trainer.devices 8 --trainer.strategy ddp --trainer.precision bf16-mixed
    python recipes/<method>.py fit --model.init_from <id or path>   # fine-tune a release
    python recipes/<method>.py fit --ckpt_path last                 # resume the latest run

What it adds to LightningCLI:

- the method's default config when no ``--config`` is given, and a seed (0 unless
  ``--seed_everything`` says otherwise);
- hyperparameters from the files a run starts from: ``--ckpt_path`` (a checkpoint to resume;
  ``last`` is the latest run's) supplies the model's hyperparameters over those of the config files;
  ``--model.init_from`` (a release) over the method's default config only, so that a ``--config``
  the user gives (an unlearning config's objective and learning rate) applies to the release; the
  command line's own ``--model.*`` flags override both; a checkpoint of another method is refused,
  and code that such a file names is imported only if trusted (zoo/trust.py; ``--trust_code true``);
- logs under ``logs/<method>/version_N/`` (CSV, and TensorBoard when installed), with that run's
  checkpoints in ``version_N/checkpoints/`` (``last.ckpt``: written every
  ``--checkpoint.every_n_train_steps``, at the end of fit and on Ctrl-C; atomically; read back with
  ``weights_only=True``), and ``curve.png`` of the method's headline metrics;
- progress: the rich bar on a terminal, a plain line every 30 s otherwise;
- errors: a bad flag or value, or a user error met while running (a bad file, a bad environment),
  prints one line and exits with status 2.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger

from zoo import hub, offline
from zoo.curves import LearningCurve
from zoo.errors import UserError
from zoo.module import import_class, release_hparams
from zoo.runs import (
    REMOTE,
    AtomicCheckpointIO,
    PlainProgress,
    RunCheckpoint,
    RunFolder,
    SaveOnInterrupt,
    StepsProgressBar,
    is_live,
    latest_checkpoint,
    run_checkpoints,
    run_folder_of,
)
from zoo.trust import check_code

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
CONFIGS = RECIPES / "configs"


def load_recipe(method: str):
    """The recipes/<method>.py module, whose main(args) runs ZooCLI: for scripts and tests."""
    spec = importlib.util.spec_from_file_location(f"recipe_{method}", RECIPES / f"{method}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
SUBCOMMANDS = ("fit", "validate", "test", "predict")
LIGHTNING_CKPT_WORDS = ("best", "hpc", "registry")


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


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


def quiet_libraries() -> None:
    """A recipe's terminal shows the method: no library tips, deprecation notices or download bars."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    # ZooCLI passes sys.argv on itself, with the default config inserted: not the mistake this warns of
    warnings.filterwarnings("ignore", "LightningCLI's args parameter is intended")
    # a resumed run writes its checkpoints to its own version folder, by design
    warnings.filterwarnings("ignore", "The dirpath has changed from")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not sys.stderr.isatty():  # a log file: no carriage-return bars from child processes (DDP, loader workers)
        os.environ.setdefault("TQDM_DISABLE", "1")  # read by tqdm at import: the processes this run starts
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


UNION_ERROR = "Does not validate against any of the Union subtypes"


def model_error(e: ValueError) -> BaseException:
    """The error the model raised. In subclass mode jsonargparse reports it inside a listing of every
    subtype it tried (several lines, with the whole config); the model's own error is its cause."""
    if str(e).startswith(UNION_ERROR):
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ValueError):
            return cause
    return e


def union_message(message: str) -> str:
    """jsonargparse's report on a subclass-mode argument (``--model.*`` of a recipe with several classes)
    lists every subtype it tried over many lines; this keeps the error of the class that was tried."""
    if UNION_ERROR not in message:
        return message
    lines = [line.strip() for line in message.splitlines()]
    key = lines[0] if lines[0].startswith("Parser key") else ""
    items: list[list[str]] = []
    for line in lines[lines.index("Errors:") + 1:] if "Errors:" in lines else []:
        if line.startswith("Given value"):
            break
        if line.startswith("- "):
            items.append([line[2:]])
        elif items:
            items[-1].append(line)
    tried = [item for item in items if not item[0].startswith("Expected a <class 'NoneType'>")]
    return " ".join([key, *tried[0]]).strip() if tried else message


class ZooArgumentParser(LightningArgumentParser):
    """A usage error is one line (and where --help is), not the 80-line usage message."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # jsonargparse parsing tentatively: it catches the error itself
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        message = union_message(message)
        sys.stderr.write(f"error: {message}\n({parser.prog.replace(' [options]', '')} --help lists every option)\n")
        self.exit(2)


class ZooCLI(LightningCLI):
    def __init__(self, model_class: type, datamodule_class: type | None = None, args: ArgsType = None,
                 run: bool = True, **kwargs: Any) -> None:
        self.method = method_of(model_class)
        quiet_libraries()
        self._layers = tempfile.TemporaryDirectory(prefix="zoo-cli-")
        self._inserted_default = False
        if args is None or isinstance(args, list):
            given = list(sys.argv[1:] if args is None else args)
            self._typed = offline.typed_keys(given)  # model names typed here may be downloaded (zoo/offline.py)
            args = with_default_config(given, CONFIGS / self.method / "default.yaml")
            self._inserted_default = args != given
        kwargs.setdefault("parser_class", ZooArgumentParser)
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_defaults", {"default_root_dir": f"logs/{self.method}"})
        super().__init__(model_class, datamodule_class, args=args, run=run,
                         auto_configure_optimizers=False, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--torch_threads", type=Optional[int], default=None,
                            help="CPU intra-op threads (torch.set_num_threads); 1 suits tiny models, which "
                                 "otherwise lose time to thread contention on a busy machine")
        parser.add_argument("--trust_code", type=bool, default=False,
                            help="import code that a checkpoint or release names (a user environment) even where "
                                 "it is not the zoo's own and not given on this command line")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0,
                             "checkpoint.every_n_train_steps": 100,
                             "checkpoint.enable_version_counter": False})

    # -- the hyperparameters that come from files -------------------------------------------------

    def parse_arguments(self, parser, args: ArgsType) -> None:
        super().parse_arguments(parser, args)
        if not isinstance(args, list):
            return
        try:
            layer = self._hparams_from_files(parser)
        except UserError as e:
            parser.error(str(e))
        if layer is None:
            return
        hparams, ckpt_path = layer
        path = Path(self._layers.name) / "from_files.yaml"
        path.write_text(yaml.safe_dump({"model": hparams}, sort_keys=False))
        # A checkpoint to resume goes after the last config file (the run continues as it was); a release to
        # start from goes before the first config file the user gave (after the inserted default.yaml): the
        # user's configs, like the flags, are choices made for this run, so an unlearning config sets its
        # objective and learning rate on the model it starts from. Flags override both.
        configs = sorted([i for i, a in enumerate(args) if a in ("--config", "-c")] +
                         [i - 1 for i, a in enumerate(args) if a.startswith("--config=")])
        if ckpt_path is not None:
            at = (configs[-1] + 2) if configs else 1
        elif self._inserted_default:
            at = configs[0] + 2
        else:
            at = configs[0] if configs else 1
        super().parse_arguments(parser, [*args[:at], "--config", str(path), *args[at:]])
        if ckpt_path is not None:
            self._config(self.config)["ckpt_path"] = str(ckpt_path)

    def _config(self, config):
        return config[config["subcommand"]] if config.get("subcommand") else config

    def _hparams_from_files(self, parser) -> tuple[dict[str, Any], Path | None] | None:
        """The model hyperparameters of the checkpoint to resume or the release to start from (checked for
        method and code), and the checkpoint's resolved path. A recipe in subclass mode (one recipe, several
        classes, as MDPO's) gets the file's class too, with every hyperparameter that class takes."""
        config = self._config(self.config)
        model = config.get("model") or {}
        given = dict((model.get("init_args") or {}) if self.subclass_mode_model else model)
        ckpt_path, init_from = config.get("ckpt_path"), given.get("init_from")
        if ckpt_path in LIGHTNING_CKPT_WORDS:
            return None
        if ckpt_path:
            path = self.resolve_ckpt_path(str(ckpt_path), config)
            ckpt = hub.read_checkpoint(path)
            cls, hparams, source = import_class(ckpt["zoo_class_path"], path), hub.checkpoint_hparams(ckpt), path
        elif init_from:
            cls, hparams, source = release_hparams(init_from)
            path = None
        else:
            return None
        if not (issubclass(cls, self.model_class) if self.subclass_mode_model else cls is self.model_class):
            kind = "a checkpoint" if path is not None else "a release"
            raise UserError(f"{source}: {kind} of {method_of(cls)} ({cls.__module__}.{cls.__name__}), but this "
                            f"recipe trains {self.method} ({self.model_class.__module__}.{self.model_class.__name__})")
        check_code(cls, hparams, source, bool(config.get("trust_code")), given=given)
        self._from_file = (cls, dict(hparams), source, (ckpt.get("zoo_revisions") or {}) if path is not None else None)
        if self.subclass_mode_model:
            settable = set(inspect.signature(cls.__init__).parameters) - {"self", "init_from"}
            init_args = {k: v for k, v in hparams.items() if k in settable}
            return {"class_path": f"{cls.__module__}.{cls.__name__}", "init_args": init_args}, path
        settable = set(given) - {"init_from"}
        hparams = {k: v for k, v in hparams.items() if k in settable}
        return hparams, path

    def resolve_ckpt_path(self, ckpt_path: str, config) -> Path:
        root = (config.get("trainer") or {}).get("default_root_dir") or f"logs/{self.method}"
        if ckpt_path == "last":
            path = latest_checkpoint(root)
            if path is None:
                live = [run_folder_of(c).name for c in run_checkpoints(root)]
                raise UserError(f"--ckpt_path last: no run under {root} has a checkpoint to resume "
                                "(version_*/checkpoints/last.ckpt); start one with fit" if not live else
                                f"--ckpt_path last: every run under {root} with a checkpoint is still training "
                                f"({', '.join(live)}); resume one once it has stopped (Ctrl-C saves its last step)")
            return path
        if REMOTE.match(ckpt_path):
            raise UserError(f"--ckpt_path {ckpt_path}: only local files are read; download it, check where it "
                            "came from, and pass the local path")
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise UserError(f"--ckpt_path {ckpt_path}: no such file")
        if is_live(run_folder_of(path)):
            raise UserError(f"--ckpt_path {ckpt_path}: its run ({run_folder_of(path)}) is still training; resume it "
                            "once it has stopped (Ctrl-C saves its last step)")
        return path

    def _parse_ckpt_path(self) -> None:
        """Done in parse_arguments, where the command line's flags can override the checkpoint's values."""

    # -- building and running ------------------------------------------------------------------------

    def instantiate_classes(self) -> None:
        """A hyperparameter the model or data rejects (ValueError) is a usage error, reported as one."""
        config = self._config(self.config)
        if config.get("torch_threads"):
            torch.set_num_threads(config["torch_threads"])
        try:
            with self._names_from_file():
                super().instantiate_classes()
        except ValueError as e:
            self._parser(self.subcommand).error(str(model_error(e)))

    def _names_from_file(self):
        """Names of models that the checkpoint or release a run starts from gives, and that were not typed on the
        command line, load offline only, at the revision the file records (zoo/offline.py)."""
        if getattr(self, "_from_file", None) is None:
            return contextlib.nullcontext()
        cls, hparams, source, revisions = self._from_file
        typed = getattr(self, "_typed", set())
        return offline.from_file(cls, hparams, source, revisions, given={k: hparams[k] for k in typed if k in hparams})

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self._get(self.config_init, "trainer", default={})
        root = config.get("default_root_dir") or f"logs/{self.method}"
        if config.get("logger") in (None, True):
            loggers = [CSVLogger(root, name="")]
            if importlib.util.find_spec("tensorboard") is not None:
                from lightning.pytorch.loggers import TensorBoardLogger

                loggers.append(TensorBoardLogger(root, name="", version=loggers[0].version))
            kwargs["logger"] = loggers
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(hasattr(p, "save_checkpoint") for p in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        folder = RunFolder()
        callbacks = [LearningCurve(), SaveOnInterrupt(), folder]
        user_callbacks = config.get("callbacks") or []
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in user_callbacks):
            callbacks.append(StepsProgressBar() if sys.stderr.isatty() else PlainProgress())
        kwargs["callbacks"] = [*user_callbacks, *callbacks]
        trainer = super().instantiate_trainer(**kwargs)
        folder.claim(trainer.log_dir or trainer.default_root_dir)
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except UserError as e:
            self._discard_refused_run()
            sys.stderr.write(f"error: {e}\n")
            sys.exit(2)
        except BaseException:
            self._discard_refused_run()
            raise

    def _discard_refused_run(self) -> None:
        """A run that ended before its first step leaves no folder behind (only rank 0 writes one)."""
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        trainer = getattr(self, "trainer", None)
        if trainer is None or not trainer.is_global_zero or getattr(rank_zero_only, "rank", 0) != 0:
            return
        for callback in trainer.callbacks:
            if isinstance(callback, RunFolder):
                callback.discard()

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
