r"""The Deep GA's equations (Such et al., 2017, Algorithm 1 and Section 3) as pure tensor functions.

An individual is its chain of seeds τ = (τ₀, τ₁, …, τ_g); its weights are rebuilt as

    θ⁰ = φ(τ₀) = s ⊙ ε(τ₀)                        (initialisation: s = std/√fan_in per weight, 0 for biases)
    θⁿ = ψ(θⁿ⁻¹, τ_n) = θⁿ⁻¹ + σ ε(τ_n)            (Gaussian mutation)

with ε(τ) ~ N(0, I) drawn from a CPU ``torch.Generator`` seeded with τ, so that every rank and every
machine rebuilds θ bit for bit from the chain alone. One generation sorts the offspring by fitness
F, keeps the top T as parents (truncation selection), re-evaluates the elite candidates
C = P[1..9] ∪ {Elite} on more episodes, and carries the best of C unmutated (elitism).

Novelty search (Lehman & Stanley, 2011) replaces F by the novelty of a behaviour characterisation
b(θ), its mean distance to the k nearest neighbours among the archive A and the population:

    N(θ) = (1/k) Σ_{j=1..k} ‖b(θ) − μ_j‖,   μ_j the j-th nearest of A ∪ P \ {θ}
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def epsilon(seed: int, n: int) -> Tensor:
    """ε(τ) ~ N(0, I_n), float32, from a CPU generator seeded with τ: the same on every rank and device."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return torch.randn(n, generator=g)


def initial_theta(seed: int, init_scale: Tensor) -> Tensor:
    """θ⁰ = s ⊙ ε(τ₀): the policy initialisation φ, a seeded draw scaled per parameter."""
    return epsilon(seed, init_scale.numel()) * init_scale


def mutate(theta: Tensor, seed: int, sigma: float) -> Tensor:
    """ψ(θ, τ) = θ + σ ε(τ), the Gaussian mutation (a new tensor; θ is left as it was)."""
    return theta + sigma * epsilon(seed, theta.numel())


def theta_from_chain(chain: Sequence[int], init_scale: Tensor, sigma: float) -> Tensor:
    """θ of the seed chain (τ₀, τ₁, …): φ(τ₀), then each mutation in order."""
    if len(chain) == 0:
        raise ValueError("a seed chain holds at least the initialisation seed")
    theta = initial_theta(chain[0], init_scale)
    for seed in chain[1:]:
        theta = mutate(theta, seed, sigma)
    return theta


def rank_by(scores: Tensor) -> Tensor:
    """Indices that sort ``scores`` from best to worst; ties keep the lower index first (a stable sort)."""
    return torch.sort(scores, descending=True, stable=True).indices


def truncation_selection(scores: Tensor, T: int) -> Tensor:
    """The indices of the top T individuals, best first: the parents of the next generation."""
    if not 1 <= T <= len(scores):
        raise ValueError(f"truncation size T = {T} must lie in [1, {len(scores)}]")
    return rank_by(scores)[:T]


def elite_candidates(scores: Tensor, n: int, has_elite: bool) -> Tensor:
    """The offspring re-evaluated for elitism: the top n in the first generation, else the top n − 1
    (the previous elite being the n-th candidate)."""
    return rank_by(scores)[: n - 1 if has_elite else n]


def select_elite(candidate_returns: Tensor) -> int:
    """Elite = argmax over candidates of the mean return of their extra episodes ([C, episodes]);
    ties go to the first candidate."""
    return int(rank_by(candidate_returns.double().mean(1))[0])


def novelty(behaviours: Tensor, reference: Tensor, k: int, self_index: Tensor | None = None) -> Tensor:
    """N(b_i) = mean distance of b_i to its k nearest neighbours in ``reference`` ([m, d]).

    ``self_index[i]`` is the row of ``reference`` that is b_i itself (the population is part of the
    reference set), excluded from b_i's neighbours; −1 or None where b_i is not in it. With fewer than
    k neighbours, the mean runs over all there are."""
    distances = torch.cdist(behaviours.double(), reference.double())
    if self_index is not None:
        rows = torch.nonzero(self_index >= 0).flatten()
        distances[rows, self_index[rows]] = float("inf")
    k = min(k, reference.shape[0] - (0 if self_index is None else int((self_index >= 0).any())))
    if k < 1:
        return torch.zeros(len(behaviours), dtype=torch.float64)
    return distances.topk(k, dim=1, largest=False).values.mean(1)
