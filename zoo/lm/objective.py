"""The language-model math, as pure functions of logits and token ids.

Notation: a batch of B sequences of T tokens y_1..y_T; the model's logits z_t ∈ R^V at position t
predict y_{t+1}, so that  log p(y_{t+1} | y_{≤t}) = z_t[y_{t+1}] − logsumexp(z_t).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def token_log_probs(logits: Tensor, input_ids: Tensor) -> Tensor:
    """log p(y_{t+1} | y_{≤t}) for t = 1..T−1: [B, T−1] (computed in float32)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def sequence_log_probs(logits: Tensor, input_ids: Tensor, target_mask: Tensor | None = None,
                       average: bool = False) -> Tensor:
    """Per-sequence log-probability of the chosen tokens: Σ_t m_t log p(y_t | y_{<t}), [B].

    ``target_mask`` [B, T] marks the tokens whose probability counts (e.g. the response after a
    prompt, never padding); position 0 cannot count (nothing predicts it). Without a mask every
    token from position 1 counts. ``average`` divides by the number of counted tokens.
    """
    lp = token_log_probs(logits, input_ids)
    mask = torch.ones_like(lp) if target_mask is None else target_mask[:, 1:].to(lp.dtype)
    total = (lp * mask).sum(-1)
    return total / mask.sum(-1).clamp_min(1) if average else total


def next_token_nll(logits: Tensor, input_ids: Tensor) -> Tensor:
    """The language-modelling loss: mean over all predicted tokens of −log p(y_{t+1} | y_{≤t})."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten())
