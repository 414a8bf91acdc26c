r"""Mirror Descent Policy Optimization (Tomar, Shani, Efroni & Ghavamzadeh, ICLR 2022): what its two
algorithms share.

    OnPolicyMDPO   zoo/mdpo/on_policy.py   a rollout, GAE, then m steps on −E[ρ A] + KL(π_θ ‖ π_θk)/t_k
    OffPolicyMDPO  zoo/mdpo/off_policy.py  a replay buffer, twin soft Q-critics, and an actor pulled
                                           toward π_θk, refreshed every m environment steps

MDPO, here, is the base both build on: the environments (one EnvPool per process, kept in the
checkpoint), the policy and acting with it, observation normalisation, evaluation, and the optimiser
step. One training step is one MDPO iteration; the experience is collected inside ``training_step``
from ``self.generator``, so DDP runs one set of environments per process (seeded differently) and
averages the gradients, and ``fit --ckpt_path last`` resumes exactly.

Discrete action spaces get a categorical policy, boxes a tanh-squashed Gaussian rescaled to the box.
The equations are in zoo/mdpo/objective.py.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from zoo.errors import UserError
from zoo.mdpo.nets import CategoricalPolicy, GaussianPolicy
from zoo.mdpo.objective import categorical_log_prob, gaussian_log_prob
from zoo.module import Steps, ZooModule
from zoo.rl import EnvPool, RunningNorm, evaluate, make_env

warnings.filterwarnings("ignore", ".*does not have many workers.*")
# the checkpoint holds the state after each iteration's updates, which is what resuming needs
warnings.filterwarnings("ignore", ".*manual optimization and every_n_train_steps.*")


class MDPO(ZooModule):
    """The environments, the policy and the training-step plumbing of on- and off-policy MDPO.

    A subclass builds its networks and optimisers, and implements ``iteration`` (collect experience,
    update, return the statistics to log); ``descend`` takes one optimiser step.
    """

    curve_metrics = ("val/return", "train/episode_return", "train/kl", "train/t_k")
    code_hparams = ("env",)
    scales_fp16_gradients = False  # the updates step their optimisers themselves, several per training step

    def __init__(self, env: str, env_kwargs: dict[str, Any] | None, n_envs: int, n_steps: int,
                 hidden_sizes: Sequence[int], activation: str, normalize_obs: bool, state_dependent_std: bool,
                 log_std_init: float, n_eval_episodes: int, steps_per_epoch: int) -> None:
        super().__init__()
        for name, value in (("n_envs", n_envs), ("n_steps", n_steps), ("steps_per_epoch", steps_per_epoch),
                            ("n_eval_episodes", n_eval_episodes)):
            if value < 1:
                raise UserError(f"--model.{name} must be ≥ 1, got {value}")
        probe = make_env(env, **(env_kwargs or {}))
        obs_space, act_space = probe.observation_space, probe.action_space
        probe.close()
        if not isinstance(obs_space, gym.spaces.Box):
            raise UserError(f"--model.env {env}: MDPO's networks take a Box observation space, got {obs_space}")
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        if not self.discrete and not isinstance(act_space, gym.spaces.Box):
            raise UserError(f"--model.env {env}: MDPO handles Discrete and Box action spaces, got {act_space}")
        if isinstance(act_space, gym.spaces.Box) and not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
            raise UserError(f"--model.env {env}: the tanh-squashed policy needs finite action bounds, got {act_space}")
        self.obs_shape = tuple(obs_space.shape)
        self.obs_dim = int(np.prod(self.obs_shape))
        self.obs_norm = RunningNorm((self.obs_dim,), enabled=normalize_obs)
        if self.discrete:
            self.act_dim = int(act_space.n)
            self.policy = CategoricalPolicy(self.obs_dim, self.act_dim, list(hidden_sizes), activation)
        else:
            self.act_dim = int(np.prod(act_space.shape))
            self.act_shape = tuple(act_space.shape)
            self.register_buffer("act_low", torch.as_tensor(act_space.low, dtype=torch.float32).flatten())
            self.register_buffer("act_high", torch.as_tensor(act_space.high, dtype=torch.float32).flatten())
            self.policy = GaussianPolicy(self.obs_dim, self.act_dim, list(hidden_sizes), activation,
                                         state_dependent_std=state_dependent_std, log_std_init=log_std_init)
        self.register_buffer("env_steps", torch.zeros((), dtype=torch.long))
        self.automatic_optimization = False
        self.pool: EnvPool | None = None
        self._pending_pool: dict[str, Tensor] | None = None
        self.example_input_array = torch.linspace(-0.5, 0.5, 2 * self.obs_dim).view(2, self.obs_dim)

    # -- environments -------------------------------------------------------------------------

    def make_env(self, **kwargs: Any) -> gym.Env:
        return make_env(self.hparams.env, **{**(self.hparams.env_kwargs or {}), **kwargs})

    def env_pool(self) -> EnvPool:
        if self.pool is None:
            self.pool = EnvPool(self.make_env, self.hparams.n_envs, name=self.hparams.env)
            if self._pending_pool is not None:
                if self.global_rank == 0:  # the checkpoint holds rank 0's episodes; other ranks start afresh
                    self.pool.load_state_dict(self._pending_pool)
                self._pending_pool = None
        return self.pool

    def to_env_action(self, a: Tensor) -> np.ndarray:
        """A categorical index, or a squashed action in [−1, 1] rescaled to the action box."""
        if self.discrete:
            return a.cpu().numpy()
        a = self.act_low + (a + 1) * 0.5 * (self.act_high - self.act_low)
        return a.float().cpu().numpy().reshape(-1, *self.act_shape)

    def features(self, obs: Tensor) -> Tensor:
        return self.obs_norm(obs.flatten(1).float())

    def update_obs_norm(self, obs: Tensor) -> None:
        if not self.obs_norm.enabled:
            return
        gathered = self.all_gather(obs.flatten(1).float())  # identical statistics on every rank
        self.obs_norm.update(gathered.reshape(-1, gathered.shape[-1]))

    # -- acting -------------------------------------------------------------------------------

    def forward(self, obs: Tensor) -> Tensor:
        """The greedy action for a batch of observations [B, ...]: argmax of the logits, or tanh(μ)
        rescaled to the action box."""
        x = self.features(obs)
        if self.discrete:
            return self.policy(x).argmax(-1)
        mean, _ = self.policy(x)
        return self.act_low + (torch.tanh(mean) + 1) * 0.5 * (self.act_high - self.act_low)

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Actions for ``env.step`` from one observation or a batch (NumPy or tensor). Greedy unless
        ``deterministic=False``, which samples from π with torch's global random stream."""
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        single = obs_t.shape == self.obs_shape
        if single:
            obs_t = obs_t[None]
        if tuple(obs_t.shape[1:]) != self.obs_shape:
            raise UserError(f"act: observations of shape {tuple(obs_t.shape)} do not match the env's {self.obs_shape}")
        if not torch.isfinite(obs_t).all():
            raise UserError("act: the observation holds NaN or ±inf")
        if deterministic:
            out = self(obs_t).cpu().numpy()
            if not self.discrete:
                out = out.reshape(-1, *self.act_shape)
        else:
            out = self.to_env_action(self.sample_action(self.features(obs_t), None)[0])
        return out[0] if single else out

    def sample_action(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(action, raw action, log π of it, distribution parameters): for a categorical policy the index
        twice and the logits; for a Gaussian tanh(u), u, log N(u; μ, σ²) and [μ, log σ]."""
        g = generator
        if self.discrete:
            logits = self.policy(x)
            a = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(1)
            return a, a, categorical_log_prob(logits, a), logits
        mean, log_std = self.policy(x)
        noise = torch.randn(mean.shape, generator=g, device=mean.device) if g is not None else torch.randn_like(mean)
        u = mean + log_std.exp() * noise
        return torch.tanh(u), u, gaussian_log_prob(u, mean, log_std), torch.cat([mean, log_std], -1)

    # -- one iteration per training step -------------------------------------------------------

    def iteration(self) -> dict[str, Tensor]:
        """Collect experience, update the networks; returns the statistics to log."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> None:
        stats = self.iteration()
        self.count_iteration()
        self.log_dict({f"train/{k}": v.float() for k, v in stats.items()})
        self.log("train/env_steps", self.env_steps.float())
        finished = self.pool.pop_finished()
        if finished:
            returns = torch.tensor([r for r, _ in finished], dtype=torch.float32)
            lengths = torch.tensor([n for _, n in finished], dtype=torch.float32)
            self.log("train/episode_return", returns.mean(), prog_bar=True, batch_size=len(finished))
            self.log("train/episode_length", lengths.mean(), batch_size=len(finished))

    def descend(self, loss: Tensor, optimizers: Sequence[torch.optim.Optimizer], max_grad_norm: float = 0.0) -> None:
        """One step of each of ``optimizers`` on ``loss``, for the parameters they hold.

        The gradient is averaged over the processes of a DDP run through the strategy: each MDPO update
        trains its own networks (the policy, the value function, the critics, the temperature), which
        DDP's reducer, expecting a gradient for every parameter from every backward, cannot average.
        ``max_grad_norm`` > 0 clips the gradient's norm over those parameters.
        """
        params = [p for opt in optimizers for group in opt.param_groups for p in group["params"] if p.requires_grad]
        grads = torch.autograd.grad(loss, params)
        flat = self.trainer.strategy.reduce(torch.cat([g.reshape(-1) for g in grads]), reduce_op="mean")
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.view_as(p)
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        for opt in optimizers:
            opt.step()

    def count_iteration(self) -> None:
        """Advance the trainer's global step by one: one training step is one iteration, however many
        updates it made (none during an off-policy warm-up). Lightning counts the steps of its optimiser
        wrapper; this one is taken with every gradient cleared, and Adam skips a parameter without a
        gradient, so the step leaves every optimiser's state (its step count, its moments) as it was."""
        wrapped = self.optimizers()
        wrapped = wrapped if isinstance(wrapped, list) else [wrapped]
        for opt in wrapped:
            opt.optimizer.zero_grad(set_to_none=True)
        wrapped[0].step()

    def raw_optimizers(self) -> list[torch.optim.Optimizer]:
        opts = self.optimizers(use_pl_optimizer=False)
        return opts if isinstance(opts, list) else [opts]

    def anneal_lr(self, k: int, K: int) -> None:
        """Learning rates decayed linearly to 0 over K iterations (``lr_anneal``)."""
        frac = 1.0 - min(k, K) / max(K, 1)
        for opt in self.raw_optimizers():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * frac

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, n_episodes: int | None = None, seed: int | None = None) -> np.ndarray:
        """Returns of greedy-policy episodes on fixed seeds (each rank its own, under DDP)."""
        n = n_episodes or self.hparams.n_eval_episodes
        seed = self.hparams.eval_seed + n * self.global_rank if seed is None else seed
        return evaluate(lambda o: self.act(o), self.make_env, n, seed=seed)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        returns = torch.as_tensor(self.evaluate(), dtype=torch.float32)
        self.log("val/return", returns.mean(), prog_bar=True, sync_dist=True, batch_size=len(returns))
        self.log("val/return_std", returns.std(), sync_dist=True, batch_size=len(returns))
        self.log("val/env_steps", self.env_steps.float(), sync_dist=True, batch_size=len(returns))

    def release_metrics(self) -> dict[str, float]:
        returns = self.evaluate(n_episodes=20, seed=2_000_000)
        return {"eval/return_mean_20ep": float(returns.mean()), "eval/return_std_20ep": float(returns.std()),
                "env_steps": float(self.env_steps)}

    # -- Lightning plumbing -------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        super().setup(stage)  # loads --model.init_from
        if stage == "fit" and self.hparams.get("init_from"):  # a fine-tune counts its own environment steps
            self.env_steps.zero_()

    def with_initial_lr(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        for group in optimizer.param_groups:
            group["initial_lr"] = group["lr"]
        return optimizer

    def train_dataloader(self) -> Steps:
        """No data set: each training step collects its own experience."""
        return Steps(self.hparams.steps_per_epoch)

    def val_dataloader(self) -> Steps:
        return Steps(1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.pool is not None:
            checkpoint["mdpo_envs"] = self.pool.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "mdpo_envs" in checkpoint:
            self._pending_pool = checkpoint["mdpo_envs"]
            self.pool = None
