r"""The pieces of Go-Explore (Ecoffet, Huizinga, Lehman, Stanley & Clune, Nature 2021) as pure functions.

Phase 1 keeps an archive of cells. Each iteration selects a cell with probability proportional to
its weight, returns to it by restoring its saved state, explores from it with repeated random
actions, and adds every cell met that is new, or reached with a better trajectory.

    cell of a frame (domain-agnostic)   downscale(F, w, h, d) = ⌊ d · AREA_{w×h}(F) / 255 ⌋
    its parameters                      argmax_{w,h,d}  H_norm(p) / sqrt(|n − T| / T + 1),  T = s · N
                                        (p: the distribution of N recent frames over the n cells they fall in)
    selection weight                    W(c) = Σ_a w_a / (C_a(c) + 1)^{p_a}  (+ neighbour terms) · λ^{L_max − L(c)}
    archive update                      replace c when  score' > score  or  (score' = score and len' < len)
    exploration                         a random action repeated a Geometric(1 / r̄) number of steps

Phase 2 (robustification) trains a policy by the backward algorithm (Salimans & Chen 2018): episodes
start from a state on the best trajectory, and the start moves back towards the beginning as the
policy learns to reach the trajectory's score from there.

    start index     i ∼ U{s, …, s + W − 1}  w.p. 1 − f,  else  i ∼ U{s, …, L − 1};  from reset w.p. ρ
    move back       s ← max(0, s − (W − 1 − k)),  k = min{k : Σ_{j≤k} r_j ≥ τ W},  r_j the success rate from s + j
    self-imitation  L_π = Σ_i w_i (−log π(a_i|s_i)) (R_i − V_old(s_i))₊ / n  over the demonstration's own steps,
                    w_i = 1 − the success rate from point i (Oh et al. 2018; the official robustification)
    demonstration   loop-erased: where states i < j are the same place (the state without its clock) with
                    the same score, the steps i..j are cut (the zoo's option ``shorten_demo``)
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

# -- the domain-agnostic cell: a downscaled grey frame --------------------------------------------


@lru_cache(maxsize=4096)
def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """K [n_out, n_in]: the overlap of output pixel j's interval [j·n_in/n_out, (j+1)·n_in/n_out) with input
    pixel i, in units of 1/n_out (so every entry is an integer and each row sums to n_in).

    AREA resampling (OpenCV's INTER_AREA when shrinking) is then out_j = Σ_i K_ji in_i / n_in: each output
    pixel is the mean of the input area it covers, partly covered pixels weighted by their share.
    """
    if not 1 <= n_out <= n_in:
        raise ValueError(f"area resampling shrinks: need 1 ≤ n_out ≤ n_in, got n_in={n_in}, n_out={n_out}")
    j = np.arange(n_out)[:, None]
    i = np.arange(n_in)[None, :]
    # the output interval in units of 1/n_out: [j·n_in, (j+1)·n_in); input pixel i covers [i·n_out, (i+1)·n_out)
    lo = np.maximum(j * n_in, i * n_out)
    hi = np.minimum((j + 1) * n_in, (i + 1) * n_out)
    weights = np.clip(hi - lo, 0, None).astype(np.float64)
    weights.setflags(write=False)
    return weights


def area_resize(frames: np.ndarray, w: int, h: int) -> np.ndarray:
    """Frames [..., H, W] (uint8) resampled to [..., h, w] by pixel area, rounded half up to uint8.

    The weights are integers and every partial sum is an integer below 2⁵³, so the float64 products are
    exact whatever order BLAS adds in: a frame gets the same cell alone or in a batch.
    """
    H, W = frames.shape[-2:]
    total = (area_weights(H, h) @ frames.astype(np.float64) @ area_weights(W, w).T)  # Σ K_h F K_wᵀ
    denominator = H * W
    return ((total + denominator // 2) // denominator).astype(np.uint8)


def downscale(frames: np.ndarray, w: int, h: int, d: int) -> np.ndarray:
    """The cell of a grey frame: area-resampled to w × h, then its 256 intensities put into d + 1 levels,
    ⌊ d · x / 255 ⌋ (the official ``imdownscale``: ``((resized / 255) * d).astype(uint8)``)."""
    return ((area_resize(frames, w, h).astype(np.int64) * d) // 255).astype(np.uint8)


def half_frame(frame: np.ndarray) -> np.ndarray:
    """A grey frame [H, W] averaged over 2 × 2 blocks (rounded half up): the resolution cells are made from,
    and that the archive keeps of each cell so that it can re-key the archive for new parameters."""
    H, W = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
    x = frame[:H, :W].astype(np.uint16)
    blocks = x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]  # 9× faster than a sum over axes
    return ((blocks + 2) >> 2).astype(np.uint8)


def representation_score(cell_counts: np.ndarray, n_frames: int, split_factor: float) -> float:
    r"""How well a downscaling splits N recent frames into cells (the official ``try_split_frames`` score):

        H_norm(p) / sqrt(|n − T| / T + 1),   T = split_factor · N,   H_norm(p) = −Σ p log p / log n

    with p the fraction of the frames in each of the n cells: high when the frames spread evenly over
    about T cells. One cell scores 0.
    """
    n = len(cell_counts)
    if n <= 1:
        return 0.0
    p = np.asarray(cell_counts, dtype=np.float64) / n_frames
    normalised_entropy = float(-(p * np.log(p)).sum() / math.log(n))
    target = split_factor * n_frames
    return normalised_entropy / math.sqrt(abs(n - target) / target + 1)


def propose_downscale(best: tuple[int, int, int], rng: np.random.Generator, max_w: int, max_h: int) -> tuple[int, int, int]:
    """A random neighbour of the best parameters (w, h, d), as in the official search: each side is drawn
    from Geometric(min(1 / (best + 1), 20 / full side)) within [1, full side − 1], and d from
    Geometric(min(1 / best_d, 1 / 12)) within [2, 255]."""
    out = []
    for side, full in ((best[0], max_w), (best[1], max_h)):
        while True:
            v = int(rng.geometric(min(1 / (side + 1), 20 / full)))
            if 1 <= v <= full - 1:
                out.append(v)
                break
    while True:
        d = int(rng.geometric(min(1 / best[2], 1 / 12)))
        if 2 <= d <= 255:
            return out[0], out[1], d


def count_cells(frames: np.ndarray, params: tuple[int, int, int]) -> np.ndarray:
    """How many of the frames [N, H, W] fall in each cell under the downscaling (w, h, d)."""
    cells = downscale(frames, *params).reshape(len(frames), -1)
    return np.unique(cells, axis=0, return_counts=True)[1]


def search_downscale(frames: np.ndarray, iterations: int, split_factor: float,
                     rng: np.random.Generator) -> tuple[tuple[int, int, int], float, int]:
    """The downscaling (w, h, d) with the best ``representation_score`` of the frames [N, H, W] found by the
    official random search: start from random parameters, then ``iterations`` proposals around the best so
    far (never one tried before), keeping a proposal that scores at least as well. Returns (params, score,
    number of cells)."""
    H, W = frames.shape[-2:]
    best = (int(rng.integers(1, W)), int(rng.integers(1, H)), int(rng.integers(2, 256)))
    best_score, best_n = -math.inf, 0
    tried: set[tuple[int, int, int]] = set()
    for it in range(iterations):
        params = best
        if it > 0:
            for _ in range(1000):  # the official loop retries until unseen; a cap keeps tiny frames finite
                params = propose_downscale(best, rng, W, H)
                if params not in tried:
                    break
        tried.add(params)
        counts = count_cells(frames, params)
        score = representation_score(counts, len(frames), split_factor)
        if score >= best_score:
            best, best_score, best_n = params, score, len(counts)
    return best, best_score, best_n


# -- selection -------------------------------------------------------------------------------------

def count_weight(counts: Tensor, weight: float, power: float) -> Tensor:
    """w / (C + 1)^p: the official count term of a cell's weight, C its times seen, chosen, or chosen since
    it last led to a new or better cell. The paper's weight is this with C = times seen, w = 1, p = ½."""
    return weight / (counts.double() + 1).pow(power)


def level_factor(level: Tensor, low_level_weight: float) -> Tensor:
    """λ^{L_max − L}: cells of levels below the highest one reached count λ times less per level."""
    if low_level_weight == 1.0 or level.numel() == 0:
        return torch.ones_like(level, dtype=torch.float64)
    return torch.as_tensor(low_level_weight, dtype=torch.float64).pow((level.max() - level).double())


def selection_probabilities(weights: Tensor) -> Tensor:
    """P(c) = W(c) / Σ W: the cell to return to is drawn in proportion to its weight."""
    total = weights.sum()
    if not torch.isfinite(total) or total <= 0:
        raise ValueError(f"selection weights must be finite with a positive sum, got a sum of {float(total)}")
    return weights / total


def draw_cell(cdf: Tensor, generator: torch.Generator | None = None) -> int:
    """A cell c drawn with probability P(c), given ``cdf`` = the cumulative sum of P: one uniform draw and a
    binary search, where ``torch.multinomial`` passes over every cell on every draw. A cell of weight 0 is
    never drawn."""
    u = torch.rand((), dtype=cdf.dtype, device=cdf.device, generator=generator) * cdf[-1]
    i = int(torch.searchsorted(cdf, u, right=True))
    return i if i < len(cdf) else int(torch.searchsorted(cdf, cdf[-1]))  # u rounded up to the total


# -- archive update --------------------------------------------------------------------------------

def is_better(score: float, length: int, old_score: float, old_length: float) -> bool:
    """The update rule: a trajectory replaces a cell's when it scores higher, or scores the same in fewer
    steps (the official ``should_accept_cell`` with ``optimize_score``). A new cell has score −∞."""
    return score > old_score or (score == old_score and length < old_length)


# -- exploration -----------------------------------------------------------------------------------

def repeated_random_actions(n_steps: int, n_actions: int, mean_repeat: float, rng: np.random.Generator) -> np.ndarray:
    """``n_steps`` actions: a uniformly random action, repeated for a Geometric(1 / mean_repeat) number of
    steps (mean ``mean_repeat``), then another. ``mean_repeat`` = 1 is uniform random play."""
    if mean_repeat < 1:
        raise ValueError(f"the mean repeat of an action is at least 1 step, got {mean_repeat}")
    runs = rng.geometric(1.0 / mean_repeat, size=n_steps)  # enough runs: each is at least one step long
    return np.repeat(rng.integers(n_actions, size=n_steps), runs)[:n_steps]


# -- robustification: the backward algorithm ------------------------------------------------------

def start_index(start: int, window: int, length: int, frac_sample: float, u: float, v: float) -> int:
    """Where on the demonstration (of ``length`` steps) an episode starts: uniformly among the ``window``
    start points from ``start`` on (the official workers' spread of starting points) with probability
    1 − frac_sample, else uniformly between ``start`` and the end (u, v ∼ U[0, 1))."""
    if length <= start:
        return start
    span = min(window, length - start) if u >= frac_sample else length - start
    return start + int(v * span)


def move_start(start: int, successes: np.ndarray, episodes: np.ndarray, threshold: float, min_episodes: int) -> int:
    r"""The backward step (the official ResetManager): with r_j the success rate of the episodes that
    started at ``start + j`` (j < W, the window; 0 where none did), the window's top moves to the first
    point where the success accumulated from the bottom reaches τ·W,

        top' = start + min{k : Σ_{j≤k} r_j ≥ τ W},   start' = max(0, start − (W − 1 − k)),

    so the start moves back by up to W − 1 points when the points at the bottom already succeed, and
    stays where too little succeeds. Judged once ≥ ``min_episodes`` episodes started in the window."""
    W = len(episodes)
    if start == 0 or episodes.sum() < min_episodes:
        return start
    rates = successes / np.maximum(episodes, 1)
    reached = np.flatnonzero(np.cumsum(rates) >= threshold * W - 1e-12)
    if len(reached) == 0:
        return start
    return max(0, start - (W - 1 - int(reached[0])))


def lagging(score: float, t: int, returns: np.ndarray, allowed_lag: int, allowed_score_deficit: float) -> bool:
    """Whether an episode at demonstration step t has fallen too far behind: its score is below the lowest
    score the demonstration had within ``allowed_lag`` steps of t, less ``allowed_score_deficit``
    (the official ReplayResetEnv's early stop; ``returns[k]`` is the demonstration's score after k steps)."""
    if t <= allowed_lag:
        return False
    lo = min(t - allowed_lag, len(returns) - 1)
    return score < returns[lo:t + allowed_lag].min() - allowed_score_deficit


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """R_t = r_t + γ R_{t+1} along a trajectory of T rewards (R_T = 0): the return self-imitation learns
    from at each of the demonstration's steps (the official ``discounted_rewards``)."""
    out = np.zeros(len(rewards) + 1)
    for t in range(len(rewards) - 1, -1, -1):
        out[t] = rewards[t] + gamma * out[t + 1]
    return out[:-1]


def imitation_start(start: int, end: int, before_max: int, from_start_prob: float, u: float, v: float) -> int:
    """Where a self-imitation episode starts replaying the demonstration (it replays up to ``end``): up to
    ``before_max`` points before the start point s, uniformly (u), or at its beginning with probability

        q = ρ n / (E (1 − ρ) + ρ n),   n = E − p  (the steps from the provisional point p to the end E),

    so that a fraction ρ of the replayed steps, not of the episodes, come from the beginning (v < q;
    the official ``extra_sil_from_start_prob`` without ``sil_from_start_prob_by_selection``)."""
    p = max(0, start - int(u * (min(before_max, start) + 1)))
    n = end - p
    denominator = end * (1 - from_start_prob) + from_start_prob * n
    return 0 if denominator > 0 and v < from_start_prob * n / denominator else p


def self_imitation_loss(log_prob: Tensor, value: Tensor, old_value: Tensor, returns: Tensor, weight: Tensor,
                        n: int) -> tuple[Tensor, Tensor]:
    r"""Self-imitation of the demonstration (Oh et al. 2018, as the official robustification weights it):

        L_π = Σ_i w_i · (−log π(a_i | s_i)) · (R_i − V_old(s_i))₊ / n,
        L_V = ½ Σ_i w_i · (R_i − V(s_i))₊² / n,

    over the demonstration's steps i (its actions a_i and discounted returns R_i), with w_i = 1 − the
    success rate of episodes that started at that point (``sil_weight_success_rate``), divided by the
    minibatch's n transitions, on-policy ones included (the official mean over a minibatch where the
    on-policy transitions have w = 0). Only where the demonstration did better than the value expected
    does it pull the policy towards its action."""
    advantage = (returns - old_value).clamp(min=0)
    policy = (weight * -log_prob * advantage).sum() / n
    value_loss = 0.5 * (weight * (returns - value).clamp(min=0) ** 2).sum() / n
    return policy, value_loss


def erase_loops(places: list, returns: np.ndarray) -> list[int]:
    """The loop-erased path of a trajectory through states 0..T: the indices of the states it keeps.

    Walking the trajectory, a state at the same place as a state kept earlier (``places[t]``: the state
    without its clock) and with the same score (``returns[t]``) cuts the path back to that earlier state,
    so everything done in between, a loop that ends where it began, is dropped. In a deterministic game
    the action taken from state t then leads on from the earlier state exactly as it did from t: the kept
    path is played by the actions ``actions[j − 1]`` for each kept index j > 0, and ends where the
    trajectory ends, with the same score, in fewer steps.
    """
    path: list[int] = [0]
    at: dict = {places[0]: 0}  # place → its position on the path
    for t in range(1, len(places)):
        k = at.get(places[t])
        if k is not None and returns[path[k]] == returns[t]:
            for j in path[k + 1:]:
                del at[places[j]]
            del path[k + 1:]
            continue
        at[places[t]] = len(path)
        path.append(t)
    return path
