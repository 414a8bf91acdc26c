"""CPT's math as pure functions of tensors (Blau et al., 2024; PEFT's ``CPTEmbedding`` is the reference).

The context is k labelled examples, each written with templates; every token carries a type
t ∈ {0, 4i+1, 4i+2, 4i+3, 4i+4} for example i = 0..k (the query being the last):

    4i+1  input template   (trained, projected to radius ε_f)
    4i+2  input text       (trained, projected to radius ε_x)
    4i+3  output template  (trained, projected to radius ε_f)
    4i+4  label            (never trained; the loss is over these tokens)
    0     separators, padding (neither)

The context embedding is E_C + δ. After each step δ is projected, token by token, on the ball of
radius r_j = ε_{type(j)} · √(d / 2048) (d the embedding width; 2048 is the width the radii were tuned
on):      δ_j ← δ_j · r_j / max(‖δ_j‖₂, r_j).

The loss is the next-token cross-entropy on every label token of the context and of the query,
weighted by γ^m where m counts the examples between the token's and the last one (decay γ):

    L = 1/|Y| Σ_{t ∈ Y} γ^{m(t)} · (−log p(y_t | y_<t)),   Y = {t : type_t > 0, type_t ≡ 0 (mod 4)}.

Classification scores each label word w_c after the query: s_c = Σ_{t ∈ w_c} log p(y_t | y_<t),
prediction argmax_c s_c.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: the radius of tokens that must not move (labels, separators): PEFT's MIN_VALUE
FROZEN_RADIUS = 1e-10
#: the embedding width the paper's ε were set for (PEFT scales by √(d / 2048))
REFERENCE_WIDTH = 2048


def is_label(types: Tensor) -> Tensor:
    """Tokens in the loss: type > 0 and ≡ 0 (mod 4)."""
    return (types > 0) & (types % 4 == 0)


def is_trainable(types: Tensor) -> Tensor:
    """Tokens whose embedding CPT updates: input templates, inputs and output templates (type mod 4 ∈ {1, 2, 3})."""
    return (types > 0) & (types % 4 != 0)


def projection_radius(types: Tensor, epsilon: float, format_epsilon: float, width: int) -> Tensor:
    """r_j = ε_x √(d/2048) for inputs (type ≡ 2), ε_f √(d/2048) for templates (≡ 1, 3), 1e-10 otherwise."""
    scale = math.sqrt(width / REFERENCE_WIDTH)
    r = torch.full(types.shape, FROZEN_RADIUS, dtype=torch.float32, device=types.device)
    kind = types % 4
    r[(types > 0) & ((kind == 1) | (kind == 3))] = format_epsilon * scale
    r[(types > 0) & (kind == 2)] = epsilon * scale
    return r


def project(delta: Tensor, radius: Tensor) -> Tensor:
    """δ_j · r_j / max(‖δ_j‖, r_j): each row of ``delta`` [n, d] onto the L2 ball of its radius [n]."""
    norm = delta.float().norm(dim=-1)
    scale = torch.where(norm > 0, radius / norm.clamp_min(radius), torch.ones_like(norm))
    return delta * scale.to(delta.dtype)[:, None]


def decay_weights(types: Tensor, decay: float) -> Tensor:
    """γ^m per token [B, T]: m = the number of distinct label types above the token's own in its row
    (the last example's labels get 1, the one before γ, ...); 1 where the token is not a label."""
    label = is_label(types)
    if decay == 1.0:
        return torch.ones(types.shape, dtype=torch.float32, device=types.device)
    # rank of each label type among its row's label types, counted from the last
    example = torch.where(label, types // 4, torch.full_like(types, -1))  # label types are 4(i+1)
    present = torch.zeros(types.shape[0], int(example.max()) + 2, dtype=torch.bool, device=types.device)
    present.scatter_(1, (example + 1).clamp_min(0), label)
    present[:, 0] = False
    later = present.flip(1).cumsum(1).flip(1) - present.long()  # label types above each slot
    m = later.gather(1, (example + 1).clamp_min(0))
    return torch.where(label, decay ** m.float(), torch.ones_like(m, dtype=torch.float32))


def cpt_loss(logits: Tensor, input_ids: Tensor, types: Tensor, decay: float = 1.0,
             class_weights: Tensor | None = None) -> Tensor:
    """L above: logits [B, T, V] of the whole sequence (context + query), its ids and types [B, T].

    As PEFT: the mean over every label token of the batch of γ^m · cross-entropy (the weights are
    not renormalised). ``class_weights`` [B, T], where given, multiplies each label token's term as well
    (``balance_weights``)."""
    types = types[:, 1:]
    label = is_label(types)
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten(), reduction="none")
    nll = nll.view_as(types)
    weighted = nll * decay_weights(types, decay)
    if class_weights is not None:
        weighted = weighted * class_weights[:, 1:]
    return weighted[label].mean()


def balance_weights(classes: Tensor) -> Tensor:
    """w_c = n / (C · n_c) for each of n examples of classes [n] (C the classes present, n_c those of class c):
    every class weighs the same in the mean, however unevenly the k examples were drawn; 1 when balanced."""
    present, inverse, counts = classes.unique(return_inverse=True, return_counts=True)
    return (len(classes) / (len(present) * counts.float()))[inverse]


def label_scores(logits: Tensor, input_ids: Tensor, target: Tensor) -> Tensor:
    """s = Σ_t target_t log p(y_t | y_<t) per row [N]: the log-likelihood of the marked label word.
    ``logits`` may cover only the last T' positions of ``input_ids`` (those before the targets)."""
    keep = logits.shape[1]
    ids, target = input_ids[:, -keep:], target[:, -keep:]
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (logp * target[:, 1:]).sum(-1)
