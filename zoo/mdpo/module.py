r"""Mirror Descent Policy Optimization (Tomar, Shani, Efroni & Ghavamzadeh, ICLR 2022), on- and off-policy.

    variant = on_policy    one iteration k: a rollout of n_steps × n_envs environment steps, GAE
                           advantages, then m = sgd_epochs passes of minibatch SGD on
                           −E[π_θ/π_θk · A] + (1/t_k) KL(π_θ ‖ π_θk)  (+ the value loss)
    variant = off_policy   one iteration: n_steps × n_envs environment steps into a replay buffer and as
                           many gradient steps on twin soft Q-functions and on the actor objective
                           E[λ log π_θ(ã|s) − Q(s, ã)] + (1/t_k) KL(π_θ ‖ π_θk), π_θk refreshed every
                           sgd_steps environment steps

t_k = 1 − k/K over the run's own K iterations (on-policy: K = the trainer's max_steps; off-policy:
K = the run's environment steps / sgd_steps). One training step is one iteration; the rollouts are
made inside ``training_step``, from ``self.generator``, so DDP runs one set of environments per
process (different seeds) and averages the gradients, and ``fit --ckpt_path last`` resumes exactly
(the environments' running episodes and the replay buffer are in the checkpoint).

Discrete action spaces get a categorical policy, boxes a tanh-squashed Gaussian rescaled to the
box. The equations are in zoo/mdpo/objective.py.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Literal, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.mdpo.nets import CategoricalPolicy, GaussianPolicy, QNetwork, mlp
from zoo.mdpo.objective import (
    categorical_entropy,
    categorical_kl,
    categorical_log_prob,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
    mdpo_off_policy_actor_loss,
    mdpo_on_policy_loss,
    soft_q_target,
    step_size,
    tanh_gaussian_log_prob,
    temperature_loss,
    twin_q_loss,
)
from zoo.module import Steps, ZooModule
from zoo.rl import EnvPool, ReplayBuffer, RunningNorm, collect_rollout, evaluate, gae, make_env

warnings.filterwarnings("ignore", ".*does not have many workers.*")
# the checkpoint holds the state after each iteration's updates, which is what resuming needs
warnings.filterwarnings("ignore", ".*manual optimization and every_n_train_steps.*")


class MDPO(ZooModule):
    curve_metrics = ("val/return", "train/episode_return", "train/kl", "train/t_k")
    code_hparams = ("env",)
    scales_fp16_gradients = False  # most Adam steps go to the optimiser directly, inside one training step

    def __init__(
        self,
        env: str = "CartPole-v1",
        env_kwargs: dict[str, Any] | None = None,
        variant: Literal["on_policy", "off_policy"] = "on_policy",
        n_envs: int = 8,
        n_steps: int = 32,
        gamma: float = 0.99,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: Literal["tanh", "relu"] = "tanh",
        lr: float = 3e-4,
        lr_anneal: bool = False,
        step_size_schedule: Literal["linear", "constant"] = "linear",
        normalize_obs: bool = False,
        gae_lambda: float = 0.95,
        sgd_epochs: int = 10,
        minibatch_size: int = 64,
        normalize_advantage: bool = True,
        vf_coef: float = 0.5,
        ent_coef: float = 0.0,
        max_grad_norm: float = 0.5,
        log_std_init: float = 0.0,
        buffer_size: int = 1_000_000,
        batch_size: int = 256,
        learning_starts: int = 100,
        gradient_steps: int = -1,
        sgd_steps: int = 1000,
        tau: float = 0.005,
        critic_lr: float | None = None,
        alpha: float = 0.2,
        autotune_alpha: bool = True,
        target_entropy: float | None = None,
        n_eval_episodes: int = 10,
        eval_seed: int = 1_000_000,
        steps_per_epoch: int = 10,
        schedule_steps: int | None = None,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            env: a gymnasium id (CartPole-v1, Pendulum-v1, Hopper-v5, …) or ``package.module:callable``
                returning a gymnasium.Env with a Box observation space.
            env_kwargs: keyword arguments for ``gymnasium.make`` or the entry point.
            variant: ``on_policy`` (rollouts, GAE, m SGD epochs) or ``off_policy`` (SAC-like, Box actions).
            n_envs: environments stepped side by side in each process.
            n_steps: environment steps per environment in one iteration (one training step).
            gamma: discount factor γ.
            hidden_sizes: hidden layer widths of every network (policy, value, Q).
            activation: ``tanh`` or ``relu`` between the hidden layers.
            lr: Adam learning rate (the policy's; also the critics' unless critic_lr is given).
            lr_anneal: decay the learning rates linearly to 0 over the run.
            step_size_schedule: ``linear`` is the paper's t_k = 1 − k/K; ``constant`` keeps t_k = 1.
            normalize_obs: normalise observations with running mean and variance (kept in the weights).
            gae_lambda: λ of generalised advantage estimation (on-policy).
            sgd_epochs: m, the passes of minibatch SGD over each rollout (on-policy).
            minibatch_size: transitions per SGD minibatch (on-policy).
            normalize_advantage: standardise advantages within each minibatch (on-policy).
            vf_coef: weight of the value-function loss (on-policy).
            ent_coef: weight of an entropy bonus (on-policy; 0 in the paper).
            max_grad_norm: clip the gradient norm (on-policy; ≤ 0 turns clipping off).
            log_std_init: initial log σ of the Gaussian policy (on-policy).
            buffer_size: replay buffer capacity in transitions (off-policy).
            batch_size: transitions per gradient step (off-policy).
            learning_starts: environment steps of uniformly random actions before learning (off-policy).
            gradient_steps: gradient steps per iteration; −1 is one per environment step (off-policy).
            sgd_steps: environment steps between two refreshes of π_θk, the policy the KL pulls toward (off-policy).
            tau: Polyak rate of the target Q-networks (off-policy).
            critic_lr: learning rate of the Q-networks (off-policy; lr when not given).
            alpha: the entropy temperature λ (off-policy; its initial value when autotuned).
            autotune_alpha: tune λ so the policy's entropy tracks target_entropy (off-policy).
            target_entropy: H̄ for the tuned λ; −dim(A) when not given.
            n_eval_episodes: episodes of the greedy policy per evaluation (validation).
            eval_seed: seed of the first evaluation episode; the others follow it.
            steps_per_epoch: iterations between two evaluations.
            schedule_steps: K, the iterations (training steps) over which t_k = 1 − k/K and the learning
                rate anneal; the trainer's max_steps when not given (a resumed run keeps the K it started with).
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__()
        self.save_hyperparameters()
        for name, value in (("n_envs", n_envs), ("n_steps", n_steps), ("sgd_epochs", sgd_epochs),
                            ("minibatch_size", minibatch_size), ("batch_size", batch_size), ("sgd_steps", sgd_steps),
                            ("steps_per_epoch", steps_per_epoch), ("n_eval_episodes", n_eval_episodes)):
            if value < 1:
                raise ValueError(f"--model.{name} must be ≥ 1, got {value}")
        if not 0 < gamma <= 1 or not 0 <= gae_lambda <= 1 or not 0 < tau <= 1:
            raise ValueError(f"--model.gamma, tau must lie in (0, 1] and gae_lambda in [0, 1]; got {gamma}, {tau}, {gae_lambda}")
        probe = self.make_env()
        obs_space, act_space = probe.observation_space, probe.action_space
        probe.close()
        if not isinstance(obs_space, gym.spaces.Box):
            raise ValueError(f"--model.env {env}: MDPO's networks take a Box observation space, got {obs_space}")
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        if not self.discrete and not isinstance(act_space, gym.spaces.Box):
            raise ValueError(f"--model.env {env}: MDPO handles Discrete and Box action spaces, got {act_space}")
        if isinstance(act_space, gym.spaces.Box) and not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
            raise ValueError(f"--model.env {env}: the tanh-squashed policy needs finite action bounds, got {act_space}")
        if variant == "off_policy" and self.discrete:
            raise ValueError(f"--model.env {env} has Discrete actions: off-policy MDPO (SAC-like, reparametrised "
                             "actions) needs a Box action space; use --model.variant on_policy")
        self.obs_shape = tuple(obs_space.shape)
        obs_dim = int(np.prod(self.obs_shape))
        self.obs_norm = RunningNorm((obs_dim,), enabled=normalize_obs)
        hidden = list(hidden_sizes)
        if self.discrete:
            self.act_dim = int(act_space.n)
            self.policy = CategoricalPolicy(obs_dim, self.act_dim, hidden, activation)
        else:
            self.act_dim = int(np.prod(act_space.shape))
            self.act_shape = tuple(act_space.shape)
            self.register_buffer("act_low", torch.as_tensor(act_space.low, dtype=torch.float32).flatten())
            self.register_buffer("act_high", torch.as_tensor(act_space.high, dtype=torch.float32).flatten())
            self.policy = GaussianPolicy(obs_dim, self.act_dim, hidden, activation,
                                         state_dependent_std=variant == "off_policy", log_std_init=log_std_init)
        if variant == "on_policy":
            self.value = mlp(obs_dim, hidden, 1, activation)
        else:
            self.q1, self.q2 = (QNetwork(obs_dim, self.act_dim, hidden, activation) for _ in range(2))
            self.q1_target, self.q2_target = (QNetwork(obs_dim, self.act_dim, hidden, activation) for _ in range(2))
            self.q1_target.load_state_dict(self.q1.state_dict())
            self.q2_target.load_state_dict(self.q2.state_dict())
            self.policy_old = GaussianPolicy(obs_dim, self.act_dim, hidden, activation, state_dependent_std=True)
            self.policy_old.load_state_dict(self.policy.state_dict())
            for net in (self.q1_target, self.q2_target, self.policy_old):
                net.requires_grad_(False)
            self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)), requires_grad=autotune_alpha)
            self.target_entropy = float(-self.act_dim if target_entropy is None else target_entropy)
            self.buffer = ReplayBuffer(buffer_size)
            self.register_buffer("n_refreshes", torch.zeros((), dtype=torch.long))
        self.register_buffer("env_steps", torch.zeros((), dtype=torch.long))
        self.automatic_optimization = False
        self.pool: EnvPool | None = None
        self._pending_pool: dict[str, Tensor] | None = None
        self.example_input_array = torch.linspace(-0.5, 0.5, 2 * obs_dim).view(2, obs_dim)

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
            raise ValueError(f"act: observations of shape {tuple(obs_t.shape)} do not match the env's {self.obs_shape}")
        if not torch.isfinite(obs_t).all():
            raise ValueError("act: the observation holds NaN or ±inf")
        if deterministic:
            out = self(obs_t).cpu().numpy()
            if not self.discrete:
                out = out.reshape(-1, *self.act_shape)
        else:
            out = self.to_env_action(self.sample_action(self.features(obs_t), None)[0])
        return out[0] if single else out

    def sample_action(self, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(action, raw action, log π of it, distribution parameters): for a categorical policy the index
        twice and the logits; for a Gaussian tanh(u), u and [μ, log σ]."""
        g = generator
        if self.discrete:
            logits = self.policy(x)
            a = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(1)
            return a, a, categorical_log_prob(logits, a), logits
        mean, log_std = self.policy(x)
        noise = torch.randn(mean.shape, generator=g, device=mean.device) if g is not None else torch.randn_like(mean)
        u = mean + log_std.exp() * noise
        return torch.tanh(u), u, gaussian_log_prob(u, mean, log_std), torch.cat([mean, log_std], -1)

    # -- on-policy MDPO -----------------------------------------------------------------------

    def _act_on_policy(self, obs: Tensor) -> tuple[np.ndarray, dict[str, Tensor]]:
        x = self.features(obs)
        a, raw, logp, params = self.sample_action(x, self.generator)
        return self.to_env_action(a), {"x": x, "actions": raw, "log_prob": logp, "old_params": params}

    def log_prob_kl_entropy(self, x: Tensor, actions: Tensor, old_params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """log π_θ(a|s), KL(π_θ(·|s) ‖ π_θk(·|s)) in closed form, and the entropy of π_θ(·|s). For the
        squashed Gaussian, log-probabilities of u = atanh(a): the tanh Jacobian cancels in π_θ/π_θk."""
        if self.discrete:
            logits = self.policy(x)
            return categorical_log_prob(logits, actions), categorical_kl(logits, old_params), categorical_entropy(logits)
        mean, log_std = self.policy(x)
        old_mean, old_log_std = old_params.chunk(2, dim=-1)
        return (gaussian_log_prob(actions, mean, log_std), gaussian_kl(mean, log_std, old_mean, old_log_std),
                gaussian_entropy(log_std))

    def on_policy_iteration(self) -> dict[str, Tensor]:
        hp = self.hparams
        with torch.no_grad():
            roll = collect_rollout(self.env_pool(), self._act_on_policy, hp.n_steps, self.generator, self.device)
            T, N = roll["rewards"].shape
            next_x = self.features(roll["next_obs"].flatten(0, 1))
            values = self.value(roll["x"].flatten(0, 1)).float().view(T, N)
            next_values = self.value(next_x).float().view(T, N)
            adv, returns = gae(roll["rewards"], values, next_values, roll["terminated"],
                               roll["terminated"] | roll["truncated"], hp.gamma, hp.gae_lambda)
            self.update_obs_norm(roll["obs"].flatten(0, 1))
        batch = {"x": roll["x"].flatten(0, 1), "actions": roll["actions"].flatten(0, 1),
                 "log_prob": roll["log_prob"].flatten(0, 1), "old_params": roll["old_params"].flatten(0, 1),
                 "adv": adv.flatten(), "returns": returns.flatten()}
        k, K = int(self.global_step), self.total_iterations()
        t_k = step_size(min(k, K - 1), K) if hp.step_size_schedule == "linear" else 1.0
        self.set_lr(k, K)
        opt = self.optimizers()
        B = T * N
        mb = min(hp.minibatch_size, B)
        n_updates = hp.sgd_epochs * (B // mb)
        stats: dict[str, list[Tensor]] = {"policy_loss": [], "value_loss": [], "kl": [], "entropy": []}
        for epoch in range(hp.sgd_epochs):
            perm = torch.randperm(B, generator=self.generator, device=self.generator.device).to(self.device)
            for start in range(0, B - mb + 1, mb):
                i = perm[start:start + mb]
                adv_i = batch["adv"][i]
                if hp.normalize_advantage and mb > 1:
                    adv_i = (adv_i - adv_i.mean()) / (adv_i.std() + 1e-8)
                logp, kl, entropy = self.log_prob_kl_entropy(batch["x"][i], batch["actions"][i], batch["old_params"][i])
                policy_loss = mdpo_on_policy_loss(logp, batch["log_prob"][i], adv_i, kl, t_k)
                value_loss = F.mse_loss(self.value(batch["x"][i]).float().squeeze(-1), batch["returns"][i])
                loss = policy_loss + hp.vf_coef * value_loss - hp.ent_coef * entropy.mean()
                self.sgd_step(opt, loss, last=len(stats["kl"]) == n_updates - 1)
                for name, v in zip(stats, (policy_loss, value_loss, kl.mean(), entropy.mean())):
                    stats[name].append(v.detach())
        self.env_steps += B
        return {**{k: torch.stack(v).mean() for k, v in stats.items()}, "t_k": torch.tensor(float(t_k))}

    # -- off-policy MDPO ----------------------------------------------------------------------

    def _act_off_policy(self, obs: Tensor) -> tuple[np.ndarray, dict[str, Tensor]]:
        if int(self.env_steps) < self.hparams.learning_starts:
            a = torch.rand((obs.shape[0], self.act_dim), generator=self.generator, device=self.generator.device)
            a = (2 * a - 1).to(self.device)
        else:
            a = self.sample_action(self.features(obs), self.generator)[0]
        return self.to_env_action(a), {"actions": a}

    def squashed_sample(self, x: Tensor, policy: nn.Module) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A reparametrised ã = tanh(μ + σ ε), its log π (with the tanh Jacobian), and μ, log σ."""
        mean, log_std = policy(x)
        eps = torch.randn(mean.shape, generator=self.generator, device=self.generator.device).to(mean.device)
        u = mean + log_std.exp() * eps
        return torch.tanh(u), tanh_gaussian_log_prob(u, mean, log_std), mean, log_std

    def off_policy_iteration(self) -> dict[str, Tensor]:
        hp = self.hparams
        with torch.no_grad():
            roll = collect_rollout(self.env_pool(), self._act_off_policy, hp.n_steps, self.generator, self.device)
            self.update_obs_norm(roll["obs"].flatten(0, 1))
        self.buffer.add(obs=roll["obs"].flatten(0, 1), actions=roll["actions"].flatten(0, 1),
                        rewards=roll["rewards"].flatten(0, 1), next_obs=roll["next_obs"].flatten(0, 1),
                        terminated=roll["terminated"].flatten(0, 1).float())
        new_steps = roll["rewards"].numel()
        self.env_steps += new_steps
        K_steps = self.total_iterations() * new_steps
        K = max(1, math.ceil(K_steps / hp.sgd_steps))
        k = int(self.env_steps) // hp.sgd_steps  # π_θk is the policy at the last multiple of sgd_steps
        if k > int(self.n_refreshes):
            self.policy_old.load_state_dict(self.policy.state_dict())
            self.n_refreshes.fill_(k)
        t_k = step_size(min(k, K - 1), K) if hp.step_size_schedule == "linear" else 1.0
        self.set_lr(int(self.global_step), self.total_iterations())
        opt = self.optimizers()
        n_updates = new_steps if hp.gradient_steps < 0 else hp.gradient_steps
        stats: dict[str, list[Tensor]] = {"actor_loss": [], "critic_loss": [], "kl": [], "alpha": [], "entropy": []}
        if int(self.env_steps) < hp.learning_starts:  # still one (zero) step through the optimizer, so that one iteration is one global step
            n_updates = 0
            self.sgd_step(opt, sum(p.sum() * 0 for p in self.parameters() if p.requires_grad), last=True)
        for j in range(n_updates):
            b = {k: v.to(self.device) for k, v in self.buffer.sample(hp.batch_size, self.generator).items()}
            x, x_next = self.features(b["obs"]), self.features(b["next_obs"])
            alpha = self.log_alpha.exp().detach()
            with torch.no_grad():
                a_next, logp_next, _, _ = self.squashed_sample(x_next, self.policy)
                y = soft_q_target(b["rewards"], b["terminated"], self.q1_target(x_next, a_next),
                                  self.q2_target(x_next, a_next), logp_next, hp.gamma, alpha)
            critic_loss = twin_q_loss(self.q1(x, b["actions"]), self.q2(x, b["actions"]), y)
            a_new, logp, mean, log_std = self.squashed_sample(x, self.policy)
            with torch.no_grad():
                old_mean, old_log_std = self.policy_old(x)
            kl = gaussian_kl(mean, log_std, old_mean, old_log_std)
            # the actor's Q is the critics' value with their weights held fixed: one backward for all nets
            q_new = torch.minimum(self.frozen_q(self.q1, x, a_new), self.frozen_q(self.q2, x, a_new))
            actor_loss = mdpo_off_policy_actor_loss(q_new, logp, kl, t_k, alpha)
            loss = critic_loss + actor_loss
            if hp.autotune_alpha:
                loss = loss + temperature_loss(self.log_alpha, logp, self.target_entropy)
            self.sgd_step(opt, loss, last=j == n_updates - 1, clip=False)
            with torch.no_grad():
                for net, target in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                    torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), hp.tau)
            for name, v in zip(stats, (actor_loss, critic_loss, kl.mean(), alpha, -logp.mean())):
                stats[name].append(v.detach())
        out = {k: torch.stack(v).mean() for k, v in stats.items() if v}
        return {**out, "t_k": torch.tensor(float(t_k))}

    @staticmethod
    def frozen_q(q: QNetwork, x: Tensor, a: Tensor) -> Tensor:
        params = {k: v.detach() for k, v in q.named_parameters()}
        return torch.func.functional_call(q, params, (x, a))

    # -- shared steps -------------------------------------------------------------------------

    def total_iterations(self) -> int:
        return self.schedule_steps()

    def update_obs_norm(self, obs: Tensor) -> None:
        if not self.obs_norm.enabled:
            return
        gathered = self.all_gather(obs.flatten(1).float())  # identical statistics on every rank
        self.obs_norm.update(gathered.reshape(-1, gathered.shape[-1]))

    def set_lr(self, k: int, K: int) -> None:
        if not self.hparams.lr_anneal:
            return
        frac = 1.0 - min(k, K) / max(K, 1)
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = group["initial_lr"] * frac

    def sgd_step(self, opt, loss: Tensor, last: bool, clip: bool = True) -> None:
        """One Adam step. Only the iteration's last step goes through Lightning's optimizer wrapper,
        so that the trainer's global step counts iterations."""
        opt.zero_grad()
        self.manual_backward(loss)
        if clip and self.hparams.max_grad_norm > 0:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.max_grad_norm, gradient_clip_algorithm="norm")
        if last:
            opt.step()
        else:
            opt.optimizer.step()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        hp = self.hparams
        stats = self.on_policy_iteration() if hp.variant == "on_policy" else self.off_policy_iteration()
        self.log_dict({f"train/{k}": v.float() for k, v in stats.items()})
        self.log("train/env_steps", self.env_steps.float())
        finished = self.pool.pop_finished()
        if finished:
            returns = torch.tensor([r for r, _ in finished], dtype=torch.float32)
            lengths = torch.tensor([n for _, n in finished], dtype=torch.float32)
            self.log("train/episode_return", returns.mean(), prog_bar=True, batch_size=len(finished))
            self.log("train/episode_length", lengths.mean(), batch_size=len(finished))

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
            if hasattr(self, "n_refreshes"):
                self.n_refreshes.zero_()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.variant == "on_policy":
            groups = [{"params": [*self.policy.parameters(), *self.value.parameters()], "lr": hp.lr}]
        else:
            groups = [{"params": list(self.policy.parameters()), "lr": hp.lr},
                      {"params": [*self.q1.parameters(), *self.q2.parameters()], "lr": hp.critic_lr or hp.lr}]
            if hp.autotune_alpha:
                groups.append({"params": [self.log_alpha], "lr": hp.lr})
        for g in groups:
            g["initial_lr"] = g["lr"]
        return torch.optim.Adam(groups, eps=1e-5 if hp.variant == "on_policy" else 1e-8, foreach=True)

    def train_dataloader(self) -> Steps:
        """No data set: each training step collects its own experience."""
        return Steps(self.hparams.steps_per_epoch)

    def val_dataloader(self) -> Steps:
        return Steps(1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.pool is not None:
            checkpoint["mdpo_envs"] = self.pool.state_dict()
        if self.hparams.variant == "off_policy":
            checkpoint["mdpo_replay"] = self.buffer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "mdpo_envs" in checkpoint:
            self._pending_pool = checkpoint["mdpo_envs"]
            self.pool = None
        if "mdpo_replay" in checkpoint:
            self.buffer.load_state_dict(checkpoint["mdpo_replay"])
