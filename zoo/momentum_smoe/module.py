"""MomentumSMoE (Teo & Nguyen, NeurIPS 2024): momentum across the layers of a sparse mixture of experts.

    SMoE          x_{t+1} = x_t + f(x_t)
    MomentumSMoE  p_t = −f(x_t) + μ p_{t−1},  x_{t+1} = x_t − γ p_t
    AdamSMoE      Adam's p_t, m_t over the layers (first layer; heavy ball above, as in the paper's code)
    Robust        robust momentum: f evaluated at the look-ahead y_t = x_t − λ γ p_{t−1}

f is the top-k SMoE sub-layer of each block (zoo/momentum_smoe/objective.py has the updates); the
blocks are the paper's code's, LN₂(x_t + LN(x_{t+1})) with the Adam step normalised alone, or plain
post-norm or pre-norm (``norm``). The model is a next-token language model; the loss is the
cross-entropy plus ``load_balance`` times the sum over layers of the load-balancing loss, at the scale
of the paper's code. Validation and test report perplexity on clean text and on
text under the paper's random word-swap attack (``--data.attack_rate``), and the expert load entropy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.text import Perplexity

from zoo.errors import UserError
from zoo.lm.module import adamw_warmup_cosine, release_tokenizer
from zoo.lm.objective import next_token_nll
from zoo.module import ZooModule
from zoo.momentum_smoe.nets import VARIANTS, SMoELM, UpdateParams
from zoo.momentum_smoe.objective import load_entropy, robust_momentum_parameters


class ExpertLoad(Metric):
    """Routing counts per layer and expert; computes the mean over layers of the load entropy (nats)."""

    full_state_update = False

    def __init__(self, n_layer: int, num_experts: int) -> None:
        super().__init__()
        self.add_state("counts", torch.zeros(n_layer, num_experts), dist_reduce_fx="sum")

    def update(self, routing: list[Tensor]) -> None:
        for layer, indices in enumerate(routing):
            self.counts[layer] += torch.bincount(indices.flatten(), minlength=self.counts.shape[1]).to(self.counts)

    def compute(self) -> Tensor:
        return load_entropy(self.counts).mean()


def layer_variants_of(variant: str, n_layer: int, layer_variants: list[str] | None) -> list[str]:
    """The update of each layer: ``layer_variants`` as given, else ``variant`` everywhere, except that
    ``adam`` uses Adam in the first layer and heavy-ball momentum above it (the paper's AdamSMoE)."""
    if layer_variants is not None:
        if len(layer_variants) != n_layer:
            raise UserError(f"--model.layer_variants has {len(layer_variants)} entries for --model.n_layer {n_layer}")
        bad = [v for v in layer_variants if v not in VARIANTS]
        if bad:
            raise UserError(f"--model.layer_variants: unknown {bad}; use {VARIANTS}")
        return list(layer_variants)
    if variant == "adam":
        return ["adam"] + ["momentum"] * (n_layer - 1)
    return [variant] * n_layer


class MomentumSMoE(ZooModule):
    """A sparse mixture-of-experts LM whose layers update the residual stream with (Adam / robust) momentum."""

    curve_metrics = ("val/ppl", "val/ppl_attacked", "val/load_entropy", "train/loss")

    def __init__(
        self,
        variant: Literal["smoe", "momentum", "adam", "robust"] = "momentum",
        layer_variants: list[str] | None = None,
        norm: Literal["official", "post", "pre"] = "official",
        vocab_size: int = 4096,
        n_positions: int = 256,
        d_model: int = 128,
        n_layer: int = 4,
        n_head: int = 4,
        num_experts: int = 8,
        top_k: int = 2,
        d_hidden: int = 128,
        dropout: float = 0.1,
        mu: float = 0.7,
        gamma: float = 1.0,
        adam_mu: float = 0.9,
        adam_beta: float = 0.999,
        adam_gamma: float = 1.0,
        adam_eps: float = 1e-8,
        robust_L: float = 1.0,
        robust_kappa: float = 2.0,
        robust_rho: float = 0.5,
        load_balance: float = 0.01,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        schedule_steps: int | None = None,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            variant: the layer update of every layer: ``smoe``, ``momentum`` (MomentumSMoE), ``adam``
                (AdamSMoE: Adam in the first layer, heavy ball above) or ``robust`` (Robust MomentumSMoE).
            layer_variants: one variant per layer, overriding ``variant`` (e.g. [adam, momentum, smoe, smoe]).
            norm: where the LayerNorms sit. ``official`` (the paper's code): x ← LN₁(x + Attn(x)),
                f = SMoE(x), output LN₂(x + LN₃(x_{t+1})), and in the Adam layer LN₂(x + LN₃(−γ p/√(m + ε))),
                the Adam step normalised before it joins the stream; no final norm. ``post``: output
                LN₂(x_{t+1}). ``pre``: x ← x + Attn(LN₁(x)), f = SMoE(LN₂(x)), output x_{t+1}, a final
                norm before the head. The momentum state carried between layers is never normalised.
            vocab_size: token embeddings; the BPE trained for the model has this many tokens.
            n_positions: context length (the longest --data.block_size).
            d_model: width of the residual stream.
            n_layer: transformer blocks, each attention then an SMoE sub-layer.
            n_head: attention heads.
            num_experts: experts E per SMoE layer.
            top_k: experts k each token is routed to.
            d_hidden: hidden width of each expert MLP.
            dropout: dropout on attention, residual branches and expert hidden units.
            mu: heavy-ball momentum μ of MomentumSMoE.
            gamma: step size γ of MomentumSMoE.
            adam_mu: Adam's first-moment coefficient μ (β₁) in AdamSMoE.
            adam_beta: Adam's second-moment coefficient β (β₂) in AdamSMoE.
            adam_gamma: Adam's step size γ in AdamSMoE.
            adam_eps: ε of Adam's denominator √(m_t + ε).
            robust_L: smoothness constant L of robust momentum.
            robust_kappa: condition number κ = L/m of robust momentum (> 1).
            robust_rho: target rate ρ ∈ [1 − 1/√κ, 1 − 1/κ] of robust momentum.
            load_balance: weight of the load-balancing loss E Σ_i f_i P_i summed over layers, with P_i the
                router probability summed over tokens over the N·k routed slots (the paper's code's scale).
            lr: AdamW peak learning rate (linear warm-up, cosine decay to a tenth at schedule_steps).
            weight_decay: AdamW weight decay of the matrices.
            warmup_steps: learning-rate warm-up steps.
            schedule_steps: steps of the warm-up and cosine schedule; the trainer's max_steps when not given
                (a resumed run keeps the length it started with).
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__()
        self.save_hyperparameters()
        variants = layer_variants_of(variant, n_layer, layer_variants)
        r_gamma, r_mu, r_lambda = robust_momentum_parameters(robust_L, robust_kappa, robust_rho)
        params = UpdateParams(mu=mu, gamma=gamma, adam_mu=adam_mu, adam_beta=adam_beta, adam_gamma=adam_gamma,
                              adam_eps=adam_eps, robust_gamma=r_gamma, robust_mu=r_mu, robust_lambda=r_lambda)
        self.net = SMoELM(variants, vocab_size, n_positions, d_model, n_head, num_experts, top_k, d_hidden, dropout,
                          params, norm)
        # a release's tokenizer comes with its weights, so that --model.init_from keeps the vocabulary
        self.tokenizer = release_tokenizer(init_from) if init_from is not None else None
        self.val_ppl, self.val_ppl_attacked = Perplexity(), Perplexity()
        self.test_ppl, self.test_ppl_attacked = Perplexity(), Perplexity()
        self.val_load = ExpertLoad(n_layer, num_experts)
        self.test_load = ExpertLoad(n_layer, num_experts)
        self.example_input_array = torch.arange(16).remainder(vocab_size).view(2, 8)

    def forward(self, input_ids: Tensor) -> Tensor:
        """Next-token logits [B, T, V] of token ids [B, T]."""
        return self.net(input_ids)[0]

    # -- training --------------------------------------------------------------------------------

    def loss(self, batch: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, next-token cross-entropy, load-balancing loss): loss = nll + load_balance · Σ_layers L_balance,
        summed over layers as the paper's code's trainer does."""
        logits, s = self.net(batch)
        nll = next_token_nll(logits, batch)
        balance = torch.stack(s.balance).sum()
        return nll + self.hparams.load_balance * balance, nll, balance

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss, nll, balance = self.loss(batch)
        n = batch.shape[0]
        self.log("train/loss", nll, prog_bar=True, batch_size=n)
        self.log_dict({"train/balance_loss": balance, "train/lr": self.optimizers().param_groups[0]["lr"]}, batch_size=n)
        return loss

    def _evaluate(self, stage: str, batch: Tensor, dataloader_idx: int) -> None:
        logits, s = self.net(batch)
        attacked = dataloader_idx == 1
        ppl = getattr(self, f"{stage}_ppl" + ("_attacked" if attacked else ""))
        ppl.update(logits[:, :-1].float(), batch[:, 1:])
        n = batch.shape[0]
        self.log(f"{stage}/ppl" + ("_attacked" if attacked else ""), ppl, prog_bar=not attacked, batch_size=n,
                 add_dataloader_idx=False)
        if not attacked:
            load = getattr(self, f"{stage}_load")
            load.update(s.routing)
            self.log(f"{stage}/load_entropy", load, batch_size=n, add_dataloader_idx=False)

    def validation_step(self, batch: Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("val", batch, dataloader_idx)

    def test_step(self, batch: Tensor, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate("test", batch, dataloader_idx)

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_warmup_cosine(self, hp.lr, hp.weight_decay, (0.9, 0.98), hp.warmup_steps, self.schedule_steps())

    # -- releases: the weights in safetensors, the tokenizer beside them ------------------------

    def save_release(self, directory: Path) -> None:
        super().save_release(directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)

    @classmethod
    def load_release(cls, directory: Path, init_args: dict[str, Any]) -> "MomentumSMoE":
        model = super().load_release(directory, init_args)
        if (Path(directory) / "tokenizer.json").exists():
            from transformers import AutoTokenizer

            model.tokenizer = AutoTokenizer.from_pretrained(directory)
        return model

    @torch.no_grad()
    def release_metrics(self) -> dict[str, float]:
        """Test perplexity, clean and under the word-swap attack, and the test load entropy."""
        if self.trainer is None or self.trainer.datamodule is None:
            return {}
        dm = self.trainer.datamodule
        ppl, attacked, load = Perplexity(), Perplexity(), ExpertLoad(self.hparams.n_layer, self.hparams.num_experts)
        for batch in dm.test_dataloader()[0] if isinstance(dm.test_dataloader(), list) else dm.test_dataloader():
            logits, s = self.net(batch)
            ppl.update(logits[:, :-1].float(), batch[:, 1:])
            load.update(s.routing)
        out = {"test/ppl": float(ppl.compute()), "test/load_entropy": float(load.compute()),
               "parameters": float(sum(p.numel() for p in self.parameters()))}
        loaders = dm.test_dataloader()
        if isinstance(loaders, list) and len(loaders) > 1:
            for batch in loaders[1]:
                attacked.update(self(batch)[:, :-1].float(), batch[:, 1:])
            out["test/ppl_attacked"] = float(attacked.compute())
        return out
