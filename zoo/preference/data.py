"""Preference data: prompt / chosen / rejected triples, and the generated task the zoo ships.

``--data.path`` takes

- a JSON-lines file, one object per line with string fields ``prompt``, ``chosen`` and ``rejected``
  (the common preference-data format; other fields are ignored);
- ``hf:<name>[:<config>]``, an HF ``datasets`` name with those three columns (train split, and
  ``test`` or ``validation`` for validation when there is one);
- nothing: ``data/preference/keyword_pairs.jsonl``, pairs of tiny-lm continuations of sentence starts
  from CPython's documentation, labelled by the keyword judge below (data/preference/generate.py).

The keyword judge is a known preference with a cycle in it: responses are scored on three families of
documentation words (objects, values, code) and

    P*(y ≻ y') = σ(½ (t(y) − t(y')) + 4 u(y)ᵀ A u(y')),

with c_k(y) the family counts (each capped at 3), t = Σ_k c_k, u = c / max(1, t), and A the cyclic
skew matrix (objects beat values, values beat code, code beats objects). The first term is
transitive (more on-topic words), the second rock-paper-scissors, which no reward function can express.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import torch

from zoo.errors import UserError
from zoo.lm.data import json_lines

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "data" / "preference" / "keyword_pairs.jsonl"
FIELDS = ("prompt", "chosen", "rejected")

FAMILIES = (("class", "object", "type", "instance", "attribute", "method"),
            ("value", "number", "string", "sequence", "list", "integer"),
            ("function", "argument", "expression", "statement", "call", "code"))
CYCLE = torch.tensor([[0.0, 1.0, -1.0], [-1.0, 0.0, 1.0], [1.0, -1.0, 0.0]])  # A[i, j] > 0: family i beats j


def family_counts(text: str) -> torch.Tensor:
    """c_k: the words of each family in ``text`` (a word counts when it starts with a family stem), capped at 3."""
    words = re.findall(r"[a-z]+", text.lower())
    return torch.tensor([min(3, sum(any(w.startswith(s) for s in fam) for w in words)) for fam in FAMILIES],
                        dtype=torch.float32)


def keyword_judge(y: Sequence[str], y_prime: Sequence[str]) -> torch.Tensor:
    """P*(y ≻ y') of the keyword judge for each pair: [B]."""
    c, c2 = torch.stack([family_counts(t) for t in y]), torch.stack([family_counts(t) for t in y_prime])
    t, t2 = c.sum(-1), c2.sum(-1)
    u, u2 = c / t.clamp_min(1)[:, None], c2 / t2.clamp_min(1)[:, None]
    return torch.sigmoid(0.5 * (t - t2) + 4.0 * ((u @ CYCLE) * u2).sum(-1))


def sentence_starts(split: str | None = None) -> list[str]:
    """Prompts: the first six words of the sentences of CPython's documentation text, in corpus order;
    ``split`` "train" or "eval" keeps nine in ten or the tenth (every tenth prompt is held out)."""
    from zoo.lm.data import embedded_corpus

    out, seen = [], set()
    for line in embedded_corpus().splitlines():
        for sentence in re.split(r"(?<=[.!?])\s+", line.strip()):
            words = sentence.split()
            if len(words) >= 8 and words[0][:1].isupper() and re.fullmatch(r"[\w\"'*(),.:-]+", words[0]):
                prompt = " ".join(words[:6])
                if prompt not in seen:
                    seen.add(prompt)
                    out.append(prompt)
    if split is None:
        return out
    return [p for i, p in enumerate(out) if (i % 10 == 9) == (split == "eval")]


# -- reading users' files ------------------------------------------------------------------------


def read_pairs(path: str | Path, flag: str = "--data.path") -> list[dict[str, str]]:
    """The (prompt, chosen, rejected) rows of a JSON-lines file; a bad line is an error naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such file; give a JSON-lines file of prompt/chosen/rejected objects")
    rows = [check_row(obj, f"{path}:{n}") for n, obj in json_lines(path, flag)]
    if not rows:
        raise UserError(f"{flag} {path}: the file holds no preference pairs")
    return rows


def check_row(obj: Any, where: str) -> dict[str, str]:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object with {', '.join(FIELDS)}, got {type(obj).__name__}")
    missing = [k for k in FIELDS if k not in obj]
    if missing:
        raise UserError(f"{where}: missing field {', '.join(repr(k) for k in missing)}; each line needs "
                        f"string fields {', '.join(FIELDS)}")
    bad = [k for k in FIELDS if not isinstance(obj[k], str)]
    if bad:
        raise UserError(f"{where}: field {bad[0]!r} must be a string, got {type(obj[bad[0]]).__name__} "
                        "(conversations: join the turns into one text first)")
    if not obj["chosen"].strip() or not obj["rejected"].strip():
        raise UserError(f"{where}: an empty response; chosen and rejected must both hold text")
    if obj["chosen"] == obj["rejected"]:
        raise UserError(f"{where}: chosen is identical to rejected, which says nothing about a preference; "
                        "drop the line or fix it")
    return {k: obj[k] for k in FIELDS}


def load_hf_pairs(name: str) -> dict[str, list[dict[str, str]]]:
    """Train (and validation) pairs of an HF data set with prompt/chosen/rejected columns."""
    name, _, config = name[3:].partition(":")
    local = "or save it as JSON lines with prompt/chosen/rejected and give --data.path that file"
    try:
        import datasets
    except ImportError:
        raise UserError(f"--data.path hf:{name}: loading HF data sets needs `datasets` (pip install 'zoo[hf]'), {local}") from None
    try:
        ds = datasets.load_dataset(name, config or None)
    except Exception as e:  # noqa: BLE001 - offline, unknown name: the same advice
        raise UserError(f"--data.path hf:{name}: could not load it ({type(e).__name__}: {str(e)[:200]}); you may "
                        f"be offline: {local}") from None
    out = {}
    for split, keys in {"train": ("train",), "val": ("test", "validation")}.items():
        key = next((k for k in keys if k in ds), None)
        if key is None:
            continue
        missing = [c for c in FIELDS if c not in ds[key].column_names]
        if missing:
            raise UserError(f"--data.path hf:{name}: the {key} split lacks column(s) {missing} ({ds[key].column_names})")
        out[split] = [check_row(row, f"hf:{name} {key} row {i}") for i, row in enumerate(ds[key].select_columns(list(FIELDS)))]
    if "train" not in out:
        raise UserError(f"--data.path hf:{name}: no train split")
    return out


# -- batches that resume exactly -----------------------------------------------------------------


class RowBatches:
    """Batches of rows (lists of dicts), sharded over the ranks. Training batches are reshuffled each
    epoch from (seed, epoch) alone; the position is saved, so a resumed run sees the batches an
    unbroken run would (like zoo.lm.data.Batches)."""

    def __init__(self, rows: Sequence[Any], batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.rows, self.batch_size, self.shuffle, self.seed = list(rows), batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.consumed, self._resume_at, self._started = 0, 0, None, False
        if len(self) == 0:
            raise UserError(f"{len(self.rows)} rows cannot fill one batch of {batch_size} on each of {world_size} "
                            "processes: lower --data.batch_size or give more data")

    def __len__(self) -> int:
        return len(self.rows) // self.world_size // self.batch_size if self.shuffle else \
            math.ceil(len(self.rows) // self.world_size / self.batch_size)

    def order(self) -> list[int]:
        idx = torch.arange(len(self.rows))
        if self.shuffle:
            idx = torch.randperm(len(self.rows), generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        per_rank = len(self.rows) // self.world_size
        return idx[self.rank * per_rank:(self.rank + 1) * per_rank].tolist()

    def __iter__(self) -> Iterator[list[Any]]:
        if self._resume_at is not None:
            start, self._resume_at = self._resume_at, None
        else:
            start, self.epoch = 0, self.epoch + int(self._started)
        if start >= len(self):
            start, self.epoch = 0, self.epoch + 1
        self._started, self.consumed = True, start
        order = self.order()
        for i in range(start, len(self)):
            self.consumed = i + 1
            yield [self.rows[j] for j in order[i * self.batch_size:(i + 1) * self.batch_size]]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self._resume_at, self._started = state["epoch"], state["consumed"], True


def rank_and_world(trainer: Any) -> tuple[int, int]:
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


class PreferenceData(L.LightningDataModule):
    def __init__(self, path: str | None = None, batch_size: int = 32, val_fraction: float = 0.1,
                 limit_train_pairs: int | None = None) -> None:
        """
        Args:
            path: a JSON-lines file of prompt/chosen/rejected objects, ``hf:<name>[:<config>]``, or None for the
                shipped keyword-judge pairs (see the module docstring).
            batch_size: preference pairs per step and process.
            val_fraction: the last part of a file held out for validation (an HF set's test split is used instead).
            limit_train_pairs: use only the first this many training pairs (learning curves over data size).
        """
        super().__init__()
        if not 0 <= val_fraction < 1:
            raise UserError(f"--data.val_fraction must lie in [0, 1), got {val_fraction}")
        self.path, self.batch_size, self.val_fraction = path, batch_size, val_fraction
        self.limit_train_pairs = limit_train_pairs
        self.judge = keyword_judge if path is None else None  # the shipped pairs' true preference
        self.train_rows: list[dict[str, str]] = []
        self.val_rows: list[dict[str, str]] = []
        self._train: RowBatches | None = None

    def setup(self, stage: str) -> None:
        if self.train_rows:
            return
        if self.path is not None and str(self.path).startswith("hf:"):
            splits = load_hf_pairs(str(self.path))
            train, val = splits["train"], splits.get("val", [])
        else:
            rows = read_pairs(self.path or SHIPPED)
            n_val = int(round(len(rows) * self.val_fraction))
            train, val = rows[:len(rows) - n_val], rows[len(rows) - n_val:]
        self.train_rows = train[:self.limit_train_pairs] if self.limit_train_pairs else train
        self.val_rows = val

    def train_dataloader(self) -> RowBatches:
        rank, world = rank_and_world(self.trainer)
        if self._train is None:
            seed = int(torch.initial_seed()) % (1 << 31)  # the run's --seed_everything
            self._train = RowBatches(self.train_rows, self.batch_size, True, seed, rank, world)
        return self._train

    def val_dataloader(self) -> RowBatches | list:
        if not self.val_rows:
            return []
        rank, world = rank_and_world(self.trainer)
        return RowBatches(self.val_rows, self.batch_size, False, 0, rank, world)


__all__ = ["PreferenceData", "RowBatches", "keyword_judge", "family_counts", "sentence_starts", "read_pairs"]
