"""What Nash-MD plays on: tabular preference games, and prompts for language models.

Tabular games (``--model.game``), P[i, j] = P(y_i ≻ y_j) with P + Pᵀ = 1:

- ``rps``: rock-paper-scissors, P ∈ {0, ½, 1};
- ``rps_like``: a rock-paper-scissors cycle with unequal margins (0.9, 0.7, 0.8 for the winners);
- ``random``: σ(G − Gᵀ) for a Gaussian G of ``--model.game_size`` responses (``--model.game_seed``);
- a ``.json`` file holding the matrix as a list of rows.

Prompts (``--data.path``): a JSON-lines file with a ``prompt`` field on each line (a preference file
works), a text file with one prompt per line, ``hf:<name>[:<config>]`` (a ``prompt`` column), or
nothing: sentence starts of CPython's documentation, the prompts of the shipped keyword-judge pairs
(training prompts for training, the held-out tenth for evaluation).
"""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from zoo.errors import UserError
from zoo.lm.data import json_lines, read_lines
from zoo.preference.data import RowBatches, keyword_judge, rank_and_world, sentence_starts

GAMES = ("rps", "rps_like", "random")
RPS_LIKE = torch.tensor([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]], dtype=torch.float64)


def preference_game(name: str, size: int = 10, seed: int = 0) -> Tensor:
    """The preference matrix P of a tabular game, float64 [n, n]."""
    if name == "rps":
        return torch.tensor([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]], dtype=torch.float64)
    if name == "rps_like":
        return RPS_LIKE.clone()
    if name == "random":
        if size < 2:
            raise UserError(f"--model.game_size must be at least 2, got {size}")
        G = torch.randn(size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return torch.sigmoid(G - G.T)
    path = Path(name).expanduser()
    if path.suffix == ".json" and path.is_file():
        try:
            P = torch.tensor(json.loads(path.read_text()), dtype=torch.float64)
        except (json.JSONDecodeError, ValueError, TypeError) as e:
            raise UserError(f"--model.game {path}: expected a JSON list of rows of numbers ({e})") from None
        if P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] < 2:
            raise UserError(f"--model.game {path}: the matrix must be square, n×n with n ≥ 2, got {tuple(P.shape)}")
        if ((P < 0) | (P > 1)).any() or not torch.allclose(P + P.T, torch.ones_like(P), atol=1e-9):
            raise UserError(f"--model.game {path}: entries must be probabilities with P[i][j] + P[j][i] = 1")
        return P
    raise UserError(f"--model.game {name!r}: expected one of {', '.join(GAMES)} or a .json matrix file")


def reference_policy(name: str, n: int) -> Tensor:
    """μ: ``uniform``, or ``skewed`` (μ ∝ exp(linspace(1, −1, n)): the first responses likelier)."""
    if name == "uniform":
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    if name == "skewed":
        return torch.softmax(torch.linspace(1.0, -1.0, n, dtype=torch.float64), dim=-1)
    raise UserError(f"--model.reference {name!r}: expected uniform or skewed")


def read_prompts(path: str) -> tuple[list[str], list[str]]:
    """(train, eval) prompts of ``--data.path``; files hold out their last tenth for evaluation."""
    if path.startswith("hf:"):
        return load_hf_prompts(path)
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"--data.path {path}: no such file; give a JSON-lines file with a prompt field per line "
                        "or a text file with one prompt per line")
    if p.suffix in (".jsonl", ".json"):
        prompts = []
        for n, obj in json_lines(p):
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
                raise UserError(f"{p}:{n}: missing field 'prompt' (a string); each line needs one")
            prompts.append(obj["prompt"])
    else:
        prompts = [line for line in read_lines(p) if line.strip()]
    if len(prompts) < 2:
        raise UserError(f"--data.path {p}: {len(prompts)} prompt(s); at least two are needed (train and eval)")
    n_eval = max(1, len(prompts) // 10)
    return prompts[:-n_eval], prompts[-n_eval:]


def load_hf_prompts(path: str) -> tuple[list[str], list[str]]:
    name, _, config = path[3:].partition(":")
    local = "or save the prompts as JSON lines with a prompt field and give --data.path that file"
    try:
        import datasets

        ds = datasets.load_dataset(name, config or None)
    except Exception as e:  # noqa: BLE001 - not installed, offline, unknown name: the same advice
        raise UserError(f"--data.path {path}: could not load it ({type(e).__name__}: {str(e)[:200]}); {local}") from None
    if "train" not in ds or "prompt" not in ds["train"].column_names:
        raise UserError(f"--data.path {path}: needs a train split with a prompt column")
    held = next((k for k in ("validation", "test") if k in ds), None)
    train = list(ds["train"]["prompt"])
    return (train, list(ds[held]["prompt"])) if held else (train[:-len(train) // 10], train[-len(train) // 10:])


class PromptData(L.LightningDataModule):
    def __init__(self, path: str | None = None, batch_size: int = 16, eval_prompts: int = 64,
                 eval_batch_size: int = 32) -> None:
        """
        Args:
            path: prompts: a JSON-lines file (``prompt`` field), a text file (one per line), ``hf:<name>[:<config>]``,
                or None for the documentation sentence starts (see the module docstring).
            batch_size: prompts per training step and process.
            eval_prompts: held-out prompts each validation compares the policy with the reference on.
            eval_batch_size: prompts per validation batch.
        """
        super().__init__()
        self.path, self.batch_size = path, batch_size
        self.eval_prompts, self.eval_batch_size = eval_prompts, eval_batch_size
        self.judge = keyword_judge if path is None else None  # the generated task's true preference
        self.train_prompts: list[str] = []
        self.val_prompts: list[str] = []
        self._train: RowBatches | None = None

    def setup(self, stage: str) -> None:
        if self.train_prompts:
            return
        if self.path is None:
            train, val = sentence_starts("train"), sentence_starts("eval")
        else:
            train, val = read_prompts(self.path)
        self.train_prompts, self.val_prompts = train, val[:self.eval_prompts]

    def train_dataloader(self) -> RowBatches:
        if self._train is None:
            rank, world = rank_and_world(self.trainer)
            seed = int(torch.initial_seed()) % (1 << 31)
            self._train = RowBatches(self.train_prompts, self.batch_size, True, seed, rank, world)
        return self._train

    def val_dataloader(self) -> RowBatches:
        rank, world = rank_and_world(self.trainer)
        return RowBatches(self.val_prompts, self.eval_batch_size, False, 0, rank, world)
