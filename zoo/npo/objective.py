"""The unlearning objectives of Negative Preference Optimization (Zhang et al., COLM 2024), as pure
functions of per-sequence answer log-likelihoods.

Notation: a forget example is a question x with its answer y; log π(y|x) = Σ_t log π(y_t | x, y_<t)
sums over the answer tokens only (question and padding masked out); |y| is the answer's token count.
π_θ is the model being unlearned, π_ref the frozen model before unlearning.

    GA      L = −NLL_F                    NLL_F = −Σ_i log π_θ(y_i|x_i) / Σ_i |y_i|   (token mean)
    GD      L = −NLL_F + λ·NLL_R          (gradient difference: descent on the retain set R)
    GA+KL   L = −NLL_F + λ·KL_R           KL_R = mean over retain tokens of KL(π_ref ‖ π_θ)
    NPO     L = −(2/β) · mean_i log σ(−β·(log π_θ(y_i|x_i) − log π_ref(y_i|x_i)))
    NPO+RT  L = NPO + λ·NLL_R
    NPO+KL  L = NPO + λ·KL_R

The NPO gradient is E[w_θ ∇ log π_θ(y|x)] with w_θ = 2 π_θ^β / (π_θ^β + π_ref^β): GA's gradient on
the summed log-likelihood, weighted down once the answer has become unlikely; as β → 0, w_θ → 1.
GA and the retain NLL are token means as in the official code (the HF loss); NPO uses per-sequence sums.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

OBJECTIVES = ("finetune", "ga", "gd", "ga_kl", "npo", "npo_rt", "npo_kl")


def nll(log_likelihood: Tensor, n_tokens: Tensor) -> Tensor:
    """Token-mean negative log-likelihood of a batch of answers: −Σ_i log π(y_i|x_i) / Σ_i |y_i|."""
    return -log_likelihood.sum() / n_tokens.sum().clamp_min(1)


def ga_loss(log_likelihood: Tensor, n_tokens: Tensor) -> Tensor:
    """Gradient ascent on the forget answers: L_GA = −NLL_F (minimising it raises the forget NLL)."""
    return -nll(log_likelihood, n_tokens)


def npo_loss(log_likelihood: Tensor, ref_log_likelihood: Tensor, beta: float = 0.1) -> Tensor:
    """L_NPO = −(2/β) · mean_i log σ(−β·(log π_θ(y_i|x_i) − log π_ref(y_i|x_i))).

    ``ref_log_likelihood`` is detached: the reference receives no gradient."""
    if beta <= 0:
        raise ValueError(f"--model.beta must be positive, got {beta}")
    log_ratio = log_likelihood - ref_log_likelihood.detach()
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def npo_weight(log_likelihood: Tensor, ref_log_likelihood: Tensor, beta: float = 0.1) -> Tensor:
    """w_θ = 2 π_θ^β / (π_θ^β + π_ref^β) = 2σ(β·(log π_θ − log π_ref)): NPO's per-example weight on GA's gradient."""
    return 2 * torch.sigmoid(beta * (log_likelihood - ref_log_likelihood))


def retain_kl(logits: Tensor, ref_logits: Tensor, mask: Tensor) -> Tensor:
    """KL_R = mean over the masked positions t of KL(π_ref(·|t) ‖ π_θ(·|t)), the reference detached.

    ``logits``, ``ref_logits``: [B, T, V]; ``mask`` [B, T] marks the positions that count."""
    logp = F.log_softmax(logits.float(), dim=-1)
    ref_logp = F.log_softmax(ref_logits.detach().float(), dim=-1)
    per_token = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    m = mask.to(per_token.dtype)
    return (per_token * m).sum() / m.sum().clamp_min(1)


def unlearning_loss(objective: str, forget: Tensor, forget_tokens: Tensor, ref_forget: Tensor | None = None,
                    retain_nll: Tensor | None = None, retain_kl_value: Tensor | None = None,
                    beta: float = 0.1, retain_weight: float = 1.0) -> Tensor:
    """The loss of one of the paper's objectives from its parts (see the module docstring).

    ``forget``: log π_θ(y|x) of each forget answer [B]; ``forget_tokens``: |y| [B]; ``ref_forget``:
    log π_ref(y|x) [B] (NPO*); ``retain_nll``: NLL_R (GD, NPO+RT); ``retain_kl_value``: KL_R (*_KL)."""
    if objective in ("ga", "gd", "ga_kl"):
        loss = ga_loss(forget, forget_tokens)
    elif objective in ("npo", "npo_rt", "npo_kl"):
        loss = npo_loss(forget, ref_forget, beta)
    else:
        raise ValueError(f"--model.objective {objective!r} is not an unlearning objective ({', '.join(OBJECTIVES[1:])})")
    if objective in ("gd", "npo_rt"):
        loss = loss + retain_weight * retain_nll
    elif objective in ("ga_kl", "npo_kl"):
        loss = loss + retain_weight * retain_kl_value
    return loss
