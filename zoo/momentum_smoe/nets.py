"""A sparse mixture-of-experts transformer language model in plain PyTorch (CPU or any GPU).

Each block is causal self-attention followed by an SMoE sub-layer whose residual update is chosen per
layer: ``smoe``, ``momentum`` (heavy ball), ``adam`` or ``robust`` (robust momentum), with the momentum
state carried from block to block (zoo/momentum_smoe/objective.py). The blocks are the paper's code's
(``norm="official"``), plain post-norm or pre-norm (see ``Block``).

Routing is batched: one top-k over all tokens, then the (token, choice) slots are sorted by expert
and each expert runs once on its contiguous slice (a loop over experts, never over tokens).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import UserError
from zoo.momentum_smoe.objective import (
    adam_smoe_step,
    load_balancing_loss,
    momentum_smoe_update,
    robust_lookahead,
    robust_momentum_smoe_update,
    smoe_update,
    top_k_routing,
)

VARIANTS = ("smoe", "momentum", "adam", "robust")
NORMS = ("official", "post", "pre")


class Experts(nn.Module):
    """E two-layer ReLU MLPs d → h → d with their weights stacked: W1 [E, d, h], W2 [E, h, d]."""

    def __init__(self, num_experts: int, d_model: int, d_hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(num_experts, d_model, d_hidden))
        self.b1 = nn.Parameter(torch.zeros(num_experts, d_hidden))
        self.w2 = nn.Parameter(torch.empty(num_experts, d_hidden, d_model))
        self.b2 = nn.Parameter(torch.zeros(num_experts, d_model))
        nn.init.uniform_(self.w1, -1 / math.sqrt(d_model), 1 / math.sqrt(d_model))
        nn.init.uniform_(self.w2, -1 / math.sqrt(d_hidden), 1 / math.sqrt(d_hidden))
        self.dropout = nn.Dropout(dropout)

    def expert(self, e: int, x: Tensor) -> Tensor:
        """u_e(x) for a [n, d] slice."""
        return self.dropout(F.relu(x @ self.w1[e] + self.b1[e])) @ self.w2[e] + self.b2[e]

    def forward(self, x: Tensor, indices: Tensor, weights: Tensor) -> Tensor:
        """f(x) = Σ_j weights[:, j] · u_{indices[:, j]}(x): [N, d] from x [N, d], indices/weights [N, k]."""
        N, k = indices.shape
        flat = indices.flatten()
        order = flat.argsort(stable=True)  # slots grouped by expert
        counts = torch.bincount(flat, minlength=self.w1.shape[0]).tolist()
        xs = x[order // k]
        out = torch.cat([self.expert(e, chunk) for e, chunk in enumerate(xs.split(counts)) if chunk.shape[0]]
                        or [xs.new_zeros(0, x.shape[1])])
        slots = torch.empty_like(out).index_copy_(0, order, out)  # back to (token, choice) order
        return (slots.view(N, k, -1) * weights.unsqueeze(-1).to(slots.dtype)).sum(1)


class SMoE(nn.Module):
    """Router (linear d → E, top-k, softmax over the k) and the experts."""

    def __init__(self, d_model: int, num_experts: int, top_k: int, d_hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise UserError(f"--model.top_k must lie in [1, num_experts={num_experts}], got {top_k}")
        self.top_k = top_k
        self.router = nn.Linear(d_model, num_experts)
        self.experts = Experts(num_experts, d_model, d_hidden, dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(f(x) [..., d], load-balancing loss, routing indices [N, k])."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        logits = self.router(flat)
        indices, weights = top_k_routing(logits, self.top_k)
        f = self.experts(flat, indices, weights).view(shape)
        return f, load_balancing_loss(logits, indices), indices


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_head:
            raise UserError(f"--model.d_model {d_model} must be a multiple of --model.n_head {n_head}")
        self.n_head, self.dropout = n_head, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


@dataclass
class MomentumState:
    """What the layers carry to the next: heavy-ball p (all momentum variants), Adam's p and m."""

    p: Tensor | float = 0.0
    adam_p: Tensor | float = 0.0
    adam_m: Tensor | float = 0.0
    balance: list[Tensor] = field(default_factory=list)
    routing: list[Tensor] = field(default_factory=list)


@dataclass
class UpdateParams:
    mu: float = 0.7
    gamma: float = 1.0
    adam_mu: float = 0.9
    adam_beta: float = 0.999
    adam_gamma: float = 1.0
    adam_eps: float = 1e-8
    robust_gamma: float = 1.0
    robust_mu: float = 0.5
    robust_lambda: float = 0.0


class Block(nn.Module):
    """Attention, then the SMoE sub-layer whose update x_t → x_{t+1} is the layer's variant (objective.py).

    ``official``  x ← LN₁(x + Attn(x)),  f = SMoE(x),  out = LN₂(x + LN₃(x_{t+1})), and in the Adam layer
                  out = LN₂(x + LN₃(−γ p_t/√(m_t + ε))): the paper's code (pre_lnorm off), whose
                  transformer layer puts a residual and norm around its post-norm SMoE / momentum / Adam
                  layer, and whose Adam layer drops x_t, so that the Adam step is normalised before it
                  joins the stream (for SMoE: LN₂(x + LN₃(x + f(x))))
    ``post``      x ← LN₁(x + Attn(x)),  f = SMoE(x),       out = LN₂(x_{t+1})
    ``pre``       x ← x + Attn(LN₁(x)),  f = SMoE(LN₂(x)),  out = x_{t+1}

    In every mode the state carried to the next layer (p_t; Adam's p_t and m_t) is the un-normalised one:
    only the stream x is normalised. μ = 0, γ = 1 is SMoE exactly in every mode.
    """

    def __init__(self, variant: str, d_model: int, n_head: int, num_experts: int, top_k: int, d_hidden: int,
                 dropout: float, params: UpdateParams, norm: str = "official") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise UserError(f"--model.layer_variants: unknown variant {variant!r}; use one of {VARIANTS}")
        if norm not in NORMS:
            raise UserError(f"--model.norm: unknown {norm!r}; use one of {NORMS}")
        self.variant, self.params, self.norm = variant, params, norm
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.ln3 = nn.LayerNorm(d_model) if norm == "official" else None
        self.attn = CausalSelfAttention(d_model, n_head, dropout)
        self.moe = SMoE(d_model, num_experts, top_k, d_hidden, dropout)
        self.drop = nn.Dropout(dropout)

    def f(self, x: Tensor, s: MomentumState) -> Tensor:
        """f(x): the SMoE output (of LN₂(x) when pre-norm), recording the balance loss and routing."""
        f, balance, indices = self.moe(self.ln2(x) if self.norm == "pre" else x)
        s.balance.append(balance)
        s.routing.append(indices)
        return self.drop(f)

    def forward(self, x: Tensor, s: MomentumState) -> Tensor:
        if self.norm == "pre":
            x = x + self.drop(self.attn(self.ln1(x)))
            return self.update(x, s)
        x = self.ln1(x + self.drop(self.attn(x)))
        if self.norm == "post":
            return self.ln2(self.update(x, s))
        return self.ln2(x + self.ln3(self.update(x, s)))

    def update(self, x: Tensor, s: MomentumState) -> Tensor:
        """x_{t+1} of the layer's variant, before any norm (in the official Adam layer, the step x_{t+1} − x_t
        alone); s.p, s.adam_p, s.adam_m move on to layer t+1."""
        q, v = self.params, self.variant
        if v == "smoe":
            return smoe_update(x, self.f(x, s))
        if v == "momentum":
            x, s.p = momentum_smoe_update(x, self.f(x, s), s.p, q.mu, q.gamma)
            return x
        if v == "adam":
            f = self.f(x, s)
            step, s.adam_p, s.adam_m = adam_smoe_step(f, s.adam_p, s.adam_m, q.adam_mu, q.adam_beta, q.adam_gamma,
                                                      q.adam_eps)
            s.p = -f + q.mu * s.p  # the heavy-ball state keeps running for momentum layers further up
            # the paper's code normalises the Adam step alone (its layer computes LN(x − (step' + x))); the
            # block adds x back outside that norm
            return step if self.norm == "official" else x + step
        y = robust_lookahead(x, s.p, q.robust_gamma, q.robust_lambda)
        x, s.p = robust_momentum_smoe_update(x, self.f(y, s), s.p, q.robust_mu, q.robust_gamma)
        return x


class SMoELM(nn.Module):
    """Token + position embeddings, the blocks, a final norm (pre-norm only) and a head tied to the token
    embedding."""

    def __init__(self, layer_variants: list[str], vocab_size: int, n_positions: int, d_model: int, n_head: int,
                 num_experts: int, top_k: int, d_hidden: int, dropout: float, params: UpdateParams,
                 norm: str = "official") -> None:
        super().__init__()
        self.n_positions = n_positions
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(n_positions, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(v, d_model, n_head, num_experts, top_k, d_hidden, dropout, params, norm)
                                    for v in layer_variants)
        # official and post-norm blocks already end in a LayerNorm (the paper's code has no final norm)
        self.ln_f = nn.LayerNorm(d_model) if norm == "pre" else nn.Identity()
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.02)

    def forward(self, input_ids: Tensor) -> tuple[Tensor, MomentumState]:
        """(logits [B, T, V], the final state with each layer's balance loss and routing)."""
        T = input_ids.shape[1]
        if T > self.n_positions:
            raise ValueError(f"a sequence of {T} tokens is longer than the context, --model.n_positions "
                             f"{self.n_positions}: lower --data.block_size")
        x = self.drop(self.wte(input_ids) + self.wpe(torch.arange(T, device=input_ids.device)))
        s = MomentumState()
        for block in self.blocks:
            x = block(x, s)
        return self.ln_f(x) @ self.wte.weight.T, s
