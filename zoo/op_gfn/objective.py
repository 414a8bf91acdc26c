r"""The math of Order-Preserving GFlowNets (Chen & Mauch, ICLR 2024) as pure tensor functions.

A GFlowNet samples a terminal object x by a trajectory τ = (s_0 → s_1 → … → s_n = x → s_f) of a
forward policy P_F; a backward policy P_B(s_{t-1} | s_t) spreads each x's flow over its parents.

Trajectory balance (Malkin et al. 2022), one trajectory:

    L_TB(τ) = ( log Z + Σ_t log P_F(s_{t+1} | s_t) − log R(x) − Σ_t log P_B(s_t | s_{t+1}) )²

Detailed balance (Bengio et al. 2023), one transition s → s', with the stop transition x → s_f
read as F(s_f)·P_B := R(x):

    L_DB(s, s') = ( log F(s) + log P_F(s' | s) − log F(s') − log P_B(s | s') )²

Order preservation replaces the reward by a learned one, the reward the flow implies

    OP-TB:  log R̂(x) = log Z + Σ_t log P_F − Σ_t log P_B        OP-DB:  log R̂(x) = log F(x) + log P_F(s_f | x)

and trains it to respect the order of the candidates in a batch: for a set X of candidates, target
P(x | X) is uniform over the maximal elements of X (ties share, dominated get 0) and

    L_OP(X) = − Σ_{x ∈ X} P(x | X) · log softmax_X( log R̂ )(x)

For a pair this is the cross-entropy with targets 1, ½ or 0; for several objectives the order is
Pareto dominance and X is the whole batch. log Z shifts every log R̂ alike and cancels in the
softmax, so OP-TB has no log Z to learn.

The official OP-TB and OP-DB (the "-KL" variants the paper reports) add a regulariser that keeps a
learned backward policy near the uniform one, averaged over the states s the trajectories visit
after s_0, and OP-DB weighs its order term by λ_OP:

    OP-TB:  L = L_OP + λ_KL · mean_s KL(U(· | s) ‖ P_B(· | s))
    OP-DB:  L = mean_transitions L_DB + λ_OP · L_OP + λ_KL · mean_s KL(U(· | s) ‖ P_B(· | s))

with U uniform over the parents of s. (The official code computes torch's KLDivLoss(log P_B, U),
which is Σ_a U(a) (log U(a) − log P_B(a)), the KL divergence of P_B from U.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def trajectory_balance(log_Z: Tensor, log_pf: Tensor, log_pb: Tensor, log_reward: Tensor) -> Tensor:
    """Mean over trajectories of (log Z + Σ log P_F − log R − Σ log P_B)²; log_pf, log_pb are per-trajectory sums."""
    return (log_Z + log_pf - log_reward - log_pb).pow(2).mean()


def detailed_balance(log_F: Tensor, log_pf: Tensor, log_F_next: Tensor, log_pb: Tensor) -> Tensor:
    """Mean over transitions of (log F(s) + log P_F(s'|s) − log F(s') − log P_B(s|s'))².

    For a stop transition pass log_F_next = log R(x) and log_pb = 0.
    """
    return (log_F + log_pf - log_F_next - log_pb).pow(2).mean()


def tb_log_reward(log_pf: Tensor, log_pb: Tensor) -> Tensor:
    """OP-TB's learned log-reward up to the constant log Z: log R̂(x) − log Z = Σ log P_F − Σ log P_B.

    L_OP sees log R̂ only through softmax over a set of candidates, where a shift common to all of
    them cancels: log Z has no gradient under OP-TB and is left out.
    """
    return log_pf - log_pb


def db_log_reward(log_F_x: Tensor, log_pf_stop: Tensor) -> Tensor:
    """OP-DB's learned log-reward: log R̂(x) = log F(x) + log P_F(s_f | x)."""
    return log_F_x + log_pf_stop


def backward_kl_to_uniform(log_pb: Tensor, parents: Tensor) -> Tensor:
    """mean over states of KL(U ‖ P_B) = Σ_a U(a) (log U(a) − log P_B(a | s)), U uniform over the parents.

    log_pb [M, A]: log P_B of every backward action in M states (any value where invalid);
    parents [M, A] bool: the valid backward actions. As the official code, P_B is clamped to
    [ε, 1 − ε] (ε the float32 machine epsilon) before the log, so a one-parent state gives ≈ 1e-7.
    """
    if parents.shape[0] == 0:
        return log_pb.sum() * 0
    eps = torch.finfo(torch.float32).eps
    uniform = parents.float() / parents.sum(-1, keepdim=True).float()
    log_p = log_pb.exp().clamp(eps, 1 - eps).log()
    terms = uniform * (uniform.clamp_min(eps).log() - log_p)
    return terms.masked_fill(~parents, 0.0).sum(-1).mean()


def order_agreement(p: Tensor, objectives: Tensor) -> Tensor:
    """How well the sampling probabilities p [N] respect the order of the candidates' objectives [N, K]:
    over the ordered pairs (x ≻ x'), the share with p(x) > p(x'), ties counting ½ (1: p preserves the order).

    x ≻ x' is dominance: ≥ in every objective and > in one (for K = 1, a larger reward). Exact, in
    chunks of rows so that a chunk compares at most 2^24 pairs.
    """
    chunk = max(1, 2**24 // max(1, p.shape[0]))
    agree, pairs = p.new_zeros((), dtype=torch.float64), p.new_zeros((), dtype=torch.float64)
    for start in range(0, p.shape[0], chunk):
        a, pa = objectives[start:start + chunk], p[start:start + chunk]
        better = (a[:, None, :] >= objectives[None, :, :]).all(-1) & (a[:, None, :] > objectives[None, :, :]).any(-1)
        diff = pa[:, None] - p[None, :]
        agree += ((diff > 0).double() + 0.5 * (diff == 0).double())[better].sum()
        pairs += better.sum()
    return (agree / pairs.clamp_min(1)).to(p.dtype)


def pairwise_order_targets(score_a: Tensor, score_b: Tensor, tol: float = 1e-6) -> Tensor:
    """P(a is the better of the pair): 1 if a ≻ b, ½ if a ≈ b (within tol), 0 if a ≺ b. Shape [..., 2]."""
    p_a = ((score_a > score_b + tol).float() + (score_a >= score_b - tol).float()) / 2
    return torch.stack([p_a, 1 - p_a], dim=-1)


def pareto_mask(objectives: Tensor) -> Tensor:
    """Which rows of objectives [N, K] no other row dominates (maximisation; duplicates are all kept).

    y dominates x when y ≥ x in every objective and y > x in at least one.
    """
    ge = (objectives[None, :, :] >= objectives[:, None, :]).all(-1)  # [i, j]: row j ≥ row i everywhere
    gt = (objectives[None, :, :] > objectives[:, None, :]).any(-1)
    return ~(ge & gt).any(dim=1)


def pareto_targets(objectives: Tensor) -> Tensor:
    """Target distribution over a set [N, K]: uniform over its non-dominated members."""
    mask = pareto_mask(objectives).float()
    return mask / mask.sum()


def order_preserving_loss(log_r_hat: Tensor, targets: Tensor) -> Tensor:
    """L_OP: cross-entropy between targets and softmax(log R̂) over the last dim, mean over sets."""
    return -(targets * F.log_softmax(log_r_hat, dim=-1)).sum(-1).mean()


def exact_terminal_distribution(log_pf: Tensor, children: Tensor, start: int, max_length: int) -> Tensor:
    """P_T(x): the probability that the sampler stops at each state, by propagating the flow.

    log_pf [S, A]: log P_F of every action in every state, the last action is stop, invalid actions −inf.
    children [S, A−1]: index of the child each non-stop action leads to (any index where invalid).
    """
    pf = log_pf.exp()
    reach = torch.zeros(log_pf.shape[0], dtype=pf.dtype, device=pf.device)
    reach[start] = 1.0
    terminal = torch.zeros_like(reach)
    for _ in range(max_length + 1):
        terminal += reach * pf[:, -1]
        flow = reach[:, None] * pf[:, :-1]
        reach = torch.zeros_like(reach).index_add_(0, children.reshape(-1), flow.reshape(-1))
        if reach.sum() < 1e-12:
            break
    return terminal


def l1_distance(p: Tensor, q: Tensor) -> Tensor:
    """Σ_x |p(x) − q(x)| (in [0, 2]), the exact L1 distance between two distributions."""
    return (p - q).abs().sum()


def hypervolume(points: Tensor, reference: Tensor) -> Tensor:
    """Exact volume dominated by ``points`` [N, K] above ``reference`` [K] (maximisation), by slicing.

    Exponential in K in the worst case; meant for the small fronts of K ≤ 4 objectives here.
    """
    pts = points[(points > reference).all(-1)]
    if pts.shape[0] == 0:
        return torch.zeros((), dtype=points.dtype)
    pts = pts[pareto_mask(pts)].unique(dim=0)
    if pts.shape[1] == 1:
        return (pts.max() - reference[0]).to(points.dtype)
    order = torch.argsort(pts[:, -1], descending=True)
    pts = pts[order]
    volume = torch.zeros((), dtype=points.dtype)
    for i in range(pts.shape[0]):
        top = pts[i, -1]
        bottom = pts[i + 1, -1] if i + 1 < pts.shape[0] else reference[-1]
        if top > bottom:
            volume = volume + (top - bottom) * hypervolume(pts[: i + 1, :-1], reference[:-1])
    return volume
