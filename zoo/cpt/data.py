"""Few-shot text classification: the data sets, the k-shot draw, and the loaders.

``--data.path`` takes

- nothing (the default): an embedded task the zoo generates, Python expressions labelled by the type
  of their value (`` number``, `` string``, `` list``), which the zoo's ``tiny-lm`` (pretrained on
  Python's documentation) can read; no download;
- a folder with ``train`` and ``test`` files (and optionally ``dev``/``valid``), each ``.jsonl`` (one
  ``{"text": ..., "label": ...}`` a line) or ``.txt`` (one ``label text`` a line, the label the first
  word), with ``--data.label_map`` mapping each label to the word the model should say;
- an HF ``datasets`` name when the hub can be reached: ``sst2``, ``ag_news``, ``dbpedia``, ``trec``
  (their label words are known) or ``hf:<name>[:<config>]``.

The few-shot protocol: k training examples drawn from the train split with ``--data.draw_seed``
(uniformly, without replacement); accuracy on the whole test split. The k examples are the model's
(``--model.examples``, filled from this draw where not given): CPT's context and every method's
training set. A model that starts from a release (``--model.init_from``) draws a new context from this
data, of the release's k unless ``--data.k`` is given, and the run says so once as it starts (``validate``
and ``test`` evaluate the release's own context).
"""
from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from lightning.pytorch.utilities import rank_zero_info

from zoo.errors import UserError
from zoo.lm.data import json_lines, read_lines

warnings.filterwarnings("ignore", ".*does not have many workers.*")

Example = tuple[str, str]  # (text, label) with the label as written in the data

HF_SETS = {  # name: (datasets id, config, text column, label column, test split, label words)
    "sst2": ("glue", "sst2", "sentence", "label", "validation", {"0": " negative", "1": " positive"}),
    "ag_news": ("fancyzhx/ag_news", None, "text", "label", "test",
                {"0": " world", "1": " sports", "2": " business", "3": " technology"}),
    "dbpedia": ("fancyzhx/dbpedia_14", None, "content", "label", "test",
                {str(i): f" {w}" for i, w in enumerate(["company", "school", "artist", "athlete", "politician",
                                                        "transportation", "building", "nature", "village", "animal",
                                                        "plant", "album", "film", "book"])}),
    "trec": ("CogComp/trec", None, "text", "coarse_label", "test",
             {"0": " abbreviation", "1": " entity", "2": " description", "3": " human", "4": " location", "5": " number"}),
}
SPLIT_NAMES = {"train": ("train",), "val": ("dev", "valid", "validation", "val"), "test": ("test",)}
EMBEDDED_WORDS = {"number": " number", "string": " string", "list": " list"}
DEFAULT_K = 8  # shots where neither --data.k nor a release gives them


# -- the embedded task -------------------------------------------------------------------------

def expression(kind: str, rng: random.Random) -> str:
    """A short Python expression whose value is of ``kind``: number, string or list."""
    n = lambda: str(rng.randint(0, 99))  # noqa: E731
    word = lambda: rng.choice(["spam", "eggs", "abc", "name", "data", "key", "text", "value", "path", "line"])  # noqa: E731
    forms = {
        "number": [lambda: f"{n()} + {n()}", lambda: f"{n()} * {n()}", lambda: f"len({word()!r})",
                   lambda: f"abs(-{n()})", lambda: f"max({n()}, {n()})", lambda: f"{n()} // {rng.randint(1, 9)}"],
        "string": [lambda: f"{word()!r} + {word()!r}", lambda: f"{word()!r}.upper()", lambda: f"str({n()})",
                   lambda: f"{word()!r} * {rng.randint(2, 4)}", lambda: f"' '.join([{word()!r}, {word()!r}])"],
        "list": [lambda: f"[{n()}, {n()}] + [{n()}]", lambda: f"list(range({rng.randint(1, 9)}))",
                 lambda: f"sorted([{n()}, {n()}, {n()}])", lambda: f"{word()!r}.split()", lambda: f"[{word()!r}] * 2"],
    }
    return rng.choice(forms[kind])()


def embedded_task(n_train: int = 2000, n_test: int = 600, seed: int = 1234) -> dict[str, list[Example]]:
    """The embedded default: expressions labelled number / string / list, balanced, fixed by ``seed``."""
    rng = random.Random(seed)
    kinds = list(EMBEDDED_WORDS)

    def draw(n: int) -> list[Example]:
        return [(expression(kinds[i % 3], rng), kinds[i % 3]) for i in rng.sample(range(n), n)]

    return {"train": draw(n_train), "val": draw(300), "test": draw(n_test)}


# -- files -------------------------------------------------------------------------------------

def read_split(path: Path, encoding: str, words: dict[str, str] | None = None) -> list[Example]:
    """A ``.jsonl`` file of {"text", "label"} or a ``.txt`` file of ``label text`` lines; every label must
    be one of ``words`` (the label map), where given."""
    hint = "pass the file's encoding with --data.encoding (e.g. latin-1)"
    if path.suffix == ".jsonl":
        rows = list(json_lines(path, "--data.path", encoding, hint))
        for n, row in rows:
            if not isinstance(row, dict) or "text" not in row or "label" not in row:
                raise UserError(f"{path}:{n}: a line must be a JSON object with 'text' and 'label'")
        rows = [(n, row["text"], row["label"]) for n, row in rows]
    else:
        rows = []
        for n, line in enumerate(read_lines(path, "--data.path", encoding, hint), 1):
            if line.strip():
                label, _, text = line.strip().partition(" ")
                rows.append((n, text, label))
    out: list[Example] = []
    for n, text, label in rows:
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{path}:{n}: the text is empty; every example needs text")
        if words is not None and str(label) not in words:
            raise UserError(f"{path}:{n}: the label {str(label)!r} is not in --data.label_map (it maps "
                            f"{sorted(words)}); add it there, or fix the line")
        out.append((text.strip(), str(label)))
    if not out:
        raise UserError(f"--data.path {path}: the file holds no examples")
    return out


def resolve_path(path: str) -> Path:
    """``path``, or for a path into the shared data (``.../shared/data/...``) that is not there, the same
    path under $ZOO_SHARED_DATA."""
    p = Path(path).expanduser()
    if not p.exists() and "shared/data/" in path and os.environ.get("ZOO_SHARED_DATA"):
        p = Path(os.environ["ZOO_SHARED_DATA"]) / path.split("shared/data/", 1)[1]
    return p


def read_folder(path: str, encoding: str, words: dict[str, str] | None) -> dict[str, list[Example]]:
    folder = resolve_path(path)
    if not folder.is_dir():
        raise UserError(f"--data.path {path!r}: no such folder, and not a known data set ({', '.join(HF_SETS)} or "
                        "hf:<name>[:<config>]); a folder holds train and test files (.jsonl or .txt)")
    files = {f.stem.split(".")[-1].lower(): f for f in sorted(folder.iterdir()) if f.suffix in (".jsonl", ".txt")}
    splits = {}
    for split, names in SPLIT_NAMES.items():
        f = next((files[n] for n in names if n in files), None)
        if f is not None:
            splits[split] = read_split(f, encoding, words)
    for split in ("train", "test"):
        if split not in splits:
            raise UserError(f"--data.path {folder}: no {split} file (train.jsonl / train.txt, test.jsonl / test.txt)")
    return splits


def read_hf(path: str) -> tuple[dict[str, list[Example]], dict[str, str] | None]:
    name = path[3:] if path.startswith("hf:") else path
    if name in HF_SETS:
        repo, config, text_col, label_col, test_split, words = HF_SETS[name]
    else:
        repo, _, config = name.partition(":")
        text_col, label_col, test_split, words = "text", "label", "test", None
    local = "or point --data.path at a folder with train and test files ('label text' lines or JSON lines)"
    try:
        import datasets
    except ImportError:
        raise UserError(f"--data.path {path}: HF data sets need the `datasets` package (pip install 'zoo[hf]'), {local}") from None
    try:
        ds = datasets.load_dataset(repo, config or None)
    except Exception as e:  # noqa: BLE001 - offline, unknown name: the same advice
        raise UserError(f"--data.path {path}: could not load {repo} from the HF hub ({type(e).__name__}: "
                        f"{str(e)[:200]}); you may be offline: {local}") from None
    splits = {}
    for split, key in (("train", "train"), ("test", test_split)):
        rows = ds[key]
        splits[split] = [(str(t), str(y)) for t, y in zip(rows[text_col], rows[label_col])]
    return splits, words


def draw_examples(pool: Sequence[Example], k: int, seed: int) -> list[Example]:
    """k examples drawn uniformly without replacement with ``seed`` (the few-shot protocol's draw)."""
    if k > len(pool):
        raise UserError(f"--data.k {k} is larger than the training set ({len(pool)} examples): lower --data.k")
    g = torch.Generator().manual_seed(seed)
    return [pool[i] for i in torch.randperm(len(pool), generator=g)[:k].tolist()]


# -- loaders -----------------------------------------------------------------------------------

class QueryBatches:
    """Training batches of the k examples: an endless stream of permutations drawn from (seed, epoch),
    cut into global batches of ``batch_size · world_size`` rows, of which each rank takes its own.
    Like ``zoo.module.Steps`` it saves its position, so a resumed run sees the batches an unbroken one would."""

    def __init__(self, encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, pad_id: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.encoded, self.pad_id, self.seed, self.rank, self.world = encoded, pad_id, seed, rank, world_size
        self.batch_size = batch_size
        self.global_batch = batch_size * world_size
        self.steps = max(1, -(-len(encoded) // self.global_batch))
        self.epoch, self.consumed, self._resume_at, self._started = 0, 0, None, False

    def __len__(self) -> int:
        return self.steps

    def order(self) -> Tensor:
        """This epoch's rows: permutations of the k examples, as many as one epoch of global batches needs."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n, need = len(self.encoded), self.steps * self.global_batch
        return torch.cat([torch.randperm(n, generator=g) for _ in range(-(-need // n))])[:need]

    def batch(self, rows: Sequence[int]) -> dict[str, Tensor]:
        from zoo.cpt.context import pad_right

        ids = pad_right([self.encoded[i][0] for i in rows], self.pad_id)
        types = pad_right([self.encoded[i][1] for i in rows], 0)
        mask = pad_right([[1] * len(self.encoded[i][0]) for i in rows], 0)
        return {"input_ids": ids, "attention_mask": mask, "types": types, "example": torch.tensor(list(rows))}

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        if self._resume_at is not None:
            start, self._resume_at = self._resume_at, None
        else:
            start, self.epoch = 0, self.epoch + int(self._started)
        if start >= self.steps:
            start, self.epoch = 0, self.epoch + 1
        self._started, self.consumed = True, start
        order = self.order()
        for s in range(start, self.steps):
            self.consumed = s + 1
            rows = order[s * self.global_batch:(s + 1) * self.global_batch][self.rank * self.batch_size:
                                                                            (self.rank + 1) * self.batch_size]
            yield self.batch(rows.tolist())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self._resume_at, self._started = state["epoch"], state["consumed"], True


def collate_queries(items: list[dict[str, Any]], pad_id: int) -> dict[str, Tensor]:
    """Test items (a query and one row per label word) as one right-padded batch of rows."""
    from zoo.cpt.context import pad_right

    rows = [r for it in items for r in it["rows"]]
    targets = [t for it in items for t in it["targets"]]
    return {"input_ids": pad_right(rows, pad_id), "attention_mask": pad_right([[1] * len(r) for r in rows], 0),
            "target": pad_right(targets, 0), "label": torch.tensor([it["label"] for it in items])}


class FewShotDataModule(L.LightningDataModule):
    def __init__(self, path: str | None = None, label_map: dict[str, str] | None = None, k: int | None = None,
                 draw_seed: int = 0, batch_size: int = 4, eval_batch_size: int = 32, val_size: int | None = 200,
                 test_size: int | None = None, encoding: str = "utf-8") -> None:
        """
        Args:
            path: a folder with train and test files (``.jsonl`` of {"text", "label"}, or ``.txt`` of
                ``label text`` lines), an HF name (sst2, ag_news, dbpedia, trec, hf:<name>[:<config>]), or
                nothing for the embedded task (Python expressions labelled by the type of their value).
            label_map: the word the model says for each label, e.g. {"0": " negative", "1": " positive"}
                (known for the embedded task and the HF names); a leading space suits most tokenizers.
            k: training examples drawn from the train split (the shots); ignored where the model already
                holds its examples (--model.examples, a checkpoint). Empty: as many as the context of the
                release the model starts from (--model.init_from), else 8.
            draw_seed: seed of the draw of the k examples (the few-shot protocol draws with several).
            batch_size: queries per training step and process (at most k).
            eval_batch_size: test examples per evaluation batch (each makes one row per label word).
            val_size: validation examples (the dev split, else held out of train), None for all of them;
                0 for no validation.
            test_size: test examples evaluated, None for the whole test split (the protocol).
            encoding: text encoding of the files (TREC's train file is latin-1).
        """
        super().__init__()
        self.save_hyperparameters()
        if (k is not None and k < 1) or batch_size < 1 or eval_batch_size < 1:
            raise UserError("--data.k, --data.batch_size and --data.eval_batch_size must be at least 1")
        self.splits: dict[str, list[Example]] | None = None
        self.words: dict[str, str] = {}
        self._train: QueryBatches | None = None

    # -- reading --------------------------------------------------------------------------------

    def read(self) -> None:
        """The splits and the label words, checked: every label of every split must have a word."""
        hp = self.hparams
        hf = hp.path is not None and (hp.path in HF_SETS or hp.path.startswith("hf:"))
        splits, words = (embedded_task(), EMBEDDED_WORDS) if hp.path is None else read_hf(hp.path) if hf else (None, None)
        words = dict(hp.label_map) if hp.label_map else words
        if not words:
            raise UserError(f"--data.path {hp.path}: give the word of each label with --data.label_map, e.g. "
                            "'{\"0\": \" negative\", \"1\": \" positive\"}'")
        if splits is None:
            splits = read_folder(hp.path, hp.encoding, words)
        for split, rows in splits.items():
            for n, (_, label) in enumerate(rows, 1):
                if label not in words:
                    raise UserError(f"--data.path {hp.path}: the {split} split's example {n} has the label {label!r}, "
                                    f"which --data.label_map does not map (it maps {sorted(words)})")
        if "val" not in splits and hp.val_size != 0:  # hold validation out of the train split
            pool = list(splits["train"])
            random.Random(hp.draw_seed + 99991).shuffle(pool)
            n_val = min(hp.val_size or len(pool) // 10, len(pool) // 2)
            splits["val"], splits["train"] = pool[:n_val], pool[n_val:]
        self.splits, self.words = splits, words

    def setup(self, stage: str | None = None, model: Any = None) -> None:
        model = model if model is not None else (self.trainer.lightning_module if self.trainer is not None else None)
        if self.splits is None:
            self.read()
        if model is None:
            return
        shots = None
        release = getattr(model, "release_examples", None)
        if model.hparams.examples is None and release and stage not in ("fit", None):
            shots = [tuple(e) for e in release]  # validate or test a release: its own context, as released
        elif model.hparams.examples is None:
            k = self.hparams.k or (len(release) if release else DEFAULT_K)
            shots = [(text, self.words[label]) for text, label in
                     draw_examples(self.splits["train"], k, self.hparams.draw_seed)]
            if release:  # said once: the next setup finds the model's examples
                where = self.hparams.path if self.hparams.path is not None else "the embedded task"
                rank_zero_info(f"drew the release's own context again ({k} examples from {where}): its trained δ "
                               "is kept whole" if [list(s) for s in shots] == release else
                               f"drew a new context of {k} examples from {where}; the release's own context is "
                               "not used (the δ of its template tokens carries over, the δ of its texts does not)")
        model.set_task(shots, list(self.words.values()))
        self.model = model

    # -- loaders --------------------------------------------------------------------------------

    def _subset(self, split: str, size: int | None) -> list[Example]:
        rows = self.splits[split]
        if size is None or size >= len(rows):
            return rows
        return random.Random(12345).sample(rows, size)  # the same subset for every run and method

    def _eval_loader(self, split: str, size: int | None) -> DataLoader:
        if self.splits is None:
            self.setup(split)
        label_index = {label: i for i, label in enumerate(self.words)}
        items = [{"label": label_index[label], **self.model.encode_query(text)} for text, label in self._subset(split, size)]
        items.sort(key=lambda it: len(it["rows"][0]))  # similar lengths share a batch: less padding, fewer logits
        pad = self.model.pad_id
        return DataLoader(items, batch_size=self.hparams.eval_batch_size, shuffle=False,
                          collate_fn=lambda b: collate_queries(b, pad))

    def train_dataloader(self) -> QueryBatches:
        if self._train is None:
            trainer = self.trainer
            rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
            encoded = self.model.encode_examples()
            bs = min(self.hparams.batch_size, len(encoded))
            if len(encoded) < world:
                raise UserError(f"k={len(encoded)} examples cannot be shared by {world} processes: raise --data.k")
            seed = int(torch.initial_seed()) % (1 << 31)
            self._train = QueryBatches(encoded, bs, self.model.pad_id, seed, rank, world)
        return self._train

    def val_dataloader(self) -> DataLoader | list:
        if self.hparams.val_size == 0:
            return []
        return self._eval_loader("val", self.hparams.val_size)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test", self.hparams.test_size)
