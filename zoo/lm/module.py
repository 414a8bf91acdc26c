"""A causal language model trained by next-token prediction: the zoo's base LM.

    loss = −(1/N) Σ_t log p_θ(y_{t+1} | y_{≤t})            (zoo/lm/objective.py: next_token_nll)
    perplexity = exp(loss) on held-out text

With no ``base`` it is a fresh GPT-2 (Hugging Face ``GPT2LMHeadModel``) of the given size, with a
byte-level BPE trained on the corpus: ``python recipes/lm.py fit`` pretrains the zoo's ``tiny-lm`` on
the embedded corpus. With ``--model.base`` it starts from any HF causal LM (hub name, directory, or
zoo id such as ``tiny-lm``) and its tokenizer; ``--model.lora_r 8`` trains LoRA adapters only.

Releases are save_pretrained directories: ``transformers.AutoModelForCausalLM.from_pretrained(dir)``
and ``AutoTokenizer.from_pretrained(dir)`` read them as well as ``zoo.load``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics.text import Perplexity

from zoo.errors import UserError
from zoo.lm.helpers import add_lora, load_causal_lm, resolve_base
from zoo.lm.objective import next_token_nll
from zoo.module import ZooModule


def adamw_warmup_cosine(module: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                       warmup_steps: int, schedule_steps: int) -> dict[str, Any]:
    """The LM optimiser: AdamW with weight decay on the matrices only (not biases, norms or position
    embeddings), and transformers' linear warm-up then cosine decay to a tenth of ``lr`` over
    ``schedule_steps``, held there after (a run extended past its schedule does not climb back up)."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.ndim >= 2 and "wpe" not in n]
    rest = [p for n, p in params if not (p.ndim >= 2 and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=betas)
    sched = get_cosine_with_min_lr_schedule_with_warmup(opt, warmup_steps, schedule_steps, min_lr_rate=0.1)
    cosine = sched.lr_lambdas[0]  # the same function for every parameter group
    sched.lr_lambdas = [lambda step: cosine(min(step, schedule_steps))] * len(opt.param_groups)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class CausalLM(ZooModule):
    """A GPT-2-architecture causal LM (or any HF causal LM) trained by next-token prediction."""

    curve_metrics = ("val/ppl", "train/loss")
    model_hparams = ("base",)  # names of models to load: offline only where read from a file

    def __init__(
        self,
        base: str | None = None,
        vocab_size: int = 4096,
        n_positions: int = 256,
        n_embd: int = 128,
        n_layer: int = 4,
        n_head: int = 4,
        dropout: float = 0.0,
        lr: float = 3e-3,
        weight_decay: float = 0.1,
        warmup_steps: int = 100,
        schedule_steps: int | None = None,
        lora_r: int = 0,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.0,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            base: an HF causal LM to start from: a zoo id (``tiny-lm``), a save_pretrained directory or a
                hub name; its tokenizer comes with it. None: a fresh GPT-2 of the size below.
            vocab_size: token embeddings of a fresh model; the BPE trained for it has this many tokens.
            n_positions: context length of a fresh model (the longest --data.block_size it takes).
            n_embd: width of a fresh model.
            n_layer: transformer blocks of a fresh model.
            n_head: attention heads of a fresh model.
            dropout: dropout of a fresh model (residual, attention and embedding).
            lr: AdamW peak learning rate (linear warm-up, cosine decay to a tenth at schedule_steps).
            weight_decay: AdamW weight decay of the matrices (not of biases, norms, embeddings of position).
            warmup_steps: learning-rate warm-up steps.
            schedule_steps: steps of the warm-up and cosine schedule; the trainer's max_steps when not given
                (a resumed run keeps the length it started with).
            lora_r: rank of LoRA adapters (PEFT) on the attention projections; 0 trains every weight.
            lora_alpha: LoRA scale α (the update is α/r · B A).
            lora_dropout: dropout on the LoRA branch.
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = None
        if base is not None:
            self.model, self.tokenizer = load_causal_lm(base)
        else:
            from transformers import GPT2Config, GPT2LMHeadModel

            if n_embd % n_head:
                raise UserError(f"--model.n_embd {n_embd} must be a multiple of --model.n_head {n_head}")
            config = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                                n_head=n_head, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                                bos_token_id=0, eos_token_id=0, pad_token_id=1)
            self.model = GPT2LMHeadModel(config)
        if init_from is not None and self.tokenizer is None:
            self.tokenizer = release_tokenizer(init_from)
        if lora_r > 0:
            self.model = add_lora(self.model, lora_r, lora_alpha, lora_dropout)
        self.val_ppl, self.test_ppl = Perplexity(), Perplexity()
        self.val_ppl_attacked, self.test_ppl_attacked = Perplexity(), Perplexity()
        self.example_input_array = torch.arange(16).remainder(min(vocab_size, self.config.vocab_size)).view(2, 8)

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids: Tensor) -> Tensor:
        """Next-token logits [B, T, V] of token ids [B, T]."""
        return self.model(input_ids=input_ids).logits

    # -- starting points -------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        init_from = self.hparams.get("init_from")
        if stage == "fit" and init_from and self._initialised_from != init_from:
            path = Path(resolve_base(init_from, "--model.init_from")) if not str(init_from).endswith(".ckpt") else None
            if path is not None and (path / "config.json").exists():  # a release in HF format
                from transformers import AutoModelForCausalLM

                source = AutoModelForCausalLM.from_pretrained(path)
                target = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
                target.load_state_dict(source.state_dict(), strict=True)
                self._initialised_from = init_from
                return
        super().setup(stage)

    # -- training ----------------------------------------------------------------------------------

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = next_token_nll(self(batch), batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.shape[0])
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=batch.shape[0])
        return loss

    def _evaluate(self, stage: str, batch: Tensor, dataloader_idx: int) -> None:
        suffix = "_attacked" if dataloader_idx == 1 else ""  # the word-swap copy (--data.attack_rate)
        ppl = getattr(self, f"{stage}_ppl{suffix}")
        ppl.update(self(batch)[:, :-1].float(), batch[:, 1:])
        self.log(f"{stage}/ppl{suffix}", ppl, prog_bar=not suffix, batch_size=batch.shape[0], add_dataloader_idx=False)

    def validation_step(self, batch: Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("val", batch, dataloader_idx)

    def test_step(self, batch: Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("test", batch, dataloader_idx)

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_warmup_cosine(self, hp.lr, hp.weight_decay, (0.9, 0.95), hp.warmup_steps, self.schedule_steps())

    # -- releases in HF format -------------------------------------------------------------------

    def hf_model(self):
        """The plain HF model (LoRA adapters merged into a copy)."""
        if hasattr(self.model, "merge_and_unload"):
            return copy.deepcopy(self.model).merge_and_unload()
        return self.model

    def save_release(self, directory: Path) -> None:
        """A Hugging Face folder: config.json, model.safetensors, the tokenizer's files."""
        self.hf_model().save_pretrained(directory, safe_serialization=True)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)

    @classmethod
    def load_release(cls, directory: Path, init_args: dict[str, Any]) -> "CausalLM":
        init_args = {**init_args, "base": str(directory), "lora_r": 0}  # adapters were merged at release
        init_args.pop("init_from", None)
        return cls(**init_args)

    @torch.no_grad()
    def release_metrics(self) -> dict[str, float]:
        """Test perplexity of the released model on the embedded corpus' test split."""
        if self.trainer is None or self.trainer.datamodule is None:
            return {}
        loaders = self.trainer.datamodule.test_dataloader()
        ppl = Perplexity()
        for batch in loaders[0] if isinstance(loaders, list) else loaders:
            ppl.update(self(batch)[:, :-1].float(), batch[:, 1:])
        return {"test/ppl": float(ppl.compute()), "parameters": float(sum(p.numel() for p in self.parameters()))}


def release_tokenizer(init_from: str):
    """The tokenizer saved in a release directory, if any (so that --model.init_from keeps its vocabulary)."""
    try:
        path = Path(resolve_base(init_from, "--model.init_from"))
    except ValueError:
        return None
    if (path / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)
    return None
