"""The preference models' math, as pure functions of scores.

    pairwise       logit(y ≻ y' | x) = s(x, y, y') − s(x, y', y)       P = σ(logit)
    bradley_terry  logit(y ≻ y' | x) = r(x, y) − r(x, y')              P = σ(logit)
    loss           −log P(chosen ≻ rejected | x) = softplus(−logit)    (maximum likelihood)

Swapping y and y' negates either logit, so P(y ≻ y') + P(y' ≻ y) = 1 exactly and P(y ≻ y) = ½.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def pairwise_logit(s_forward: Tensor, s_backward: Tensor) -> Tensor:
    """s(x, y, y') − s(x, y', y): a pairwise preference model's log-odds of y ≻ y'."""
    return s_forward - s_backward


def bradley_terry_logit(r_y: Tensor, r_y_prime: Tensor) -> Tensor:
    """r(x, y) − r(x, y'): a reward model's log-odds of y ≻ y' under Bradley–Terry."""
    return r_y - r_y_prime


def preference_nll(logit: Tensor) -> Tensor:
    """mean −log σ(logit), the negative log-likelihood of the labelled preferences (softplus for stability)."""
    return F.softplus(-logit).mean()
