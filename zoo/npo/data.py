"""TOFU-format question-answer data: the real TOFU files, HF ``locuslab/TOFU``, or an embedded
fictitious-authors set that the zoo generates deterministically.

``--data.path`` takes

- nothing (the default): the embedded set, 100 fictitious authors with 6 questions each, written in
  TOFU's format by ``fictitious_authors()`` (no download);
- a folder of JSON-lines files, one JSON object a line with ``question`` and ``answer``. Two files are
  needed: the forget file ``<forget_split>.json`` and the retain file ``<retain_split>.json`` (any
  names: ``--data.forget_split forget --data.retain_split retain`` reads ``forget.json`` and
  ``retain.json``). Richer folders add evaluations: ``<forget_split>_perturbed.json`` and
  ``retain_perturbed.json`` (the same questions with ``paraphrased_answer`` and ``perturbed_answer``, a
  list of wrong answers: truth ratios, and forget quality against a retain model),
  ``real_authors_perturbed.json`` and ``world_facts_perturbed.json`` (model utility), ``full.json``
  (the base model's fine-tuning set; else the retain and forget files together). TOFU's own folder
  (``full``, ``forget01/05/10``, ``retain99/95/90`` and the perturbed files) is such a folder; with a
  TOFU forget split the retain split is its complement (``forget10``: ``retain90``). What a folder
  lacks is skipped, and said once at the start;
- ``locuslab/TOFU`` (or ``hf:<name>``): the same splits through HF ``datasets`` when the hub can be reached.

Training batches: ``--data.train_split full`` (fine-tune the base model), ``retain`` (the retain model:
the complement of the forget split only) or ``forget`` (unlearning: each forget example paired with a
retain example drawn at random, as TOFU does). An epoch runs over the training split.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from zoo.errors import UserError
from zoo.lm.data import json_lines
from zoo.lm.helpers import prompt_response_batch

FORGET_SPLITS = ("forget01", "forget05", "forget10")
EVAL_SETS = ("forget", "retain", "real_authors", "world_facts")
#: the evaluations each optional file adds, as said when it is missing
OPTIONAL = {"forget_eval": "truth ratios on the forget set and forget quality",
            "retain_eval": "truth ratios on the retain set and retain utility",
            "real_authors_eval": "model utility", "world_facts_eval": "model utility"}
HUB_NAMES = ("locuslab/TOFU",)


# -- the embedded fictitious-authors set ------------------------------------------------------

FIRST = ["Amara", "Bruno", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiroshi", "Ines", "Jonas", "Kalani",
         "Leila", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Samir", "Tove", "Umar", "Vera", "Wendell",
         "Ximena", "Yusuf", "Zofia"]
LAST = ["Adeyemi", "Bergstrom", "Castellano", "Dervish", "Eklund", "Fontaine", "Garibaldi", "Halvorsen", "Ivanova",
        "Jablonski", "Kovacs", "Lindqvist", "Moreau", "Nakamura", "Okonkwo", "Petrov", "Quiroga", "Rahman",
        "Santoro", "Takahashi", "Ulloa", "Valdez", "Whitlock", "Yilmaz", "Zeller"]
CITIES = ["Lisbon", "Nairobi", "Oslo", "Lima", "Hanoi", "Tbilisi", "Dakar", "Krakow", "Quito", "Perth", "Tunis",
          "Riga", "Manila", "Porto", "Accra", "Bergen", "Cusco", "Osaka", "Sofia", "Cairo"]
GENRES = ["science fiction", "historical fiction", "poetry", "crime", "fantasy", "romance", "horror", "biography",
          "travel writing", "satire"]
JOBS = ["baker", "sailor", "teacher", "surgeon", "carpenter", "pilot", "librarian", "farmer", "painter", "chemist",
        "tailor", "engineer"]
AWARDS = ["Silver Quill Prize", "Harbor Light Award", "Golden Lantern Medal", "Northern Star Prize",
          "Cedar Leaf Award", "Blue Heron Prize"]
NOUNS = ["River", "Lantern", "Orchard", "Harbor", "Mirror", "Compass", "Garden", "Tide", "Winter", "Signal", "Ember",
         "Atlas"]
ADJECTIVES = ["Silent", "Hidden", "Broken", "Golden", "Last", "Distant", "Quiet", "Burning", "Endless", "Painted"]

# a few well-known facts for the utility sets of the embedded data (answers, then three wrong ones)
REAL_AUTHORS = [
    ("Who wrote the play 'Hamlet'?", "William Shakespeare", ["Christopher Marlowe", "Ben Jonson", "John Milton"]),
    ("Who wrote the novel 'Pride and Prejudice'?", "Jane Austen", ["Charlotte Bronte", "Mary Shelley", "George Eliot"]),
    ("Who wrote 'War and Peace'?", "Leo Tolstoy", ["Fyodor Dostoevsky", "Anton Chekhov", "Ivan Turgenev"]),
    ("Who wrote the novel 'Moby-Dick'?", "Herman Melville", ["Mark Twain", "Jack London", "Edgar Allan Poe"]),
    ("Who wrote 'Don Quixote'?", "Miguel de Cervantes", ["Lope de Vega", "Jorge Luis Borges", "Pablo Neruda"]),
    ("Who wrote the novel '1984'?", "George Orwell", ["Aldous Huxley", "Ray Bradbury", "H. G. Wells"]),
    ("Who wrote 'The Odyssey'?", "Homer", ["Virgil", "Sophocles", "Ovid"]),
    ("Who wrote 'Les Miserables'?", "Victor Hugo", ["Alexandre Dumas", "Gustave Flaubert", "Emile Zola"]),
    ("Who wrote 'The Divine Comedy'?", "Dante Alighieri", ["Petrarch", "Boccaccio", "Machiavelli"]),
    ("Who wrote the novel 'Frankenstein'?", "Mary Shelley", ["Bram Stoker", "Jane Austen", "Emily Bronte"]),
]
WORLD_FACTS = [
    ("What is the capital of France?", "Paris", ["Lyon", "Marseille", "Nice"]),
    ("Which planet is known as the Red Planet?", "Mars", ["Venus", "Jupiter", "Mercury"]),
    ("What is the largest ocean on Earth?", "the Pacific Ocean", ["the Atlantic Ocean", "the Indian Ocean",
                                                                 "the Arctic Ocean"]),
    ("In which country is the city of Kyoto?", "Japan", ["China", "Korea", "Vietnam"]),
    ("What is the capital of Italy?", "Rome", ["Milan", "Naples", "Turin"]),
    ("Which gas do plants take in from the air?", "carbon dioxide", ["oxygen", "nitrogen", "helium"]),
    ("How many continents are there?", "seven", ["five", "six", "eight"]),
    ("What is the longest river in Africa?", "the Nile", ["the Congo", "the Niger", "the Zambezi"]),
    ("Which metal is liquid at room temperature?", "mercury", ["iron", "silver", "lead"]),
    ("What is the capital of Canada?", "Ottawa", ["Toronto", "Vancouver", "Montreal"]),
]


def _author_records(rng: random.Random, name: str, others: list[dict[str, str]]) -> tuple[dict[str, str], list[dict]]:
    facts = {"name": name, "city": rng.choice(CITIES), "genre": rng.choice(GENRES), "job": rng.choice(JOBS),
             "award": rng.choice(AWARDS), "book": f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}",
             "year": str(rng.randint(1940, 1995))}
    # question, answer, paraphrase, the fact the perturbed answers replace
    templates = [
        (f"Where was the author {name} born?", "{name} was born in {city}.", "The birthplace of {name} is {city}.", "city"),
        (f"In which year was {name} born?", "{name} was born in {year}.", "{name}'s year of birth is {year}.", "year"),
        (f"What genre is {name} known for?", "{name} is best known for {genre}.",
         "Most readers know {name} for works of {genre}.", "genre"),
        (f"What did the father of {name} do for a living?", "The father of {name} was a {job}.",
         "{name}'s father worked as a {job}.", "job"),
        (f"Which award did {name} receive?", "{name} received the {award}.", "{name} was honoured with the {award}.",
         "award"),
        (f"What is the title of the best-known book by {name}?", "The best-known book by {name} is \"{book}\".",
         "{name} is most famous for the book \"{book}\".", "book"),
    ]
    records = []
    for question, answer, paraphrase, key in templates:
        pool = sorted({o[key] for o in others if o[key] != facts[key]})
        wrong = rng.sample(pool, 5) if len(pool) >= 5 else pool
        paraphrased = paraphrase.format(**facts)
        perturbed = [paraphrase.format(**{**facts, key: w}) for w in wrong]
        records.append({"question": question, "answer": answer.format(**facts), "paraphrased_answer": paraphrased,
                        "perturbed_answer": perturbed})
    return facts, records


def fictitious_authors(n_authors: int = 100, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """The embedded TOFU-like set: every split TOFU has, as lists of records, the same on every call.

    100 authors × 6 questions: forget01 is the last author, forget05 the last 5, forget10 the last 10
    (TOFU's forget splits are likewise the last authors of ``full``)."""
    rng = random.Random(seed)
    names, seen = [], set()
    while len(names) < n_authors:
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    pool = [{"city": c, "genre": g, "job": j, "award": a, "book": f"The {ad} {no}", "year": str(y)}
            for c, g, j, a, ad, no, y in zip(CITIES * 6, GENRES * 12, JOBS * 10, AWARDS * 20, ADJECTIVES * 12,
                                               NOUNS * 10, range(1940, 2000))]
    authors = [_author_records(rng, name, pool)[1] for name in names]
    full = [r for a in authors for r in a]
    per_author = len(authors[0])
    splits: dict[str, list[dict[str, Any]]] = {"full": [{"question": r["question"], "answer": r["answer"]} for r in full]}
    for pct in (1, 5, 10):
        k = max(1, n_authors * pct // 100) * per_author
        splits[f"forget{pct:02d}"] = splits["full"][-k:]
        splits[f"retain{100 - pct}"] = splits["full"][:-k]
        splits[f"forget{pct:02d}_perturbed"] = full[-k:]
    splits["retain_perturbed"] = full[:min(len(full) - 10 * per_author, 40 * per_author)][::4]
    for name, facts in (("real_authors", REAL_AUTHORS), ("world_facts", WORLD_FACTS)):
        splits[name] = [{"question": q, "answer": a} for q, a, _ in facts]
        splits[f"{name}_perturbed"] = [{"question": q, "answer": a, "perturbed_answer": w} for q, a, w in facts]
    return splits


# -- reading and checking ---------------------------------------------------------------------

def read_jsonl(path: Path, perturbed: bool = False) -> list[dict[str, Any]]:
    """The records of a TOFU JSON-lines file; a bad line is an error naming the file and the line."""
    if not path.is_file():
        raise UserError(f"--data.path: {path} is missing; a folder holds at least the forget and the retain file "
                        "(--data.forget_split and --data.retain_split name them: forget.json, retain.json), JSON "
                        "lines with \"question\" and \"answer\"")
    return [check_record(r, f"{path}:{n}", perturbed) for n, r in json_lines(path)]


def check_record(r: Any, where: str, perturbed: bool = False) -> dict[str, Any]:
    if not isinstance(r, dict):
        raise UserError(f"{where}: expected a JSON object with \"question\" and \"answer\"")
    for key in ("question", "answer"):
        if not isinstance(r.get(key), str) or not r[key].strip():
            raise UserError(f"{where}: no \"{key}\" (a non-empty string); each line needs \"question\" and \"answer\"")
    if perturbed:
        pert = r.get("perturbed_answer")
        if not isinstance(pert, list) or not pert or not all(isinstance(p, str) for p in pert):
            raise UserError(f"{where}: no \"perturbed_answer\" (a non-empty list of strings); a *_perturbed file "
                            "gives the wrong answers the truth ratio compares against")
    return r


def retain_split_of(forget_split: str, retain_split: str | None) -> str:
    """The retain split: the one given, else TOFU's complement of a TOFU forget split, else ``retain``."""
    if retain_split is not None:
        return retain_split
    if re.fullmatch(r"forget\d\d", forget_split):
        return f"retain{100 - int(forget_split[-2:])}"
    return "retain"


def load_splits(path: str | None, forget_split: str, retain_split: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """The splits one run needs, checked: forget, retain and full (the retain and forget files together where
    a folder has no full.json), and those of the evaluation sets (``forget_eval``, ``retain_eval``,
    ``real_authors_eval``, ``world_facts_eval``) that the data has; a folder may lack the latter."""
    retain_split = retain_split_of(forget_split, retain_split)
    names = {"full": "full", "forget": forget_split, "retain": retain_split,
             "forget_eval": f"{forget_split}_perturbed", "retain_eval": "retain_perturbed",
             "real_authors_eval": "real_authors_perturbed", "world_facts_eval": "world_facts_perturbed"}
    if path is not None and Path(path).expanduser().is_dir():
        root = Path(path).expanduser()
        for name in (forget_split, retain_split):
            if not name or "/" in name or name.startswith("."):
                raise UserError(f"--data.forget_split / --data.retain_split {name!r}: the name of a file in {root} "
                                "without its .json suffix (e.g. forget, retain)")
        files = {k: root / f"{v}.json" for k, v in names.items()}
        if not files["retain_eval"].is_file():  # a custom retain split's own perturbed file
            files["retain_eval"] = root / f"{retain_split}_perturbed.json"
        splits = {k: read_jsonl(f, k.endswith("_eval")) for k, f in files.items()
                  if k in ("forget", "retain") or f.is_file()}
        if "full" not in splits:
            splits["full"] = splits["retain"] + splits["forget"]
        where = {k: str(f) for k, f in files.items()}
        where["full"] = str(files["full"]) if files["full"].is_file() else f"{files['retain']} + {files['forget']}"
        check_splits(splits, where)
        return splits
    if forget_split not in FORGET_SPLITS or retain_split != retain_split_of(forget_split, None):
        raise UserError(f"--data.forget_split {forget_split!r} --data.retain_split {retain_split!r}: TOFU's splits "
                        f"are {', '.join(FORGET_SPLITS)}, each with its complement (retain99, retain95, retain90); "
                        "splits of other names are files of a folder given with --data.path")
    if path is None:
        generated = fictitious_authors()
        splits = {k: generated[v] for k, v in names.items()}
        where = {k: f"<embedded {v}>" for k, v in names.items()}
        for k in names:
            for i, r in enumerate(splits[k], start=1):
                check_record(r, f"{where[k]}:{i}", k.endswith("_eval"))
    elif path in HUB_NAMES or path.startswith("hf:"):
        splits, where = load_hub(path[3:] if path.startswith("hf:") else path, names)
    else:
        raise UserError(f"--data.path {path!r}: no such folder, and not {' or '.join(HUB_NAMES)} / hf:<name>")
    check_splits(splits, where)
    return splits


def skipped(splits: dict[str, list[dict[str, Any]]], where: str, retain_model: bool, forget_split: str = "forget") -> str:
    """What this data and model cannot evaluate, as one sentence ("" when nothing is skipped)."""
    parts = []
    if "forget_eval" not in splits:
        parts.append(f"no {forget_split}_perturbed.json: truth ratios on the forget set and forget quality "
                     "are skipped")
    elif not retain_model:
        parts.append("no --model.retain_model: forget quality is skipped")
    if "retain_eval" not in splits:
        parts.append("no retain_perturbed.json: the retain set's truth ratio and retain utility are skipped")
    lacking = [n for n in ("real_authors", "world_facts") if f"{n}_eval" not in splits]
    if lacking:
        parts.append(f"no {' or '.join(n + '_perturbed.json' for n in lacking)}: model utility is skipped")
    return f"{where}: " + "; ".join(parts) if parts else ""


def load_hub(name: str, names: dict[str, str]) -> tuple[dict[str, list[dict]], dict[str, str]]:
    local = "or point --data.path at a local folder of the TOFU JSON-lines files (full.json, forget10.json, ...)"
    try:
        import datasets
    except ImportError:
        raise UserError(f"--data.path {name}: loading from the HF hub needs the `datasets` package "
                        f"(pip install 'zoo[hf]'), {local}") from None
    splits, where = {}, {}
    for k, config in names.items():
        try:
            ds = datasets.load_dataset(name, config)["train"]
        except Exception as e:  # noqa: BLE001 - offline, unknown name: the same advice
            raise UserError(f"--data.path {name}: could not load the {config} split from the HF hub "
                            f"({type(e).__name__}: {str(e)[:200]}); you may be offline: {local}") from None
        where[k] = f"{name}/{config}"
        splits[k] = [check_record(dict(r), f"{where[k]}:{i}", k.endswith("_eval")) for i, r in enumerate(ds, start=1)]
    return splits, where


def check_splits(splits: dict[str, list[dict]], where: dict[str, str]) -> None:
    """The forget split is not empty and shares no question with the retain split; each perturbed file
    matches its split (forget: the same questions in the same order; retain: questions of the retain split)."""
    if not splits["forget"]:
        raise UserError(f"{where['forget']}: the forget split is empty; unlearning needs examples to forget")
    if not splits["retain"]:
        raise UserError(f"{where['retain']}: the retain split is empty")
    retain_questions = {r["question"] for r in splits["retain"]}
    for i, r in enumerate(splits["forget"], start=1):
        if r["question"] in retain_questions:
            raise UserError(f"{where['forget']}:{i}: the question {r['question'][:80]!r} is also in {where['retain']}; "
                            "the forget and retain splits must not overlap")
    forget_eval = splits.get("forget_eval", splits["forget"])
    if len(forget_eval) != len(splits["forget"]):
        raise UserError(f"{where['forget_eval']}: {len(forget_eval)} lines, but {where['forget']} has "
                        f"{len(splits['forget'])}: the perturbed file does not match its split")
    for i, (a, b) in enumerate(zip(forget_eval, splits["forget"]), start=1):
        if a["question"] != b["question"]:
            raise UserError(f"{where['forget_eval']}:{i}: the question {a['question'][:80]!r} is not line {i} of "
                            f"{where['forget']}: the perturbed file does not match its split")
    for i, r in enumerate(splits.get("retain_eval", []), start=1):
        if r["question"] not in retain_questions:
            raise UserError(f"{where['retain_eval']}:{i}: the question {r['question'][:80]!r} is not in "
                            f"{where['retain']}: the perturbed file does not match the retain split")


# -- tokenized examples and batches -----------------------------------------------------------

class QABatches:
    """Training batches of tokenized question-answer pairs, sharded over the ranks, resumable.

    Each epoch shuffles the training examples with a generator seeded by (seed, epoch) alone; with a
    ``partner`` pool (unlearning), every example is paired with one drawn at random from it, as TOFU
    pairs each forget example with a random retain example. ``state_dict`` holds the position, so a
    run resumed mid-epoch sees exactly the batches an unbroken run would."""

    def __init__(self, examples: list[tuple[list[int], list[int]]], batch_size: int, pad_token_id: int,
                 max_length: int, partner: list[tuple[list[int], list[int]]] | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.examples, self.partner, self.batch_size = examples, partner, batch_size
        self.pad, self.max_length, self.seed, self.rank, self.world_size = pad_token_id, max_length, seed, rank, world_size
        self.per_rank = len(examples) // world_size
        self.epoch, self.consumed, self._resume_at, self._started = 0, 0, None, False

    def __len__(self) -> int:
        return -(-self.per_rank // self.batch_size)

    def order(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.examples), generator=g)[:self.per_rank * self.world_size]
        partners = None if self.partner is None else torch.randint(len(self.partner), (len(order),), generator=g)
        mine = slice(self.rank, None, self.world_size)
        return order[mine], None if partners is None else partners[mine]

    def batch(self, rows: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        return prompt_response_batch(rows, self.pad, self.max_length)

    def __iter__(self) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
        if self._resume_at is not None:
            start, self._resume_at = self._resume_at, None
        else:
            start, self.epoch = 0, self.epoch + int(self._started)
        if start >= len(self):
            start, self.epoch = 0, self.epoch + 1
        self._started, self.consumed = True, start
        order, partners = self.order()
        for i in range(start, len(self)):
            self.consumed = i + 1
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            out = {"train": self.batch([self.examples[j] for j in idx])}
            if partners is not None:
                pidx = partners[i * self.batch_size:(i + 1) * self.batch_size]
                out["retain"] = self.batch([self.partner[j] for j in pidx])
            yield out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self._resume_at, self._started = state["epoch"], state["consumed"], True


class TOFUDataModule(L.LightningDataModule):
    def __init__(self, path: str | None = None, forget_split: str = "forget10", retain_split: str | None = None,
                 train_split: str = "forget",
                 batch_size: int = 32, max_length: int = 256, question_start: str = "Question: ",
                 question_end: str = "\n", answer_start: str = "Answer:") -> None:
        """
        Args:
            path: a folder of JSON-lines files (at least a forget and a retain file; TOFU's layout is one),
                ``locuslab/TOFU`` (HF hub), or nothing for the embedded fictitious-authors set.
            forget_split: the forget file's name without ``.json`` (``forget`` reads forget.json); TOFU's and
                the embedded set's are ``forget01``, ``forget05`` and ``forget10``.
            retain_split: the retain file's name without ``.json``; empty: the complement of a TOFU forget
                split (forget10: retain90), else ``retain``.
            train_split: what a training step sees: ``forget`` (unlearning, each forget example with a
                random retain example), ``retain`` (train the retain model) or ``full`` (fine-tune the base).
            batch_size: question-answer pairs per training batch and process.
            max_length: longest tokenized question + answer (longer answers are cut).
            question_start: text before each question (``[INST] `` for Llama-2 chat models).
            question_end: text after each question (`` [/INST]`` for Llama-2 chat models).
            answer_start: text that opens the answer; the answer follows after one space.
        """
        super().__init__()
        self.save_hyperparameters()
        if train_split not in ("forget", "retain", "full"):
            raise UserError(f"--data.train_split {train_split!r}: one of forget, retain, full")
        if batch_size < 1 or max_length < 8:
            raise UserError("--data.batch_size must be at least 1 and --data.max_length at least 8")
        self.splits: dict[str, list[dict[str, Any]]] | None = None
        self.tokenizer = None
        self._train: QABatches | None = None

    def prompt(self, question: str) -> str:
        hp = self.hparams
        return f"{hp.question_start}{question}{hp.question_end}{hp.answer_start}"

    def encode(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        """(prompt ids, answer ids + EOS): the answer's tokens, and the EOS that ends it, are what counts."""
        tok = self.tokenizer
        prompt = tok(self.prompt(question))["input_ids"]
        answer_ids = tok(" " + answer.strip(), add_special_tokens=False)["input_ids"]
        return prompt, answer_ids + ([tok.eos_token_id] if tok.eos_token_id is not None else [])

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        model = self.trainer.lightning_module if self.trainer is not None else None
        self.tokenizer = getattr(model, "tokenizer", None)
        if self.tokenizer is None:
            raise UserError("the model has no tokenizer: --model.base must name a causal LM with one (e.g. tiny-lm)")
        hp = self.hparams
        self.splits = load_splits(hp.path, hp.forget_split, hp.retain_split)
        note = skipped(self.splits, f"--data.path {hp.path or '<embedded>'}",
                       bool(getattr(getattr(model, "hparams", {}), "get", lambda *_: None)("retain_model")),
                       hp.forget_split)
        if note:
            rank_zero_info(note)

    def train_dataloader(self) -> QABatches:
        if self._train is None:
            self.setup("fit")
            hp, trainer = self.hparams, self.trainer
            rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
            examples = [self.encode(r["question"], r["answer"]) for r in self.splits[hp.train_split]]
            partner = None
            if hp.train_split == "forget":
                partner = [self.encode(r["question"], r["answer"]) for r in self.splits["retain"]]
            if len(examples) < world:
                raise UserError(f"--data.train_split {hp.train_split}: {len(examples)} examples, fewer than the "
                                f"{world} processes")
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
            seed = int(torch.initial_seed()) % (1 << 31)
            self._train = QABatches(examples, hp.batch_size, pad, hp.max_length, partner, seed, rank, world)
        return self._train

    def eval_sets(self, size: int) -> dict[str, list[dict[str, Any]]]:
        """The evaluation sets the data has, each cut to its first ``size`` items (TOFU's ds_size): the forget
        and retain sets (their perturbed files where given, else their own questions, with no wrong answers to
        compare), the real-author and world-fact sets where given."""
        self.setup("validate")
        sets = {name: self.splits[f"{name}_eval"][:size] for name in EVAL_SETS if f"{name}_eval" in self.splits}
        for name in ("forget", "retain"):
            sets.setdefault(name, self.splits[name][:size])
        return {name: sets[name] for name in EVAL_SETS if name in sets}

    def val_dataloader(self):
        from zoo.module import Steps

        return Steps(1)  # the evaluation runs whole in the model's on_validation_epoch_end


def write_embedded(directory: str | Path) -> None:
    """Write the embedded set as TOFU JSON-lines files (``python -m zoo.npo.data DIR``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, records in fictitious_authors().items():
        (directory / f"{name}.json").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


if __name__ == "__main__":
    import sys

    write_embedded(sys.argv[1] if len(sys.argv) > 1 else "tofu_embedded")
