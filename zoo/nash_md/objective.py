"""Nash learning from human feedback (Munos et al., ICML 2024): the equations as pure tensor functions.

Notation of the paper. A preference model P(y ≻ y' | x) ∈ [0, 1] with P(y ≻ y') + P(y' ≻ y) = 1; for
policies, P(π ≻ π') = E_{y∼π, y'∼π'} P(y ≻ y'). μ is the reference policy, τ > 0 the strength of the
KL regularisation, and the regularised preference is

    P_τ(π ≻ π') = P(π ≻ π') − τ KL(π ‖ μ) + τ KL(π' ‖ μ),

whose unique Nash equilibrium π*_τ = argmax_π min_π' P_τ(π ≻ π') is the regularised Nash equilibrium.

Tabular (n responses, P an n×n matrix with P[i, j] = P(y_i ≻ y_j)): Nash-MD is mirror descent against
the geometric mixture of the current policy and μ,

    π_t^μ(y) ∝ π_t(y)^(1−β) μ(y)^β,  β = ητ                           (geometric_mixture)
    π_{t+1}(y) ∝ π_t^μ(y) exp(η P(y ≻ π_t^μ))                          (nash_md_update)

Language models: y ∼ π_θ(·|x), y' ∼ π_θ^β(·|x), the token-level geometric mixture whose next-token
log-probabilities are log_softmax((1 − β) z_θ + β z_μ) of the two models' logits, and

    Nash-MD     loss = −(P(y ≻ y'|x) − ½) log π_θ(y|x) + τ Σ_n sg[log π_θ(y_n|·)/μ(y_n|·)] log π_θ(y_n|·)
    Nash-MD-PG  loss = −sg[P(y ≻ y'|x) − ½ − τ log π_θ(y|x)/μ(y|x)] log π_θ(y|x)

(sg: stop-gradient). The second is the paper's policy gradient; the first keeps TRL's per-token
REINFORCE estimate of the KL term.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# -- tabular: policies are probability vectors over n responses ---------------------------------


def kl(p: Tensor, q: Tensor) -> Tensor:
    """KL(p ‖ q) = Σ_y p(y) log(p(y)/q(y)), with 0 log 0 = 0."""
    return torch.where(p > 0, p * (p.clamp_min(1e-300).log() - q.clamp_min(1e-300).log()), p.new_zeros(())).sum(-1)


def geometric_mixture(pi: Tensor, mu: Tensor, beta: float) -> Tensor:
    """π^β(y) ∝ π(y)^(1−β) μ(y)^β: the regularised policy of Nash-MD (β = ητ)."""
    return torch.softmax((1 - beta) * pi.log() + beta * mu.log(), dim=-1)


def preference_against(P: Tensor, pi: Tensor) -> Tensor:
    """P(y ≻ π) = Σ_{y'} π(y') P(y ≻ y') for every response y: [n]."""
    return P @ pi


def nash_md_update(pi: Tensor, mu: Tensor, P: Tensor, eta: float, tau: float, against: str = "mixture") -> Tensor:
    """One step of Nash-MD: π_{t+1} ∝ π_t^μ · exp(η P(y ≻ π_t^μ)), π_t^μ ∝ π_t^(1−ητ) μ^(ητ).

    ``against="current"`` plays against π_t instead of the mixture, π_{t+1} ∝ π_t^μ · exp(η P(y ≻ π_t))
    (magnetic mirror descent); its fixed point is exactly π*_τ for any small enough constant η,
    whereas the paper's Nash-MD reaches π*_τ with a decreasing η_t (constant η: within O(η/τ)).
    """
    if not 0 <= eta * tau <= 1:
        raise ValueError(f"the mixture weight β = ητ = {eta * tau} must lie in [0, 1]: lower η or τ")
    mixture = geometric_mixture(pi, mu, eta * tau)
    opponent = mixture if against == "mixture" else pi
    return torch.softmax(mixture.log() + eta * preference_against(P, opponent), dim=-1)


def self_play_update(pi: Tensor, P: Tensor, eta: float) -> Tensor:
    """Self-play mirror descent without the mixture (β = 0): π_{t+1} ∝ π_t exp(η P(y ≻ π_t))."""
    return torch.softmax(pi.log() + eta * preference_against(P, pi), dim=-1)


def regularised_preference(pi: Tensor, pi_prime: Tensor, P: Tensor, mu: Tensor, tau: float) -> Tensor:
    """P_τ(π ≻ π') = πᵀ P π' − τ KL(π ‖ μ) + τ KL(π' ‖ μ)."""
    return pi @ P @ pi_prime - tau * kl(pi, mu) + tau * kl(pi_prime, mu)


def best_response_value(pi: Tensor, P: Tensor, mu: Tensor, tau: float) -> Tensor:
    """max_π' [P(π' ≻ π) − τ KL(π' ‖ μ)] = τ log Σ_y μ(y) exp(P(y ≻ π)/τ)  (τ = 0: max_y P(y ≻ π))."""
    if tau == 0:
        return preference_against(P, pi).max()
    return tau * torch.logsumexp(mu.log() + preference_against(P, pi) / tau, dim=-1)


def exploitability(pi: Tensor, P: Tensor, mu: Tensor, tau: float) -> Tensor:
    """max_π' P_τ(π' ≻ π) − ½ ≥ 0, zero exactly at the regularised Nash equilibrium π*_τ.

    P_τ(π' ≻ π) = P(π' ≻ π) − τ KL(π' ‖ μ) + τ KL(π ‖ μ), maximised over π' in closed form."""
    return best_response_value(pi, P, mu, tau) + tau * kl(pi, mu) - 0.5


def regularised_nash(P: Tensor, mu: Tensor, tau: float, tol: float = 1e-13) -> Tensor:
    """π*_τ, the unique fixed point of π = softmax(log μ + P π / τ), in float64.

    Newton's method on G(π) = π − softmax(log μ + Pπ/τ), with backtracking so that the residual
    falls at every step, followed along a path of decreasing temperatures from max(τ, 1) down to τ
    (each solution starts the next). Raises if the residual does not reach ``tol``.
    """
    if tau <= 0:
        raise ValueError(f"τ must be > 0 for the regularised equilibrium, got {tau}")
    P, mu = P.double(), mu.double()
    eye = torch.eye(len(mu), dtype=P.dtype)
    pi = mu.clone()
    temperatures = [max(tau, 1.0) * 0.8**k for k in range(200) if max(tau, 1.0) * 0.8**k > tau] + [tau]
    for t in temperatures:
        target = lambda p: torch.softmax(mu.log() + P @ p / t, dim=-1)  # noqa: E731
        for _ in range(100):
            s = target(pi)
            residual = (pi - s).abs().max()
            if residual < tol:
                break
            jacobian = eye - (torch.diag(s) - torch.outer(s, s)) @ P / t
            step = torch.linalg.solve(jacobian, s - pi)
            scale = 1.0
            while scale > 1e-10:
                new = pi + scale * step
                if (new > 0).all() and (new - target(new)).abs().max() < residual:
                    break
                scale /= 2
            pi = new / new.sum()
    residual = (pi - torch.softmax(mu.log() + P @ pi / tau, dim=-1)).abs().max()
    if residual >= tol:
        raise RuntimeError(f"regularised_nash stopped at a residual of {float(residual):.3g} (wanted {tol})")
    return pi


def bradley_terry_fit(P: Tensor, weights: Tensor, tol: float = 1e-12) -> Tensor:
    """The Bradley–Terry reward r that best explains P on pairs drawn with probabilities ``weights``:

        r = argmin_r −Σ_{y, y'} w(y, y') [P(y ≻ y') log σ(r(y) − r(y'))],   Σ_y r(y) = 0.

    RLHF's first stage; with w = μ μᵀ the pairs are responses of the reference policy. Newton's method
    on the (convex) loss, in float64."""
    P, w = P.double(), weights.double()
    n = P.shape[0]
    r = torch.zeros(n, dtype=P.dtype)
    for _ in range(100):
        d = r[:, None] - r[None, :]
        s = torch.sigmoid(d)
        grad = (w * (s - P)).sum(1) - (w * (s - P)).sum(0)  # ∂/∂r_i over pairs (i, ·) and (·, i)
        h = w * s * (1 - s)
        hess = torch.diag((h + h.T).sum(1)) - (h + h.T)
        step = torch.linalg.lstsq(hess + torch.full_like(hess, 1.0 / n), -grad[:, None]).solution[:, 0]
        r = r + step
        r = r - r.mean()
        if step.abs().max() < tol:
            break
    return r


def kl_regularised_optimum(r: Tensor, mu: Tensor, tau: float) -> Tensor:
    """argmax_π E_π[r] − τ KL(π ‖ μ) = μ exp(r/τ) / Z: RLHF's second stage, in closed form."""
    return torch.softmax(mu.log() + r / tau, dim=-1)


def rlhf_update(pi: Tensor, mu: Tensor, r: Tensor, eta: float, tau: float) -> Tensor:
    """Mirror descent on the KL-regularised reward, π_{t+1} ∝ π_t^(1−ητ) μ^(ητ) exp(η r): converges to
    ``kl_regularised_optimum`` (the iterate RLHF's curve shows)."""
    return torch.softmax((1 - eta * tau) * pi.log() + eta * tau * mu.log() + eta * r, dim=-1)


# -- language models --------------------------------------------------------------------------------


def geometric_mixture_logits(policy_logits: Tensor, reference_logits: Tensor, beta: float) -> Tensor:
    """Next-token log-probabilities of π^β: log_softmax((1 − β) z_θ + β z_μ) (in float32).

    Equal to the normalised (1 − β) log π_θ + β log μ, since the log-partition terms only shift."""
    return F.log_softmax((1 - beta) * policy_logits.float() + beta * reference_logits.float(), dim=-1)


def nash_md_loss(logp: Tensor, ref_logp: Tensor, mask: Tensor, preference: Tensor, tau: float) -> Tensor:
    """Nash-MD's per-sequence loss: −(P(y ≻ y') − ½) log π_θ(y|x) + τ KL̂, [B].

    ``logp``, ``ref_logp`` [B, N]: log π_θ(y_n|x, y_<n) (with gradient) and log μ(y_n|x, y_<n) of the
    N response tokens, ``mask`` [B, N] 1 on real tokens; ``preference`` [B] is P(y ≻ y'|x).
    KL̂ = Σ_n sg[log π_θ/μ] log π_θ(y_n|·): its value is log π_θ(y)·(per-token log-ratio), its gradient
    the per-token REINFORCE estimate of ∇KL(π_θ ‖ μ) (TRL's estimator)."""
    m = mask.to(logp.dtype)
    seq_logp = (logp * m).sum(-1)
    kl_term = ((logp - ref_logp).detach() * logp * m).sum(-1)
    return -(preference.detach() - 0.5) * seq_logp + tau * kl_term


def nash_md_pg_loss(logp: Tensor, ref_logp: Tensor, mask: Tensor, preference: Tensor, tau: float) -> Tensor:
    """Nash-MD-PG's per-sequence loss: −sg[P(y ≻ y'|x) − ½ − τ log π_θ(y|x)/μ(y|x)] · log π_θ(y|x), [B].

    Its gradient is the paper's estimate E[∇log π_θ(y|x) (P(y ≻ y'|x) − ½ − τ log π_θ(y|x)/μ(y|x))]."""
    m = mask.to(logp.dtype)
    seq_logp = (logp * m).sum(-1)
    log_ratio = ((logp - ref_logp) * m).sum(-1)
    advantage = preference - 0.5 - tau * log_ratio
    return -advantage.detach() * seq_logp


def rlhf_loss(logp: Tensor, ref_logp: Tensor, mask: Tensor, reward: Tensor, baseline: Tensor, tau: float) -> Tensor:
    """The RLHF baseline's per-sequence loss: −(r(x, y) − b) log π_θ(y|x) + τ KL̂ (KL̂ as in Nash-MD),
    where b is the reward of a second sample y' ∼ π_θ (a baseline that keeps the estimate unbiased)."""
    m = mask.to(logp.dtype)
    seq_logp = (logp * m).sum(-1)
    kl_term = ((logp - ref_logp).detach() * logp * m).sum(-1)
    return -(reward - baseline).detach() * seq_logp + tau * kl_term


def sequence_kl(logp: Tensor, ref_logp: Tensor, mask: Tensor) -> Tensor:
    """The single-sample estimate log π_θ(y|x)/μ(y|x) of KL(π_θ ‖ μ) for y ∼ π_θ, [B] (for logging)."""
    return ((logp - ref_logp) * mask.to(logp.dtype)).sum(-1).detach()


def win_rate_interval(p: Tensor, z: float = 1.96) -> tuple[float, float]:
    """Mean of per-prompt preference probabilities and the half-width of its normal 95 % interval."""
    p = p.double()
    half = z * float(p.std(unbiased=True)) / math.sqrt(len(p)) if len(p) > 1 else float("nan")
    return float(p.mean()), half
