"""ParetoGNN's math against hand computations and an exact QP."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from zoo.paretognn.objective import (
    cca_ssg_loss,
    dgi_loss,
    infonce_loss,
    link_reconstruction_loss,
    mgda_weights,
    min_norm_2,
    min_norm_weights,
    normalise_gradients,
    scaled_cosine_error,
)


def softplus(z: float) -> float:
    return math.log1p(math.exp(z))


# -- the five pretext losses on toy inputs --------------------------------------------------

def test_scaled_cosine_error_by_hand():
    # rows: identical directions (cos 1) and 45° apart (cos 1/√2); scale does not matter
    pred = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    for alpha in (1.0, 2.0, 3.0):
        expected = (0.0 + (1 - 1 / math.sqrt(2)) ** alpha) / 2
        assert scaled_cosine_error(pred, target, alpha).item() == pytest.approx(expected, rel=1e-6)


def test_dgi_loss_by_hand():
    # summary s = σ(mean h_pos) = σ(0.5)·[1, 1]; W = diag(2, 0) so W s = [2σ(0.5), 0]
    h_pos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    h_neg = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    w = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    a = 2 / (1 + math.exp(-0.5))
    # positive scores [a, 0] with label 1, negative scores [0, a] with label 0
    expected = (softplus(-a) + softplus(0)) / 2 + (softplus(0) + softplus(a)) / 2
    assert dgi_loss(h_pos, h_neg, w).item() == pytest.approx(expected, rel=1e-6)


def test_infonce_by_hand():
    # two orthonormal nodes, identical views: θ(u_i, v_i) = 1, every other similarity 0. For each
    # anchor: positive e^{1/τ} against e^{1/τ} + e^0 (other node, other view) + e^0 (other node, same view)
    u = torch.eye(2, dtype=torch.float64)
    for tau in (1.0, 0.5, 0.1):
        expected = math.log(math.exp(1 / tau) + 2) - 1 / tau
        assert infonce_loss(u, u.clone(), tau).item() == pytest.approx(expected, rel=1e-6)
    # views in the other order give the same symmetric loss
    v = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    assert infonce_loss(u, v).item() == pytest.approx(infonce_loss(v, u).item(), rel=1e-6)


def test_infonce_against_a_loop():
    torch.manual_seed(0)
    u, v, tau = torch.randn(5, 3), torch.randn(5, 3), 0.1
    cos = lambda a, b: float(torch.nn.functional.cosine_similarity(a, b, dim=0))  # noqa: E731

    def side(a, b, i):
        den = sum(math.exp(cos(a[i], b[k]) / tau) for k in range(5)) + sum(
            math.exp(cos(a[i], a[k]) / tau) for k in range(5) if k != i)
        return -math.log(math.exp(cos(a[i], b[i]) / tau) / den)

    expected = sum(0.5 * (side(u, v, i) + side(v, u, i)) for i in range(5)) / 5
    assert infonce_loss(u, v, tau).item() == pytest.approx(expected, rel=1e-5)


def test_cca_ssg_by_hand():
    # three nodes, one feature: views [0,1,2] and [0,2,1] both have mean 1, std 1, so
    # z̃_A = [-1,0,1]/√3, z̃_B = [-1,1,0]/√3: invariance (1 + 1)/3, each z̃ᵀz̃ = 2/3, (2/3 − 1)² = 1/9
    h_a = torch.tensor([[0.0], [1.0], [2.0]])
    h_b = torch.tensor([[0.0], [2.0], [1.0]])
    for lambd in (0.0, 1e-3, 1.0):
        assert cca_ssg_loss(h_a, h_b, lambd).item() == pytest.approx(2 / 3 + lambd * 2 / 9, rel=1e-5)
    # identical views with uncorrelated features: no invariance cost; with the unbiased std each
    # diagonal of z̃ᵀz̃ is (N − 1)/N = 3/4 and the off-diagonals are 0, so each view costs 2·(1/4)²
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert cca_ssg_loss(h, h, 1.0).item() == pytest.approx(2 * 2 * (1 / 4) ** 2, rel=1e-5)


def test_link_reconstruction_by_hand():
    pos, neg = torch.tensor([0.0, 2.0]), torch.tensor([-1.0])
    expected = (softplus(-0.0) + softplus(-2.0) + softplus(-1.0)) / 3
    assert link_reconstruction_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)


# -- the min-norm solver --------------------------------------------------------------------

def closed_form_two(a: torch.Tensor, b: torch.Tensor) -> float:
    """argmin_γ∈[0,1] ‖γa + (1−γ)b‖²  =  clip(⟨b − a, b⟩ / ‖a − b‖², 0, 1)."""
    return float(((b - a) @ b / (a - b).pow(2).sum()).clamp(0, 1))


def test_min_norm_2_cases():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    gram = lambda a, b: (a @ a, a @ b, b @ b)  # noqa: E731
    assert min_norm_2(*gram(e1, e2)) == pytest.approx(0.5)
    assert min_norm_2(*gram(e1, 2 * e1)) == 1.0  # a lies inside: all weight on the shorter a
    assert min_norm_2(*gram(3 * e1, e1 + 0.1 * e2)) == 0.0  # b is the min-norm point
    assert min_norm_2(*gram(e1, -e1)) == pytest.approx(0.5)  # opposite gradients cancel


@pytest.mark.parametrize("seed", range(10))
def test_two_gradients_equal_the_closed_form(seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(7, generator=g, dtype=torch.float64), torch.randn(7, generator=g, dtype=torch.float64)
    if seed % 3 == 0:
        b = a * 2.5 + 0.1 * b  # nearly parallel: the solution sits on a vertex
    grads = torch.stack([a, b])
    alpha = min_norm_weights(grads @ grads.T)
    gamma = closed_form_two(a, b)
    torch.testing.assert_close(alpha, torch.tensor([gamma, 1 - gamma], dtype=torch.float64), atol=1e-12, rtol=0)


def exact_qp(gram: np.ndarray) -> np.ndarray:
    n = gram.shape[0]
    res = minimize(lambda x: x @ gram @ x, np.full(n, 1 / n), jac=lambda x: 2 * gram @ x, method="SLSQP",
                   bounds=[(0, 1)] * n, constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1,
                                                      "jac": lambda x: np.ones(n)}],
                   options={"ftol": 1e-15, "maxiter": 1000})
    assert res.success
    return res.x


@pytest.mark.parametrize("n_tasks", [3, 4, 5])
@pytest.mark.parametrize("seed", range(4))
def test_frank_wolfe_equals_the_exact_qp(n_tasks, seed):
    g = torch.Generator().manual_seed(100 * n_tasks + seed)
    # gradients sharing a common direction (so the solution is interior) or not (on a face)
    common = torch.randn(1, 32, generator=g, dtype=torch.float64) * (seed % 2)
    grads = normalise_gradients(torch.randn(n_tasks, 32, generator=g, dtype=torch.float64) + common)
    gram = grads @ grads.T
    alpha = min_norm_weights(gram)
    qp = torch.from_numpy(exact_qp(gram.numpy()))
    assert alpha.min() >= 0 and alpha.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (alpha @ gram @ alpha).item() == pytest.approx((qp @ gram @ qp).item(), rel=1e-6, abs=1e-10)
    torch.testing.assert_close(alpha, qp, atol=1e-3, rtol=0)


def test_min_norm_point_satisfies_the_optimality_condition():
    # d = Σ α_t g_t is the min-norm point iff ⟨d, g_t⟩ ≥ ‖d‖² for every t (equality where α_t > 0):
    # −d is a descent direction for every task
    g = torch.Generator().manual_seed(3)
    grads = torch.randn(5, 40, generator=g, dtype=torch.float64) + 0.5
    alpha = min_norm_weights(grads @ grads.T, max_iter=2000, tol=1e-12)
    d = alpha @ grads
    inner, sq = grads @ d, d @ d  # Frank–Wolfe converges sublinearly: to a relative 1e-4 here
    assert (inner >= sq * (1 - 1e-4)).all()
    # and it is no worse than any vertex or the centre of the simplex
    assert sq <= (grads.pow(2).sum(1).min()) and sq <= grads.mean(0).pow(2).sum()


def test_mgda_weights_normalise_first():
    # a gradient 1000× longer than the other does not take over once both are L2-normalised
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    w = mgda_weights(torch.stack([1000 * e1, e2]))
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5]))
    raw = mgda_weights(torch.stack([1000 * e1, e2]), normalisation="none")
    assert raw[1] > 0.99
    with pytest.raises(ValueError, match="unknown gradient normalisation"):
        normalise_gradients(torch.ones(2, 2), "l1")
