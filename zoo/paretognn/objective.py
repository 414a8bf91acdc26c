r"""The math of ParetoGNN (Ju et al., ICLR 2023) as pure tensor functions.

Five pretext tasks, each a loss of the shared encoder's node embeddings h = f(X, A):

    P_recon   masked feature reconstruction with the scaled cosine error (GraphMAE)
              L = mean_{v ∈ masked} (1 − cos(x̂_v, x_v))^α
    P_ming    node-vs-summary mutual information (DGI): s = σ(mean_v h_v), D(h, s) = hᵀ W s,
              L = BCE(D(h_v, s), 1) + BCE(D(h̃_v, s), 0)     h̃ = f(X[perm], A), the corrupted graph
    P_minsg   subgraph contrastive InfoNCE between two augmented views (τ = 0.1):
              ℓ(u_i, v_i) = −log e^{θ(u_i,v_i)/τ} / (Σ_k e^{θ(u_i,v_k)/τ} + Σ_{k≠i} e^{θ(u_i,u_k)/τ}),
              L = ½ mean_i [ℓ(u_i, v_i) + ℓ(v_i, u_i)],   θ the cosine similarity
    P_decor   CCA-SSG: Z̃ = (H − μ) / (σ √N) per view,
              L = ‖Z̃_A − Z̃_B‖²_F + λ (‖Z̃_Aᵀ Z̃_A − I‖²_F + ‖Z̃_Bᵀ Z̃_B − I‖²_F),   λ = 1e-3
    P_link    link reconstruction: BCE of edge logits, observed edges 1, uniform non-edges 0

Multiple-gradient descent (Sener & Koltun, 2018; Désidéri, 2012) reconciles them: with g_t the
gradient of task t with respect to the shared encoder, L2-normalised, the weights are the
min-norm point of the convex hull of the gradients,

    α* = argmin_{α ∈ Δ_T} ‖Σ_t α_t g_t‖²,

found by Frank–Wolfe on the Gram matrix M_ij = ⟨g_i, g_j⟩, each step an exact line search
between the current point and the vertex e_t with t = argmin_r (M α)_r (min_norm_2 below).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

TASKS = ("recon", "ming", "minsg", "decor", "link")


# -- the five pretext losses ---------------------------------------------------------------

def scaled_cosine_error(x_pred: Tensor, x_target: Tensor, alpha: float = 3.0) -> Tensor:
    """GraphMAE's SCE: mean over rows of (1 − cos(x̂, x))^α (α ≥ 1 down-weights easy rows)."""
    cos = (F.normalize(x_pred, dim=-1) * F.normalize(x_target, dim=-1)).sum(-1)
    return (1 - cos).pow(alpha).mean()


def dgi_loss(h_pos: Tensor, h_neg: Tensor, weight: Tensor) -> Tensor:
    """DGI: a bilinear discriminator hᵀ W s tells real nodes from corrupted ones against the
    summary s = σ(mean of the real embeddings); the sum of the two BCE terms."""
    summary = torch.sigmoid(h_pos.mean(0))
    ws = weight @ summary
    pos, neg = h_pos @ ws, h_neg @ ws
    return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
            + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))


def infonce_loss(u: Tensor, v: Tensor, tau: float = 0.1) -> Tensor:
    """Symmetric InfoNCE between two views; node i of one view is the positive of node i of the
    other, every other node of both views a negative (GRACE's form, as in ParetoGNN's P_minsg)."""
    u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
    between = u @ v.T / tau  # θ(u_i, v_k)/τ; its transpose serves the other side
    eye = torch.eye(u.shape[0], dtype=torch.bool, device=u.device)
    refl_u = (u @ u.T / tau).masked_fill(eye, float("-inf"))  # k ≠ i
    refl_v = (v @ v.T / tau).masked_fill(eye, float("-inf"))
    positive = between.diagonal()
    loss_u = torch.logaddexp(between.logsumexp(1), refl_u.logsumexp(1)) - positive
    loss_v = torch.logaddexp(between.logsumexp(0), refl_v.logsumexp(1)) - positive
    return 0.5 * (loss_u + loss_v).mean()


def cca_ssg_loss(h_a: Tensor, h_b: Tensor, lambd: float = 1e-3, eps: float = 1e-8) -> Tensor:
    """CCA-SSG (Zhang et al. 2021): invariance between the standardised views plus λ times the
    decorrelation of each view's features. Standardised with the unbiased std, as CCA-SSG's code.

    ParetoGNN's code takes the unsquared Frobenius norms; this is CCA-SSG's equation (squared).
    """
    n = h_a.shape[0]
    z_a = (h_a - h_a.mean(0)) / (h_a.std(0) + eps) / n**0.5
    z_b = (h_b - h_b.mean(0)) / (h_b.std(0) + eps) / n**0.5
    eye = torch.eye(h_a.shape[1], dtype=h_a.dtype, device=h_a.device)
    invariance = (z_a - z_b).pow(2).sum()
    decorrelation = (z_a.T @ z_a - eye).pow(2).sum() + (z_b.T @ z_b - eye).pow(2).sum()
    return invariance + lambd * decorrelation


def link_reconstruction_loss(pos_logits: Tensor, neg_logits: Tensor) -> Tensor:
    """BCE over the observed edges (label 1) and the sampled non-edges (label 0), one mean."""
    logits = torch.cat([pos_logits, neg_logits])
    labels = torch.cat([torch.ones_like(pos_logits), torch.zeros_like(neg_logits)])
    return F.binary_cross_entropy_with_logits(logits, labels)


# -- multiple-gradient descent -------------------------------------------------------------

def normalise_gradients(grads: Tensor, kind: str = "l2", losses: Tensor | None = None, eps: float = 1e-12) -> Tensor:
    """Rows of grads [T, P] scaled before the solver: ``l2`` to unit norm, ``loss`` divided by
    the task's loss, ``none`` as they are (ParetoGNN's --grad_norm; l2 is its default)."""
    if kind == "l2":
        return grads / grads.norm(dim=1, keepdim=True).clamp_min(eps)
    if kind == "loss":
        if losses is None:
            raise ValueError("grad_norm 'loss' needs the task losses")
        return grads / losses[:, None].clamp_min(eps)
    if kind == "none":
        return grads
    raise ValueError(f"unknown gradient normalisation {kind!r}; use l2, loss or none")


def min_norm_2(g11: float, g12: float, g22: float) -> float:
    """γ ∈ [0, 1] minimising ‖γ a + (1 − γ) b‖² given ⟨a,a⟩, ⟨a,b⟩, ⟨b,b⟩ (closed form):
    γ = ⟨b − a, b⟩ / ‖a − b‖², clipped to [0, 1]."""
    g11, g12, g22 = float(g11), float(g12), float(g22)
    return min(1.0, max(0.0, (g22 - g12) / max(g11 + g22 - 2 * g12, 1e-20)))


def min_norm_weights(gram: Tensor, max_iter: int = 250, tol: float = 1e-5) -> Tensor:
    """α* = argmin_{α ∈ simplex} αᵀ M α for the Gram matrix M [T, T], by Frank–Wolfe.

    Starts from the best pair (the closed form on every pair, as Sener & Koltun's solver),
    which is the exact answer for T = 2; then Frank–Wolfe steps with exact line search until
    the weights move less than ``tol`` in L1. The T × T problem is solved in float64 on the CPU.
    """
    m = gram.detach().double().cpu().numpy()
    n = m.shape[0]
    best, alpha = np.inf, np.ones(1)
    for i in range(n):
        for j in range(i + 1, n):
            g = min_norm_2(m[i, i], m[i, j], m[j, j])
            cost = g * g * m[i, i] + 2 * g * (1 - g) * m[i, j] + (1 - g) ** 2 * m[j, j]
            if cost < best:
                best, alpha = cost, np.zeros(n)
                alpha[i], alpha[j] = g, 1 - g
    for _ in range(max_iter if n > 2 else 0):
        m_alpha = m @ alpha
        t = int(np.argmin(m_alpha))
        gamma = min_norm_2(alpha @ m_alpha, m_alpha[t], m[t, t])
        new = gamma * alpha
        new[t] += 1 - gamma
        if np.abs(new - alpha).sum() < tol:
            alpha = new
            break
        alpha = new
    return torch.from_numpy(alpha)


def mgda_weights(grads: Tensor, normalisation: str = "l2", losses: Tensor | None = None,
                 max_iter: int = 250, tol: float = 1e-5) -> Tensor:
    """The min-norm task weights [T] for per-task gradients [T, P] of the shared parameters."""
    g = normalise_gradients(grads.double(), normalisation, None if losses is None else losses.double())
    return min_norm_weights(g @ g.T, max_iter, tol).to(grads.device, grads.dtype)
