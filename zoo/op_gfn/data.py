"""Environments a GFlowNet samples from: the protocol, the hypergrid, the multi-objective grid.

A GFlowNet needs no data set: it samples on-policy from an environment, a DAG of states built by
actions from one initial state, and a (partial) order or a reward on the terminal objects. Any class
with these members plugs in with ``--model.env my_env.py:MyEnv`` (or ``my_package.my_module:MyEnv``) and
``--model.env_kwargs '{...}'``:

    state_dim: int             states are LongTensor [n, state_dim]
    n_actions: int             forward actions; the last one, n_actions - 1, stops (s -> s_f)
    obs_dim: int               width of encode(states), the networks' input
    max_length: int            the most non-stop actions a trajectory can take
    n_objectives: int          1: a reward (total order); more: Pareto dominance (partial order)
    initial(n)                 n copies of s_0
    encode(states)             float features [n, obs_dim]
    forward_mask(states)       bool [n, n_actions]: allowed forward actions (stop included)
    backward_mask(states)      bool [n, n_actions - 1]: which forward action may have led here
    step(states, actions)      the children, for non-stop actions
    objectives(states)         float [n, n_objectives], larger is better; with one objective it is
                               the reward R(x) > 0 that TB and DB need
    all_states(), index(states)   optional: enumerate the states, for exact L1, modes, Pareto share
    mode_region(states)        optional: which mode a best state belongs to (modes are counted by
                               region, e.g. the 2^D corners of the hypergrid; else each best state)

The README shows a complete user environment.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from zoo.errors import UserError


@runtime_checkable
class Environment(Protocol):
    state_dim: int
    n_actions: int
    obs_dim: int
    max_length: int
    n_objectives: int

    def initial(self, n: int) -> Tensor: ...
    def encode(self, states: Tensor) -> Tensor: ...
    def forward_mask(self, states: Tensor) -> Tensor: ...
    def backward_mask(self, states: Tensor) -> Tensor: ...
    def step(self, states: Tensor, actions: Tensor) -> Tensor: ...
    def objectives(self, states: Tensor) -> Tensor: ...


class Grid:
    """The D-dimensional grid {0, …, H−1}^D: start at the origin, add 1 to a coordinate, or stop."""

    def __init__(self, ndim: int, height: int) -> None:
        if ndim < 1:
            raise UserError(f"--model.ndim must be at least 1, got {ndim}")
        if height < 2:
            raise UserError(f"--model.height must be at least 2 (a grid of one cell has nothing to sample), got {height}")
        self.ndim, self.height = ndim, height
        self.state_dim, self.n_actions = ndim, ndim + 1
        self.obs_dim = ndim * height
        self.max_length = ndim * (height - 1)

    def initial(self, n: int) -> Tensor:
        return torch.zeros(n, self.ndim, dtype=torch.long)

    def encode(self, states: Tensor) -> Tensor:
        """One-hot per coordinate, concatenated: [n, D·H]."""
        return torch.nn.functional.one_hot(states, self.height).flatten(1).float()

    def forward_mask(self, states: Tensor) -> Tensor:
        can_stop = torch.ones(states.shape[0], 1, dtype=torch.bool, device=states.device)
        return torch.cat([states < self.height - 1, can_stop], dim=1)

    def backward_mask(self, states: Tensor) -> Tensor:
        return states > 0

    def step(self, states: Tensor, actions: Tensor) -> Tensor:
        return states + torch.nn.functional.one_hot(actions, self.ndim)

    def all_states(self) -> Tensor:
        axes = [torch.arange(self.height)] * self.ndim
        return torch.cartesian_prod(*axes).reshape(-1, self.ndim)

    def index(self, states: Tensor) -> Tensor:
        weights = self.height ** torch.arange(self.ndim - 1, -1, -1, device=states.device)
        return (states * weights).sum(-1)

    def positions(self, states: Tensor) -> Tensor:
        """Coordinates scaled to [0, 1]."""
        return states.float() / (self.height - 1)


class HyperGrid(Grid):
    r"""The hypergrid of Bengio et al. (2021), with the standard reward

        R(x) = R0 + R1 · Π_i 1[0.25 < |x_i/(H−1) − 0.5|] + R2 · Π_i 1[0.3 < |x_i/(H−1) − 0.5| < 0.4]

    Its modes, the states of reward R0 + R1 + R2, sit in the 2^D corners.
    """

    n_objectives = 1

    def __init__(self, ndim: int = 2, height: int = 8, R0: float = 0.1, R1: float = 0.5, R2: float = 2.0) -> None:
        super().__init__(ndim, height)
        for name, value in (("R0", R0), ("R1", R1), ("R2", R2)):
            if not math.isfinite(value) or value < 0:
                raise UserError(f"--model.{name} must be a finite number ≥ 0, got {value}")
        self.R0, self.R1, self.R2 = R0, R1, R2

    def mode_region(self, states: Tensor) -> Tensor:
        """Which of the 2^D corners a state lies in: the modes are counted by region, as usual."""
        upper = (self.positions(states) > 0.5).long()
        return (upper * 2 ** torch.arange(self.ndim, device=states.device)).sum(-1)

    def objectives(self, states: Tensor) -> Tensor:
        ax = (self.positions(states) - 0.5).abs()
        eps = 1e-6  # x/(H−1) is not exact in floating point: keep the thresholds strict
        outer = (ax > 0.25 + eps).all(-1).float()
        band = ((ax > 0.3 + eps) & (ax < 0.4 - eps)).all(-1).float()
        return (self.R0 + self.R1 * outer + self.R2 * band)[:, None]


# The multi-objective grid of the paper's Section 5 (after the multi-objective GFlowNet literature):
# x ∈ [−1, 1]², each objective rescaled so that larger is better and its maximum is about 1.

def branin(x: Tensor) -> Tensor:
    x0, x1 = 15 * (x[..., 0] / 2 + 0.5) - 5, 15 * (x[..., 1] / 2 + 0.5)
    t1 = x1 - 5.1 / (4 * math.pi**2) * x0**2 + 5 / math.pi * x0 - 6
    t2 = 10 * (1 - 1 / (8 * math.pi)) * torch.cos(x0)
    return 1 - (t1**2 + t2 + 10) / 308.13


def currin(x: Tensor) -> Tensor:
    x0, x1 = x[..., 0] / 2 + 0.5, x[..., 1] / 2 + 0.5
    factor = 1 - torch.exp(-1 / (2 * x1 + 1e-10))
    return factor * (2300 * x0**3 + 1900 * x0**2 + 2092 * x0 + 60) / (100 * x0**3 + 500 * x0**2 + 4 * x0 + 20) / 13.77


def shubert(x: Tensor) -> Tensor:
    x0, x1 = -1.5 * x[..., 0], -1.5 * x[..., 1]
    i = torch.arange(1, 6, dtype=x.dtype, device=x.device)
    s0 = (i * torch.cos((i + 1) * x0[..., None] + i)).sum(-1)
    s1 = (i * torch.cos((i + 1) * x1[..., None] + i)).sum(-1)
    return (s0 * s1 + 186.8) / 397


def beale(x: Tensor) -> Tensor:
    x0, x1 = x[..., 0], x[..., 1]
    return ((1.5 - x0 + x0 * x1) ** 2 + (2.25 - x0 + x0 * x1**2) ** 2 + (2.625 - x0 + x0 * x1**3) ** 2) / 38.8


OBJECTIVES = {"branin": branin, "currin": currin, "shubert": shubert, "beale": beale}


class MultiObjectiveGrid(Grid):
    """The 2-D grid of height H over [−1, 1]² with two to four of Branin, Currin, Shubert, Beale."""

    def __init__(self, height: int = 32, objectives: tuple[str, ...] = ("branin", "currin")) -> None:
        super().__init__(2, height)
        unknown = [o for o in objectives if o not in OBJECTIVES]
        if unknown or len(objectives) < 2:
            raise UserError(f"--model.objectives must name two or more of {sorted(OBJECTIVES)}, got {list(objectives)}")
        self.names = tuple(objectives)
        self.n_objectives = len(objectives)

    def objectives(self, states: Tensor) -> Tensor:
        x = self.positions(states) * 2 - 1
        return torch.stack([OBJECTIVES[name](x) for name in self.names], dim=-1)


BUILTIN = {"hypergrid", "moo_grid"}


def make_env(env: str, ndim: int, height: int, R0: float, R1: float, R2: float,
             objectives: tuple[str, ...], env_kwargs: dict[str, Any] | None) -> Environment:
    """The environment named by ``--model.env``: a built-in name or ``package.module:Class``."""
    if env in BUILTIN and env_kwargs:  # the built-in environments take their settings as flags of their own
        flags = "--model.ndim, --model.height, --model.R0, --model.R1, --model.R2" if env == "hypergrid" else \
            "--model.height, --model.objectives"
        raise UserError(f"--model.env_kwargs: {env} takes no keyword {next(iter(env_kwargs))!r}; its settings are "
                        f"the flags {flags}")
    if env == "hypergrid":
        return HyperGrid(ndim, height, R0, R1, R2)
    if env == "moo_grid":
        return MultiObjectiveGrid(height, tuple(objectives))
    if ":" not in env:
        raise UserError(f"--model.env: unknown environment {env!r}; use one of {sorted(BUILTIN)} "
                         "or 'package.module:Class' / 'path/to/file.py:Class' for your own (see zoo/op_gfn/data.py)")
    module_name, _, class_name = env.rpartition(":")
    try:
        if module_name.endswith(".py"):  # a file of the user's: path/to/my_env.py:MyEnv
            spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if spec is None or not Path(module_name).exists():
                raise ImportError(f"no such file {module_name}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError, OSError) as e:
        raise UserError(f"--model.env: cannot import {env!r} ({e})") from e
    try:
        instance = cls(**(env_kwargs or {}))
    except TypeError as e:
        from zoo.rl import unknown_keyword  # gymnasium is imported only here: a GFlowNet needs none

        error = unknown_keyword(e, env, env_kwargs or {}, cls)
        if error is None:
            raise
        raise error from None
    missing = [m for m in ("state_dim", "n_actions", "obs_dim", "max_length", "n_objectives", "initial", "encode",
                           "forward_mask", "backward_mask", "step", "objectives") if not hasattr(instance, m)]
    if missing:
        raise UserError(f"--model.env: {env!r} lacks {missing} of the environment protocol (zoo/op_gfn/data.py)")
    return instance
