"""Phase 2's environments: the backward algorithm's episodes, which start on the best trajectory.

``shorten`` erases the loops of phase 1's best trajectory (``erase_loops``); ``Demo`` replays it once, in the deterministic game, and keeps the state, the
observation and the score after every step. ``BackwardRunner`` steps n games with sticky actions; each
episode starts on the demonstration (in the window of W points from the start point s, or with
probability ``frac_sample`` anywhere between s and the end) or, with probability ``from_reset_prob``,
from the game's start after a random number of no-ops. An episode that started on the demonstration
ends early when it lags the demonstration's score (``lagging``), and a few steps after it has matched
the demonstration's final score. It is a success when its score reaches the success threshold (the
demonstration's final score less ``allowed_score_deficit``, or ``success_score``); the start point
moves back (``move_start``) on the success rates of the episodes that started at each point of the
window.

``SelfImitation`` replays the demonstration's own actions beside those games (the official extra SIL
environments), for the self-imitation loss (``self_imitation_loss``): near the start point, or from the
beginning, each replayed step weighted by how rarely episodes from that point succeed.

The runner's whole state (each game's saved state, its frame stack, its episode's bookkeeping) is a few
tensors, so a run resumed from a checkpoint continues every episode where it was.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from zoo.go_explore.data import Game
from zoo.go_explore.objective import discounted_returns, erase_loops, imitation_start, lagging, start_index


def shorten(game: Game, actions: np.ndarray) -> np.ndarray:
    """The trajectory's actions with its loops erased (``erase_loops`` over the places and scores of its
    states, replayed in the deterministic game), if the shorter trajectory, replayed, does not end early
    and scores at least as much; else the actions unchanged.

    Phase 1's trajectories are repeated random actions: they wander, and return to where they were. The
    backward algorithm has to move its start back over every step of the demonstration, wandering or not.
    """
    actions = np.asarray(actions)
    game.reset()
    places, returns = [game.place()], [0.0]
    for a in actions:
        reward, terminated, truncated = game.step(int(a))
        places.append(game.place())
        returns.append(returns[-1] + reward)
    path = erase_loops(places, np.array(returns))
    if len(path) == len(places):
        return actions
    short = actions[np.array(path[1:], dtype=np.int64) - 1]
    game.reset()
    score = 0.0
    for t, a in enumerate(short):
        reward, terminated, truncated = game.step(int(a))
        score += reward
        if (terminated or truncated) and t < len(short) - 1:
            return actions
    return short if score >= returns[-1] else actions


class Demo:
    """The states, observations and scores along a trajectory, replayed in the deterministic game."""

    def __init__(self, game: Game, actions: np.ndarray) -> None:
        self.actions = np.asarray(actions, dtype=np.int64)
        game.reset()
        self.states, self.obs, returns = [game.get_state()], [game.observation()], [0.0]
        for t, a in enumerate(self.actions):
            reward, terminated, truncated = game.step(int(a))
            returns.append(returns[-1] + reward)
            self.states.append(game.get_state())
            self.obs.append(game.observation())
            if (terminated or truncated) and t < len(self.actions) - 1:
                raise RuntimeError(f"replaying the best trajectory, the episode ended at step {t + 1} of "
                                   f"{len(self.actions)}: the environment is not deterministic under get_state/set_state")
        self.returns = np.array(returns)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def score(self) -> float:
        return float(self.returns[-1])


class BackwardRunner:
    def __init__(self, games: list[Game], demo: Demo, window: int, frac_sample: float, from_reset_prob: float,
                 noop_max: int, allowed_lag: int, allowed_score_deficit: float, success_score: float | None) -> None:
        self.games, self.demo, self.window = games, demo, window
        self.frac_sample, self.from_reset_prob, self.noop_max = frac_sample, from_reset_prob, noop_max
        self.allowed_lag, self.allowed_score_deficit = allowed_lag, allowed_score_deficit
        self.threshold = demo.score - allowed_score_deficit if success_score is None else success_score
        self.start = max(len(demo) - window, 0)  # the official first window: the demonstration's last W steps
        n, k = len(games), games[0].frame_stack
        self.first = np.zeros(n, np.int64)      # where on the demonstration the episode started
        self.t = np.zeros(n, np.int64)          # the demonstration step it is at now
        self.score = np.zeros(n)
        self.extra = np.zeros(n, np.int64)      # steps left once the demonstration's score is matched
        self.from_reset = np.zeros(n, bool)
        self.stack = np.zeros((n, k, *demo.obs[0].shape), demo.obs[0].dtype)
        self.started = False
        self.counts = np.zeros((2, window), np.int64)  # (episodes, successes) that started at start + j
        self.point_success = np.zeros(len(demo) + 1)   # the last judged success rate from each point
        self.finished: list[tuple[float, bool, bool]] = []  # (score, success, from reset)

    def __len__(self) -> int:
        return len(self.games)

    def success(self, score: float) -> bool:
        return bool(score >= self.threshold)

    def begin(self, i: int, generator: torch.Generator) -> None:
        """Start env i's next episode: on the demonstration, or from reset after random no-ops."""
        u = torch.rand(5, generator=generator, device=generator.device).tolist()
        game = self.games[i]
        self.from_reset[i] = len(self.demo) == 0 or u[0] < self.from_reset_prob
        first = 0 if self.from_reset[i] else start_index(self.start, self.window, len(self.demo), self.frac_sample,
                                                         u[1], u[2])
        self.first[i] = self.t[i] = first
        self.extra[i] = int(math.exp(u[4] * 7))  # the official extra_frames_counter
        self.stack[i] = 0
        if first > 0:
            game.set_state(self.demo.states[first])
            self.score[i] = self.demo.returns[first]
            self.stack[i, -1] = self.demo.obs[first]
            return
        game.reset()
        for _ in range(int(u[3] * (self.noop_max + 1))):  # no-op starts
            _, terminated, truncated = game.step(game.noop_action)
            if terminated or truncated:
                game.reset()
                break
        self.score[i] = 0.0
        self.stack[i, -1] = game.observation()

    def ensure_started(self, generator: torch.Generator) -> None:
        if not self.started:
            for i in range(len(self)):
                self.begin(i, generator)
            self.started = True

    def step(self, actions: np.ndarray, generator: torch.Generator):
        """Step every game (with sticky actions); returns rewards, terminated, truncated and the final
        observation stacks, and starts a new episode wherever one ended."""
        self.ensure_started(generator)
        n = len(self)
        u = torch.rand((n, self.games[0].frameskip), generator=generator, device=generator.device).cpu().numpy()
        rewards, terminated, truncated = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
        final = np.empty_like(self.stack)
        for i, game in enumerate(self.games):
            rewards[i], terminated[i], truncated[i] = game.step(int(actions[i]), u[i])
            self.score[i] += rewards[i]
            self.t[i] += 1
            self.stack[i, :-1] = self.stack[i, 1:]
            self.stack[i, -1] = game.observation()
            if not self.from_reset[i] and not (terminated[i] or truncated[i]):
                if self.score[i] >= self.demo.score:
                    self.extra[i] -= 1
                    truncated[i] = self.extra[i] <= 0
                elif lagging(self.score[i], int(self.t[i]), self.demo.returns, self.allowed_lag, self.allowed_score_deficit):
                    terminated[i] = True  # the official ReplayResetEnv ends it as a failure
            final[i] = self.stack[i]
            if terminated[i] or truncated[i]:
                success = self.success(self.score[i])
                self.finished.append((float(self.score[i]), success, bool(self.from_reset[i])))
                j = self.first[i] - self.start
                if not self.from_reset[i] and 0 <= j < self.window:
                    self.counts[0, j] += 1
                    self.counts[1, j] += int(success)
                self.begin(i, generator)
        return rewards, terminated, truncated, final

    def rollout(self, act: Callable[[np.ndarray], tuple[np.ndarray, dict[str, Tensor]]], n_steps: int,
                generator: torch.Generator) -> dict[str, Any]:
        """``n_steps`` steps of every game under ``act`` (observation stacks → actions and tensors to keep),
        stacked [T, N, ...]: obs, next_obs (the final stack where an episode ended), rewards, terminated,
        truncated and the kept tensors."""
        out: dict[str, list] = {"obs": [], "next_obs": [], "rewards": [], "terminated": [], "truncated": []}
        for _ in range(n_steps):
            self.ensure_started(generator)
            obs = self.stack.copy()
            actions, keep = act(obs)
            rewards, terminated, truncated, final = self.step(actions, generator)
            for k, v in (("obs", obs), ("next_obs", final), ("rewards", rewards), ("terminated", terminated),
                         ("truncated", truncated)):
                out[k].append(torch.from_numpy(np.asarray(v)))
            for k, v in keep.items():
                out.setdefault(k, []).append(v)
        return {k: torch.stack(v) for k, v in out.items()}

    def judge(self, start: int, episodes: np.ndarray, successes: np.ndarray) -> None:
        """After a judgement of the window: the new start point, each judged point's success rate kept (the
        official ``starting_point_success``, which weighs self-imitation), and the counts afresh."""
        judged = np.flatnonzero(episodes)
        self.point_success[self.start + judged] = successes[judged] / episodes[judged]
        self.start, self.counts = start, np.zeros_like(self.counts)

    def pop_finished(self) -> list[tuple[float, bool, bool]]:
        out, self.finished = self.finished, []
        return out

    # -- the state a checkpoint keeps ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        states = [g.get_state() for g in self.games]
        offsets = np.cumsum([0] + [len(s) for s in states])
        return {"start": self.start, "counts": torch.from_numpy(self.counts.copy()), "started": self.started,
                "point_success": torch.from_numpy(self.point_success.copy()),
                "states": torch.from_numpy(np.concatenate(states)), "state_offsets": torch.from_numpy(offsets),
                "stack": torch.from_numpy(self.stack.copy()),
                "first": torch.from_numpy(self.first.copy()), "t": torch.from_numpy(self.t.copy()),
                "score": torch.from_numpy(self.score.copy()), "extra": torch.from_numpy(self.extra.copy()),
                "from_reset": torch.from_numpy(self.from_reset.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        offsets, states = state["state_offsets"].numpy(), state["states"].numpy()
        if len(offsets) - 1 != len(self):
            raise ValueError(f"the checkpoint holds {len(offsets) - 1} phase-2 environments, this run has {len(self)}")
        self.start, self.counts, self.started = int(state["start"]), state["counts"].numpy().copy(), bool(state["started"])
        if "point_success" in state:
            self.point_success = state["point_success"].numpy().copy()
        for i, game in enumerate(self.games):
            game.set_state(states[offsets[i]:offsets[i + 1]].copy())
        for name in ("stack", "first", "t", "score", "extra", "from_reset"):
            setattr(self, name, state[name].numpy().copy())


class SelfImitation:
    """The demonstration replayed with its own actions, for self-imitation (the official extra SIL
    environments): each of n replays starts at ``imitation_start`` (up to ``before_max`` points before the
    start point, or at the beginning) and runs to ``horizon`` points past the start point (or the end),
    then starts again. In the deterministic game the replay's observations are the demonstration's, so no
    game is stepped: a replay is two integers, where it started and where it is.
    """

    def __init__(self, demo: Demo, n: int, frame_stack: int, horizon: int, before_max: int, from_start_prob: float,
                 gamma: float, reward_clip: bool) -> None:
        self.demo, self.n, self.k, self.horizon = demo, n, frame_stack, horizon
        self.before_max, self.from_start_prob = before_max, from_start_prob
        rewards = np.diff(demo.returns)
        self.returns = discounted_returns(np.sign(rewards) if reward_clip else rewards, gamma)
        self.first = np.full(n, -1, np.int64)  # where each replay started (−1: not yet)
        self.t = np.zeros(n, np.int64)         # the point it is at

    def stack(self, first: int, t: int) -> np.ndarray:
        """The frame stack at point t of a replay that started at ``first`` (zeros before it, as an episode's)."""
        obs = self.demo.obs
        out = np.zeros((self.k, *obs[0].shape), obs[0].dtype)
        for j in range(max(first, t - self.k + 1), t + 1):
            out[self.k - 1 - (t - j)] = obs[j]
        return out

    def rollout(self, n_steps: int, start: int, point_success: np.ndarray,
                generator: torch.Generator) -> dict[str, Tensor]:
        """``n_steps`` steps of every replay: obs [T·n, ...], the demonstration's actions, its discounted
        returns, and the weights 1 − (success rate from the point)."""
        end = min(start + self.horizon, len(self.demo))
        obs, actions, returns, weights = [], [], [], []
        for _ in range(n_steps):
            for i in range(self.n):
                if self.first[i] < 0 or self.t[i] >= end:
                    u, v = torch.rand(2, generator=generator, device=generator.device).tolist()
                    self.first[i] = self.t[i] = imitation_start(start, end, self.before_max, self.from_start_prob, u, v)
                t = int(self.t[i])
                obs.append(self.stack(int(self.first[i]), t))
                actions.append(self.demo.actions[t])
                returns.append(self.returns[t])
                weights.append(1.0 - point_success[t])
                self.t[i] += 1
        return {"obs": torch.from_numpy(np.stack(obs)), "actions": torch.tensor(actions, dtype=torch.long),
                "returns": torch.tensor(returns, dtype=torch.float32),
                "weights": torch.tensor(weights, dtype=torch.float32)}

    def state_dict(self) -> dict[str, Tensor]:
        return {"first": torch.from_numpy(self.first.copy()), "t": torch.from_numpy(self.t.copy())}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.first, self.t = state["first"].numpy().copy(), state["t"].numpy().copy()
