r"""The mathematics of Mirror Descent Policy Optimization (Tomar, Shani, Efroni & Ghavamzadeh, ICLR 2022),
as pure functions of tensors.

MDPO solves each policy-improvement step approximately, by m gradient steps on a trust-region
problem whose proximity term is the KL divergence to the previous policy π_θk:

on-policy (eq. 7 of the paper)

    θ_{k+1} ← argmin_θ  −E_{s,a∼π_θk}[ π_θ(a|s)/π_θk(a|s) · A^{θk}(s, a) ] + (1/t_k) E_s[ KL(π_θ(·|s) ‖ π_θk(·|s)) ]

off-policy (the SAC-like variant), with a reparametrised action ã = f_θ(ε; s), a replay buffer D
and the entropy weight λ; the regulariser is linearised at π_θk, as in the official code
(mdpo_off/mdpo.py L227: ``logp_pi * c + (λ − c) * logp_pi_old − qf1_pi`` with c = 1/t_k)

    θ_{k+1} ← argmin_θ  E_{s∼D, ε}[ λ log π_θk(ã|s) − Q_ψ(s, ã) ] + (1/t_k) E_{s∼D}[ KL(π_θ(·|s) ‖ π_θk(·|s)) ]

    ψ ← argmin_ψ Σ_i E_{(s,a,r,s')∼D}[ (Q_ψi(s, a) − y)² ],
    y = r + γ (1 − d) ( min_i Q_ψ̄i(s', a') − λ log π_θ(a'|s') ),  a' ∼ π_θ(·|s')

On-policy the step size anneals, t_k = 1 − k/K over the run's K iterations (so the KL weight 1/t_k
grows from 1 to K); off-policy it is a constant (the paper's appendix and the official ``klconst``).

KL divergences are in closed form: categorical, and diagonal Gaussian. A tanh-squashed Gaussian has
the same KL as the Gaussian it squashes, because KL is invariant under the bijection a = tanh(u).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.rl import gae  # noqa: F401  (generalised advantage estimation, shared with the other RL methods)

LOG_2PI = math.log(2 * math.pi)


# -- distributions ------------------------------------------------------------------------------

def categorical_log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """log π(a|s) of integer actions under softmax(logits); logits [..., n], actions [...]."""
    return logits.log_softmax(-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: Tensor) -> Tensor:
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def categorical_kl(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """KL(p ‖ q) = Σ_a p(a) (log p(a) − log q(a)) for p = softmax(logits_p), q = softmax(logits_q)."""
    logp, logq = logits_p.log_softmax(-1), logits_q.log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def gaussian_log_prob(u: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log N(u; μ, diag σ²), summed over the last (action) dimension."""
    z = (u - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)


def gaussian_entropy(log_std: Tensor) -> Tensor:
    return (log_std + 0.5 * (1 + LOG_2PI)).sum(-1)


def gaussian_kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    """KL(N(μp, σp²) ‖ N(μq, σq²)) for diagonal Gaussians, summed over the action dimension:

        Σ_j  log σq_j/σp_j + (σp_j² + (μp_j − μq_j)²) / (2 σq_j²) − 1/2
    """
    var_ratio = torch.exp(2 * (log_std_p - log_std_q))
    mahalanobis = ((mean_p - mean_q) * torch.exp(-log_std_q)).pow(2)
    return (log_std_q - log_std_p + 0.5 * (var_ratio + mahalanobis) - 0.5).sum(-1)


def tanh_log_det_jacobian(u: Tensor) -> Tensor:
    """Σ_j log(1 − tanh(u_j)²), computed stably as Σ_j 2 (log 2 − u_j − softplus(−2 u_j))."""
    return (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)


def tanh_gaussian_log_prob(u: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log π(a|s) of a = tanh(u), u ∼ N(μ, σ²): the Gaussian density less the log-Jacobian of tanh."""
    return gaussian_log_prob(u, mean, log_std) - tanh_log_det_jacobian(u)


# -- the step size -----------------------------------------------------------------------------

def step_size(k: int | Tensor, K: int) -> float | Tensor:
    """t_k = 1 − k/K for iteration k ∈ {0, …, K−1} of K: from 1 down to 1/K."""
    if K <= 0:
        raise ValueError(f"the number of iterations K must be positive, got {K}")
    return 1.0 - k / K


# -- losses ------------------------------------------------------------------------------------

def mdpo_on_policy_loss(log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, kl: Tensor,
                        t_k: float) -> Tensor:
    """−E[ρ · A] + (1/t_k) E[KL(π_θ ‖ π_θk)], with ρ = π_θ(a|s) / π_θk(a|s) = exp(log π_θ − log π_θk)."""
    ratio = torch.exp(log_prob - old_log_prob)
    return -(ratio * advantages).mean() + kl.mean() / t_k


def mdpo_off_policy_actor_loss(q: Tensor, old_log_prob: Tensor, kl: Tensor, t_k: float,
                               lam: float | Tensor) -> Tensor:
    """E[λ log π_θk(ã|s) − Q(s, ã)] + (1/t_k) E[KL(π_θ(·|s) ‖ π_θk(·|s))] for reparametrised actions ã ∼ π_θ.

    The entropy term is the old policy's log-density at the new action: the MD step linearises the
    entropy regulariser at π_θk. With π_θk uniform, log π_θk is a constant and the loss is SAC's
    with temperature 1/t_k; with t_k = 1 and the one-sample KL estimate log π_θ(ã) − log π_θk(ã) it
    is the official code's ``logp_pi + (λ − 1) logp_pi_old − qf1_pi``.
    """
    return (lam * old_log_prob - q).mean() + kl.mean() / t_k


def policy_regularization(mean: Tensor, log_std: Tensor, weight: float) -> Tensor:
    """weight · (E[μ²] + E[(log σ)²]), the official actor's penalty on the Gaussian's parameters
    (mdpo_off/mdpo.py L232-238, weight 10⁻³), which keeps μ inside tanh's responsive range."""
    return weight * (mean.pow(2).mean() + log_std.pow(2).mean())


def soft_q_target(rewards: Tensor, terminated: Tensor, next_q1: Tensor, next_q2: Tensor, next_log_prob: Tensor,
                  gamma: float, alpha: float | Tensor) -> Tensor:
    """y = r + γ (1 − d) (min(Q̄1, Q̄2)(s', a') − λ log π(a'|s')), a' ∼ π(·|s'); no gradient flows through y."""
    soft_value = torch.minimum(next_q1, next_q2) - alpha * next_log_prob
    return (rewards + gamma * (1.0 - terminated.float()) * soft_value).detach()


def twin_q_loss(q1: Tensor, q2: Tensor, target: Tensor) -> Tensor:
    """Σ_i E[(Q_i(s, a) − y)²] / 2 over the two critics."""
    return 0.5 * ((q1 - target).pow(2).mean() + (q2 - target).pow(2).mean())


def temperature_loss(log_alpha: Tensor, log_prob: Tensor, target_entropy: float) -> Tensor:
    """The entropy-temperature objective −E[log λ · (log π(a|s) + H̄)]: λ rises while the entropy is below H̄."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()
