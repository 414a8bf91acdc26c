"""Text for language models: corpora by path, HF ``datasets`` names, and an embedded default.

``--data.path`` takes

- nothing (the default): the English text CPython ships in ``pydoc_data.topics`` (about 465 000
  characters of Python documentation; no download);
- a UTF-8 text file;
- a folder: either split files (``train``/``valid``/``test`` with any of the suffixes ``.txt``,
  ``.tokens``, ``.raw``; WikiText's ``wiki.train.tokens`` etc. qualify), used as the splits, or any
  other ``*.txt`` / ``*.md`` / ``*.tokens`` files, read in sorted order and split as one text;
- an HF ``datasets`` name, when the ``datasets`` package is installed and the hub can be reached:
  ``wikitext-103``, ``wikitext-2`` or ``hf:<name>[:<config>]`` (a ``text`` column, train/validation/test).

A single text is cut at line ends into train / validation / test parts (the last ``val_fraction`` and
``test_fraction`` of it), so that the splits never share a line. Each split is tokenized and cut
into non-overlapping windows of ``block_size + 1`` tokens (inputs and their next-token targets).

The tokenizer is the model's (``model.tokenizer``: the one of an HF base model or of a release);
where the model has none, a byte-level BPE of ``model.vocab_size`` tokens is trained on the training
split (cached under data/cache/tokenizers/) and handed to the model, which saves it with its release.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch
from torch import Tensor

from zoo.errors import UserError
from zoo.lm.tokenizer import cached_bpe, encode

HF_ALIASES = {"wikitext-103": ("Salesforce/wikitext", "wikitext-103-raw-v1"),
              "wikitext-2": ("Salesforce/wikitext", "wikitext-2-raw-v1")}
SPLIT_FILE = re.compile(r"^(?:.*[._-])?(train|valid|validation|val|test)\.(?:txt|tokens|raw)$")
TEXT_SUFFIXES = (".txt", ".md", ".tokens", ".raw")


def embedded_corpus() -> str:
    """The English text of CPython's ``pydoc_data.topics``, topics in sorted order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() for k in sorted(topics)) + "\n"


CONVERT = "convert it first, e.g. iconv -f latin1 -t utf-8"


def decode(data: bytes, path: Path, flag: str = "--data.path", encoding: str = "utf-8", hint: str = CONVERT) -> str:
    """The text of a file's bytes; bytes that are not ``encoding`` text are an error naming the file and the line."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        name = "UTF-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        raise UserError(f"{flag} {path}: not {name} text (line {line}, byte {e.start}: {e.reason}); {hint}") from None


def read_lines(path: Path, flag: str = "--data.path", encoding: str = "utf-8", hint: str = CONVERT) -> list[str]:
    """The lines of a text file (JSON lines, one prompt a line, ...), split where ``open`` splits them (at
    \\n, \\r\\n or \\r), so that an error's line number is the one an editor shows; not ``encoding`` text is
    an error naming the file and the line."""
    text = decode(Path(path).read_bytes(), path, flag, encoding, hint)
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def json_lines(path: Path, flag: str = "--data.path", encoding: str = "utf-8",
               hint: str = CONVERT) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSON-lines file; a line that is not JSON is an error
    naming the file and the line (what the value must hold is the reader's to check)."""
    for n, line in enumerate(read_lines(path, flag, encoding, hint), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not valid JSON ({e.msg}); each line must be one JSON object") from None


def read_text(path: Path, flag: str = "--data.path") -> str:
    """A UTF-8 file's text; a clear error naming the file for anything else."""
    text = decode(path.read_bytes(), path, flag)
    if not text.strip():
        raise UserError(f"{flag} {path}: the file is empty; a corpus needs text")
    return text


def load_corpus(path: str | None) -> str | dict[str, str]:
    """The text of ``--data.path``: one string, or {"train", "val", "test"} where the source is split."""
    if path is None:
        return embedded_corpus()
    p = Path(path).expanduser()
    if p.is_file():
        return read_text(p)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in TEXT_SUFFIXES)
        split_files: dict[str, Path] = {}
        for f in files:
            m = SPLIT_FILE.match(f.name)
            if m:
                split_files[{"valid": "val", "validation": "val"}.get(m.group(1), m.group(1))] = f
        if set(split_files) == {"train", "val", "test"}:
            return {k: read_text(f) for k, f in split_files.items()}
        if not files:
            raise UserError(f"--data.path {p}: the folder holds no text files ({', '.join(TEXT_SUFFIXES)}); "
                             "the corpus is empty")
        return "\n\n".join(read_text(f) for f in files)
    if path in HF_ALIASES or path.startswith("hf:"):
        return load_hf(path)
    raise UserError(f"--data.path {path!r}: no such file or folder, and not a known data set "
                     f"({', '.join(HF_ALIASES)} or hf:<name>[:<config>])")


def load_hf(path: str) -> dict[str, str]:
    """A corpus from the HF hub through ``datasets``; a clear error when it cannot be had."""
    name, config = HF_ALIASES.get(path, (None, None))
    if name is None:
        name, _, config = path[3:].partition(":")
    local = ("or point --data.path at local text: a file, or a folder with train/valid/test files "
             "(e.g. WikiText-103's wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens)")
    try:
        import datasets
    except ImportError:
        raise UserError(f"--data.path {path}: loading HF data sets needs the `datasets` package "
                         f"(pip install 'zoo[hf]'), {local}") from None
    try:
        ds = datasets.load_dataset(name, config or None)
    except Exception as e:  # noqa: BLE001 - offline, unknown name, ...: the same advice
        raise UserError(f"--data.path {path}: could not load {name}{':' + config if config else ''} "
                         f"from the HF hub ({type(e).__name__}: {str(e)[:200]}); you may be offline: {local}") from None
    out = {}
    for split, keys in {"train": ("train",), "val": ("validation", "valid"), "test": ("test",)}.items():
        key = next((k for k in keys if k in ds), None)
        if key is None:
            raise UserError(f"--data.path {path}: the data set has no {'/'.join(keys)} split (it has {list(ds)})")
        if "text" not in ds[key].column_names:
            raise UserError(f"--data.path {path}: the {key} split has no 'text' column ({ds[key].column_names})")
        out[split] = "\n".join(ds[key]["text"])
    return out


def split_text(text: str, val_fraction: float, test_fraction: float) -> dict[str, str]:
    """Train / val / test: consecutive parts of the text, cut at line ends, sharing no line."""
    lines = text.splitlines(keepends=True)
    n = len(lines)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise UserError(f"--data.path: the corpus has only {n} lines, too few for the train/val/test split")
    a, b = n - n_val - n_test, n - n_test
    return {"train": "".join(lines[:a]), "val": "".join(lines[a:b]), "test": "".join(lines[b:])}


def word_swap(text: str, rate: float, seed: int = 0, token: str = "AAA") -> str:
    """The random word-swap attack: each whitespace-separated word is replaced by ``token`` with
    probability ``rate`` (a fixed seed, so every model meets the same attacked text)."""
    import random

    rng = random.Random(seed)
    return re.sub(r"\S+", lambda m: token if rng.random() < rate else m.group(0), text)


def windows(ids: list[int], block_size: int) -> Tensor:
    """Non-overlapping windows of block_size + 1 tokens: [n, block_size + 1] (window i starts at i·block_size)."""
    t = torch.tensor(ids, dtype=torch.long)
    n = (len(t) - 1) // block_size
    return t[: n * block_size + 1].unfold(0, block_size + 1, block_size) if n > 0 else t.new_zeros(0, block_size + 1)


class Batches:
    """Batches of token windows [B, block_size + 1], sharded over the ranks.

    For training (``shuffle``) each epoch cuts the token stream at a fresh offset in [0, block_size)
    and shuffles the windows, both drawn from (seed, epoch) alone; evaluation uses offset 0 and the
    stream's order. Like ``zoo.module.Steps`` it saves its position (epoch, batches consumed), so a run
    resumed mid-epoch sees exactly the batches an unbroken run would."""

    def __init__(self, tokens: Tensor, block_size: int, batch_size: int, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = True) -> None:
        self.tokens, self.block_size, self.batch_size, self.shuffle = tokens, block_size, batch_size, shuffle
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        # the number of windows every offset can give
        self.n_windows = (len(tokens) - block_size) // block_size if shuffle else (len(tokens) - 1) // block_size
        self.epoch, self.consumed = 0, 0
        self._resume_at: int | None = None
        self._started = False

    def __len__(self) -> int:
        per_rank = self.n_windows // self.world_size
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def windows(self) -> Tensor:
        """This epoch's windows, in this epoch's order, for this rank: [n, block_size + 1]."""
        T = self.block_size
        offset, order = 0, torch.arange(self.n_windows)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            offset = int(torch.randint(T, (1,), generator=g))
            order = torch.randperm(self.n_windows, generator=g)
        w = self.tokens[offset:offset + self.n_windows * T + 1].unfold(0, T + 1, T)
        per_rank = self.n_windows // self.world_size
        return w[order[self.rank * per_rank:(self.rank + 1) * per_rank]]

    def __iter__(self) -> Iterator[Tensor]:
        if self._resume_at is not None:  # restored from a checkpoint
            start, self._resume_at = self._resume_at, None
        else:
            start, self.epoch = 0, self.epoch + int(self._started)
        if start >= len(self):  # the checkpoint was taken at the end of an epoch
            start, self.epoch = 0, self.epoch + 1
        self._started, self.consumed = True, start
        w = self.windows()
        for i in range(start, len(self)):
            self.consumed = i + 1  # Lightning does not prefetch from a loader of known length
            yield w[i * self.batch_size:(i + 1) * self.batch_size]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self._resume_at, self._started = state["epoch"], state["consumed"], True


class TextDataModule(L.LightningDataModule):
    def __init__(self, path: str | None = None, block_size: int = 128, batch_size: int = 16,
                 val_fraction: float = 0.05, test_fraction: float = 0.05, tokenizer: str | None = None,
                 eval_batch_size: int | None = None, attack_rate: float = 0.0) -> None:
        """
        Args:
            path: a text file, a folder, ``wikitext-103`` / ``wikitext-2`` / ``hf:<name>[:<config>]``,
                or nothing for the embedded corpus (CPython's pydoc_data.topics).
            block_size: tokens per training sequence (at most the model's context length).
            batch_size: sequences per training batch and per process.
            val_fraction: share of the lines of a single text kept for validation (its end, before the test part).
            test_fraction: share of the lines of a single text kept for the test (its very end).
            tokenizer: an HF tokenizer name or directory; by default the model's own, or a byte-level BPE
                trained on the training split.
            eval_batch_size: sequences per validation/test batch (default: batch_size).
            attack_rate: share of the words of the validation and test text replaced by "AAA" in a second,
                attacked copy of each (the random word-swap attack); 0: no attacked copies.
        """
        super().__init__()
        self.save_hyperparameters()
        for name in ("block_size", "batch_size"):
            if getattr(self.hparams, name) < 1:
                raise UserError(f"--data.{name} must be at least 1, got {getattr(self.hparams, name)}")
        for name in ("val_fraction", "test_fraction", "attack_rate"):
            if not 0 <= getattr(self.hparams, name) < 0.5:
                raise UserError(f"--data.{name} must lie in [0, 0.5), got {getattr(self.hparams, name)}")
        self.tokenizer = None
        self.splits: dict[str, Tensor] | None = None  # each split's token ids, 1-D
        self._loaders: dict[str, Batches] = {}

    # -- reading, tokenizing, checking ---------------------------------------------------------

    def setup(self, stage: str | None = None, model: Any = None) -> None:
        if self.splits is not None:
            return
        hp = self.hparams
        model = model if model is not None else (self.trainer.lightning_module if self.trainer is not None else None)
        corpus = load_corpus(hp.path)
        texts = corpus if isinstance(corpus, dict) else split_text(corpus, hp.val_fraction, hp.test_fraction)
        self.tokenizer = self.resolve_tokenizer(texts["train"], model)
        context = _context_length(model)
        if context is not None and hp.block_size > context:
            raise UserError(f"--data.block_size {hp.block_size} is longer than the model's context "
                             f"(--model.n_positions / the base model's {context} positions): lower --data.block_size")
        if hp.attack_rate > 0:
            texts = {**texts, "val_attacked": word_swap(texts["val"], hp.attack_rate, seed=1),
                     "test_attacked": word_swap(texts["test"], hp.attack_rate, seed=2)}
        self.splits = {}
        for split, text in texts.items():
            ids = encode(self.tokenizer, text)
            need = 2 * hp.block_size if split == "train" else hp.block_size + 1
            if len(ids) < need:
                raise UserError(f"--data.path {hp.path or 'pydoc_data.topics'}: the {split} split has {len(ids)} "
                                 f"tokens, fewer than {need} (--data.block_size {hp.block_size}): "
                                 "lower --data.block_size or give more text")
            self.splits[split] = torch.tensor(ids, dtype=torch.long)

    def resolve_tokenizer(self, train_text: str, model: Any):
        """--data.tokenizer, else the model's, else a BPE of the model's vocab_size trained on ``train_text``."""
        from transformers import AutoTokenizer

        if self.hparams.tokenizer is not None:
            try:
                tok = AutoTokenizer.from_pretrained(self.hparams.tokenizer)
            except (OSError, ValueError) as e:
                raise UserError(f"--data.tokenizer {self.hparams.tokenizer!r}: cannot load it ({str(e)[:200]})") from None
        elif getattr(model, "tokenizer", None) is not None:
            tok = model.tokenizer
        else:
            vocab = getattr(getattr(model, "hparams", {}), "get", lambda *_: None)("vocab_size") or 4096
            tok = cached_bpe(train_text, int(vocab))
        vocab_size = _vocab_size(model)
        if vocab_size is not None and len(tok) > vocab_size:
            raise UserError(f"the tokenizer has {len(tok)} tokens but the model only {vocab_size} embeddings: "
                             "raise --model.vocab_size or pick a smaller --data.tokenizer")
        if model is not None and getattr(model, "tokenizer", None) is None:
            model.tokenizer = tok  # saved with the model's release
        return tok

    # -- loaders -------------------------------------------------------------------------------

    def _loader(self, split: str) -> Batches:
        if split not in self._loaders:
            if self.splits is None:
                self.setup(split)
            trainer = self.trainer
            rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
            seed = int(torch.initial_seed()) % (1 << 31)
            train = split == "train"
            bs = self.hparams.batch_size if train else (self.hparams.eval_batch_size or self.hparams.batch_size)
            loader = Batches(self.splits[split], self.hparams.block_size, bs, shuffle=train, seed=seed,
                             rank=rank, world_size=world, drop_last=train)
            if loader.n_windows < world:
                raise UserError(f"--data.path: the {split} split has {loader.n_windows} sequences of --data.block_size "
                                 f"{self.hparams.block_size}, fewer than the {world} processes")
            loader.batch_size = max(1, min(bs, loader.n_windows // world))
            self._loaders[split] = loader
        return self._loaders[split]

    def train_dataloader(self) -> Batches:
        return self._loader("train")

    def val_dataloader(self) -> Batches | list[Batches]:
        """The validation split, and its attacked copy second where --data.attack_rate > 0."""
        return [self._loader("val"), self._loader("val_attacked")] if self.hparams.attack_rate > 0 else self._loader("val")

    def test_dataloader(self) -> Batches | list[Batches]:
        return [self._loader("test"), self._loader("test_attacked")] if self.hparams.attack_rate > 0 else self._loader("test")


def _context_length(model: Any) -> int | None:
    cfg = getattr(getattr(model, "model", None), "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        if cfg is not None and getattr(cfg, name, None):
            return int(getattr(cfg, name))
    hp = getattr(model, "hparams", None)
    return int(hp["n_positions"]) if hp is not None and hp.get("n_positions") else None


def _vocab_size(model: Any) -> int | None:
    cfg = getattr(getattr(model, "model", None), "config", None)
    if cfg is not None and getattr(cfg, "vocab_size", None):
        return int(cfg.vocab_size)
    hp = getattr(model, "hparams", None)
    return int(hp["vocab_size"]) if hp is not None and hp.get("vocab_size") else None
