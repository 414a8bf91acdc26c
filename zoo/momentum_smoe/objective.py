r"""MomentumSMoE (Teo & Nguyen, NeurIPS 2024) as pure functions of tensors, in the paper's symbols.

The paper reads the residual stream of a sparse mixture of experts across layers t = 0, 1, … as
gradient descent on a multi-objective problem: the SMoE output f(x_t) = Σ_{i ∈ top-k} g_i(x_t) u_i(x_t)
plays the part of a negative gradient, −∇F(x_t), and the layer is one descent step of size 1:

    SMoE                x_{t+1} = x_t + f(x_t)

Momentum is then added across the layers, with the state p_t carried from layer to layer:

    MomentumSMoE        p_t = −f(x_t) + μ p_{t−1}
                        x_{t+1} = x_t − γ p_t                              (μ = 0, γ = 1: SMoE)

    AdamSMoE            p_t = μ p_{t−1} + (1 − μ) (−f(x_t))
                        m_t = β m_{t−1} + (1 − β) f(x_t) ⊙ f(x_t)
                        x_{t+1} = x_t − γ p_t / √(m_t + ε)

    Robust MomentumSMoE (the robust momentum method of Cyrus et al., 2018: f is evaluated at a
                        look-ahead point y_t)
                        y_t = x_t − λ γ p_{t−1}
                        p_t = −f(y_t) + μ p_{t−1}
                        x_{t+1} = x_t − γ p_t
                        with γ = κ(1 − ρ)²(1 + ρ)/L, μ = κρ³/(κ − 1), λ = ρ³/((κ − 1)(1 − ρ)²(1 + ρ)),
                        κ = L/m the condition number and ρ ∈ [1 − 1/√κ, 1 − 1/κ] the target rate.

(Written x_{t+1} = x_t + γ p_t, with p_t = −f(x_t) + μ p_{t−1}, the sign would turn μ = 0, γ = 1 into
x_t − f(x_t), not SMoE. The paper's heavy-ball form x_{t+1} = x_t − γ p_t is used here, which reduces
to SMoE exactly.)

These are the updates of the residual stream alone. Where a LayerNorm goes is the network's business
(zoo/momentum_smoe/nets.py): the paper's code's block outputs LN₂(x_t + LN(x_{t+1})), and its Adam layer
LN₂(x_t + LN(−γ p_t/√(m_t + ε))), normalising the Adam step before it joins the stream; every layer
carries the un-normalised p_t (and m_t) to the next.

Routing: router logits s(x) = W_g x + b_g ∈ R^E; the top-k experts by s are chosen and their gates are
the softmax of their k logits, g = softmax(s_{top-k}). Load balancing (Switch/GShard style, at the
scale of the paper's code's gate):

    L_balance = E · Σ_i f_i P_i,   f_i = share of the N·k routing slots sent to expert i,
                                   P_i = Σ_n softmax(s_n)_i / (N·k)

P_i is the router probability summed over the N tokens and divided by the number of routed slots N·k,
as the official gate does (so a perfectly uniform router scores 1/k, not 1); the model adds
``load_balance`` times the sum of L_balance over the layers, again as the official trainer does. The
expert load entropy H = −Σ_i f_i log f_i (nats, at most log E) measures how evenly the experts are used.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


# -- routing ---------------------------------------------------------------------------------------

def top_k_routing(router_logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(expert indices [N, k], gate weights [N, k]): the k largest logits, softmax over those k."""
    values, indices = router_logits.topk(k, dim=-1)
    return indices, torch.softmax(values.float(), dim=-1).to(router_logits.dtype)


def expert_fractions(indices: Tensor, num_experts: int) -> Tensor:
    """f_i: the share of routing slots (token, choice) that went to expert i, [E]."""
    counts = torch.bincount(indices.flatten(), minlength=num_experts).to(torch.float32)
    return counts / counts.sum().clamp_min(1)


def load_balancing_loss(router_logits: Tensor, indices: Tensor) -> Tensor:
    """E · Σ_i f_i P_i, f_i from the discrete routing [N, k], P_i = Σ_n softmax(s_n)_i / (N·k): 1/k when
    uniform. The division by the N·k routed slots (not by the N tokens) is the official gate's."""
    E = router_logits.shape[-1]
    P = torch.softmax(router_logits.float(), dim=-1).sum(0) / indices.numel()
    return E * (expert_fractions(indices, E) * P).sum()


def load_entropy(counts: Tensor) -> Tensor:
    """H(f) = −Σ_i f_i log f_i of expert counts [..., E] (nats; 0 log 0 = 0)."""
    f = counts.float() / counts.float().sum(-1, keepdim=True).clamp_min(1e-12)
    return -(f * f.clamp_min(1e-30).log()).sum(-1)


# -- the layer updates -------------------------------------------------------------------------------

def smoe_update(x: Tensor, f_x: Tensor) -> Tensor:
    """x_{t+1} = x_t + f(x_t)."""
    return x + f_x


def momentum_smoe_update(x: Tensor, f_x: Tensor, p_prev: Tensor, mu: float, gamma: float) -> tuple[Tensor, Tensor]:
    """Heavy ball: p_t = −f(x_t) + μ p_{t−1};  x_{t+1} = x_t − γ p_t.  Returns (x_{t+1}, p_t)."""
    p = -f_x + mu * p_prev
    return x - gamma * p, p


def adam_smoe_step(f_x: Tensor, p_prev: Tensor, m_prev: Tensor, mu: float, beta: float, gamma: float,
                   eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """Adam's step across layers: p_t = μ p_{t−1} + (1−μ)(−f);  m_t = β m_{t−1} + (1−β) f⊙f;
    step = −γ p_t/√(m_t + ε). Returns (step, p_t, m_t). ε sits inside the root, as in the paper's code:
    √m has an infinite derivative at m = 0, which a dropped-out (exactly zero) f would otherwise turn
    into NaN gradients."""
    p = mu * p_prev + (1 - mu) * (-f_x)
    m = beta * m_prev + (1 - beta) * f_x * f_x
    return -gamma * p / (m + eps).sqrt(), p, m


def adam_smoe_update(x: Tensor, f_x: Tensor, p_prev: Tensor, m_prev: Tensor, mu: float, beta: float,
                     gamma: float, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """AdamSMoE, the paper's equation: x_{t+1} = x_t − γ p_t/√(m_t + ε). Returns (x_{t+1}, p_t, m_t).

    The paper's code differs: its post-norm Adam layer outputs LN(x − (γ p'/√(m + ε) + x)) =
    LN(−γ p'/√(m + ε)), with p' the average of +f, so it drops the residual x_t there and its
    transformer layer adds x_t back outside the norm, LN(x_t + LN(−γ p'/√(m + ε))): the step is
    normalised before it joins the stream (nets.py, ``norm="official"``). The sign of f is immaterial,
    the experts learn it."""
    step, p, m = adam_smoe_step(f_x, p_prev, m_prev, mu, beta, gamma, eps)
    return x + step, p, m


def robust_momentum_parameters(L: float, kappa: float, rho: float) -> tuple[float, float, float]:
    """(γ, μ, λ) of the robust momentum method for an L-smooth, m-strongly convex F with κ = L/m.

    γ = κ(1−ρ)²(1+ρ)/L (step), μ = κρ³/(κ−1) (momentum), λ = ρ³/((κ−1)(1−ρ)²(1+ρ)) (look-ahead)."""
    if not kappa > 1:
        raise ValueError(f"--model.robust_kappa must be > 1 (the condition number L/m), got {kappa}")
    lo, hi = 1 - 1 / math.sqrt(kappa), 1 - 1 / kappa
    if not lo - 1e-12 <= rho <= hi + 1e-12:
        raise ValueError(f"--model.robust_rho must lie in [1 − 1/√κ, 1 − 1/κ] = [{lo:.4g}, {hi:.4g}] "
                         f"for κ = {kappa}, got {rho}")
    if not L > 0:
        raise ValueError(f"--model.robust_L must be > 0, got {L}")
    gamma = kappa * (1 - rho) ** 2 * (1 + rho) / L
    mu = kappa * rho**3 / (kappa - 1)
    lam = rho**3 / ((kappa - 1) * (1 - rho) ** 2 * (1 + rho))
    return gamma, mu, lam


def robust_lookahead(x: Tensor, p_prev: Tensor, gamma: float, lam: float) -> Tensor:
    """y_t = x_t − λ γ p_{t−1}  (= x_t + λ (x_t − x_{t−1}))."""
    return x - lam * gamma * p_prev


def robust_momentum_smoe_update(x: Tensor, f_y: Tensor, p_prev: Tensor, mu: float, gamma: float) -> tuple[Tensor, Tensor]:
    """p_t = −f(y_t) + μ p_{t−1};  x_{t+1} = x_t − γ p_t, with f evaluated at the look-ahead y_t."""
    return momentum_smoe_update(x, f_y, p_prev, mu, gamma)
