r"""Off-policy MDPO (Tomar et al., ICLR 2022, Section 4.2): SAC's machinery with a mirror-descent actor.

One iteration: n_steps × n_envs environment steps into a replay buffer D (uniform random actions
before ``learning_starts``), then as many gradient steps, each

    critic       ψ ← ψ − ∇ Σ_i E_D[(Q_ψi(s, a) − y)²] / 2,   y = r + γ (1 − d)(min_i Q_ψ̄i(s', a') − λ log π_θ(a'|s'))
    actor        θ ← θ − ∇ { E_{s∼D, ε}[λ log π_θk(ã|s) − Q_ψ1(s, ã)] + (1/t_k) E_D[KL(π_θ ‖ π_θk)] + reg },
                 ã = tanh(μ_θ(s) + σ_θ(s) ε)
    temperature  (optional) λ ← λ − ∇ −E[log λ (log π_θ(ã|s) + H̄)]
    targets      ψ̄ ← (1 − τ) ψ̄ + τ ψ

π_θk, the policy the KL pulls toward, is a frozen copy of π_θ refreshed every ``env_steps_per_refresh``
environment steps (the paper's m: one gradient step per environment step, m = 1000). The step size
t_k is a constant (``step_size``, 1 in the official code's runs), λ fixed at 0.2, as in the paper.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import torch
from torch import Tensor, nn

from zoo.errors import UserError
from zoo.mdpo.module import MDPO
from zoo.mdpo.nets import GaussianPolicy, QNetwork
from zoo.mdpo.objective import (
    gaussian_kl,
    mdpo_off_policy_actor_loss,
    policy_regularization,
    soft_q_target,
    step_size,
    tanh_gaussian_log_prob,
    temperature_loss,
    twin_q_loss,
)
from zoo.rl import ReplayBuffer, collect_rollout


class OffPolicyMDPO(MDPO):
    """Off-policy MDPO: a replay buffer, twin soft Q-critics, and an actor kept near π_θk by a KL term."""

    def __init__(
        self,
        env: str = "Pendulum-v1",
        env_kwargs: dict | None = None,
        n_envs: int = 1,
        n_steps: int = 50,
        gamma: float = 0.99,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: Literal["tanh", "relu"] = "relu",
        normalize_obs: bool = False,
        lr: float = 3e-4,
        critic_lr: float | None = None,
        lr_anneal: bool = False,
        buffer_size: int = 1_000_000,
        batch_size: int = 256,
        learning_starts: int = 10_000,
        gradient_steps: int = -1,
        tau: float = 0.005,
        env_steps_per_refresh: int = 1000,
        step_size_schedule: Literal["constant", "linear"] = "constant",
        step_size: float = 1.0,
        alpha: float = 0.2,
        autotune_alpha: bool = False,
        target_entropy: float | None = None,
        policy_reg: float = 1e-3,
        n_eval_episodes: int = 10,
        eval_seed: int = 1_000_000,
        steps_per_epoch: int = 10,
        schedule_steps: int | None = None,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            env: a gymnasium id with Box actions (Pendulum-v1, Hopper-v5, …) or ``package.module:callable``
                returning a gymnasium.Env with Box observations and bounded Box actions.
            env_kwargs: keyword arguments for ``gymnasium.make`` or the entry point, taken as data ("11" stays a string).
            n_envs: environments stepped side by side in each process.
            n_steps: environment steps per environment in one iteration (one training step).
            gamma: discount factor γ.
            hidden_sizes: hidden layer widths of the actor and of each critic.
            activation: ``tanh`` or ``relu`` between the hidden layers.
            normalize_obs: normalise observations with running mean and variance (kept in the weights).
            lr: Adam learning rate of the actor (and of the critics unless critic_lr is given, and of λ).
            critic_lr: Adam learning rate of the critics; lr when not given.
            lr_anneal: decay the learning rates linearly to 0 over the run.
            buffer_size: replay buffer capacity in transitions.
            batch_size: transitions per gradient step.
            learning_starts: environment steps of uniformly random actions before the first gradient step.
            gradient_steps: gradient steps per iteration; −1 is one per environment step.
            tau: Polyak rate τ of the target critics.
            env_steps_per_refresh: environment steps between two refreshes of π_θk, the policy the KL pulls
                toward (the paper's m, 1000).
            step_size_schedule: ``constant`` (the paper's off-policy choice) keeps t_k = step_size;
                ``linear`` anneals t_k = step_size · (1 − k/K) over the run's K refreshes.
            step_size: t_k, or its first value under ``linear``; the KL weight is 1/t_k.
            alpha: λ, the entropy weight (0.2 in the paper); its initial value when autotuned.
            autotune_alpha: tune λ so that the policy's entropy tracks target_entropy (SAC's rule).
            target_entropy: H̄ for the tuned λ; −dim(A) when not given.
            policy_reg: weight of the penalty E[μ²] + E[(log σ)²] on the actor's Gaussian (10⁻³ officially).
            n_eval_episodes: episodes of the greedy policy per evaluation (validation).
            eval_seed: seed of the first evaluation episode; the others follow it.
            steps_per_epoch: iterations between two evaluations.
            schedule_steps: K, in iterations (training steps), over which ``linear`` anneals t_k and the learning
                rates anneal; the trainer's max_steps when not given (a resumed run keeps the K it started with).
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__(env, env_kwargs, n_envs, n_steps, hidden_sizes, activation, normalize_obs,
                         state_dependent_std=True, log_std_init=0.0, n_eval_episodes=n_eval_episodes,
                         steps_per_epoch=steps_per_epoch)
        self.save_hyperparameters()
        if self.discrete:
            raise UserError(f"--model.env {env} has Discrete actions: off-policy MDPO (SAC-like, reparametrised "
                             "actions) needs a Box action space; use OnPolicyMDPO")
        for name, value in (("batch_size", batch_size), ("env_steps_per_refresh", env_steps_per_refresh)):
            if value < 1:
                raise UserError(f"--model.{name} must be ≥ 1, got {value}")
        if not 0 < gamma <= 1 or not 0 < tau <= 1:
            raise UserError(f"--model.gamma and tau must lie in (0, 1]; got {gamma}, {tau}")
        if step_size <= 0 or alpha <= 0:
            raise UserError(f"--model.step_size and alpha must be positive; got {step_size}, {alpha}")
        hidden = list(hidden_sizes)
        self.q1, self.q2 = (QNetwork(self.obs_dim, self.act_dim, hidden, activation) for _ in range(2))
        self.q1_target, self.q2_target = (QNetwork(self.obs_dim, self.act_dim, hidden, activation) for _ in range(2))
        self.q1_target.load_state_dict(self.q1.state_dict())
        self.q2_target.load_state_dict(self.q2.state_dict())
        self.policy_old = GaussianPolicy(self.obs_dim, self.act_dim, hidden, activation, state_dependent_std=True)
        self.policy_old.load_state_dict(self.policy.state_dict())
        for net in (self.q1_target, self.q2_target, self.policy_old):
            net.requires_grad_(False)
        if autotune_alpha:
            self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))
        else:
            self.register_buffer("log_alpha", torch.tensor(math.log(alpha)))
        self.target_entropy = float(-self.act_dim if target_entropy is None else target_entropy)
        self.buffer = ReplayBuffer(buffer_size)
        self.register_buffer("n_refreshes", torch.zeros((), dtype=torch.long))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        actor = torch.optim.Adam(self.policy.parameters(), lr=hp.lr, foreach=True)
        critics = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=hp.critic_lr or hp.lr, foreach=True)
        optimizers = [actor, critics]
        if hp.autotune_alpha:
            optimizers.append(torch.optim.Adam([self.log_alpha], lr=hp.lr))
        return [self.with_initial_lr(opt) for opt in optimizers]

    # -- experience ---------------------------------------------------------------------------

    def _act(self, obs: Tensor) -> tuple[Any, dict[str, Tensor]]:
        if int(self.env_steps) < self.hparams.learning_starts:
            a = torch.rand((obs.shape[0], self.act_dim), generator=self.generator, device=self.generator.device)
            a = (2 * a - 1).to(self.device)
        else:
            a = self.sample_action(self.features(obs), self.generator)[0]
        return self.to_env_action(a), {"actions": a}

    @torch.no_grad()
    def collect(self) -> int:
        """n_steps of every environment into the replay buffer; returns how many transitions were added."""
        roll = collect_rollout(self.env_pool(), self._act, self.hparams.n_steps, self.generator, self.device)
        self.update_obs_norm(roll["obs"].flatten(0, 1))
        self.buffer.add(obs=roll["obs"].flatten(0, 1), actions=roll["actions"].flatten(0, 1),
                        rewards=roll["rewards"].flatten(0, 1), next_obs=roll["next_obs"].flatten(0, 1),
                        terminated=roll["terminated"].flatten(0, 1).float())
        return roll["rewards"].numel()

    def squashed_sample(self, x: Tensor, policy: nn.Module) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """A reparametrised ã = tanh(u), u = μ + σ ε, with u, log π(ã|s) (tanh Jacobian included), μ, log σ."""
        mean, log_std = policy(x)
        eps = torch.randn(mean.shape, generator=self.generator, device=self.generator.device).to(mean.device)
        u = mean + log_std.exp() * eps
        return torch.tanh(u), u, tanh_gaussian_log_prob(u, mean, log_std), mean, log_std

    # -- the three updates --------------------------------------------------------------------

    def critic_update(self, b: dict[str, Tensor], x: Tensor, x_next: Tensor, lam: Tensor) -> Tensor:
        """One step of the twin critics toward the soft Bellman target of the current policy."""
        with torch.no_grad():
            a_next, _, logp_next, _, _ = self.squashed_sample(x_next, self.policy)
            y = soft_q_target(b["rewards"], b["terminated"], self.q1_target(x_next, a_next),
                              self.q2_target(x_next, a_next), logp_next, self.hparams.gamma, lam)
        loss = twin_q_loss(self.q1(x, b["actions"]), self.q2(x, b["actions"]), y)
        self.descend(loss, [self.raw_optimizers()[1]])
        return loss.detach()

    def actor_update(self, x: Tensor, t_k: float, lam: Tensor) -> dict[str, Tensor]:
        """One step of the actor on the MD objective: λ log π_θk(ã|s) − Q1(s, ã) + KL(π_θ ‖ π_θk)/t_k."""
        a, u, logp, mean, log_std = self.squashed_sample(x, self.policy)
        with torch.no_grad():
            old_mean, old_log_std = self.policy_old(x)
        old_logp = tanh_gaussian_log_prob(u, old_mean, old_log_std)  # π_θk's density at the new action ã(θ)
        kl = gaussian_kl(mean, log_std, old_mean, old_log_std)
        loss = (mdpo_off_policy_actor_loss(self.q1(x, a), old_logp, kl, t_k, lam)
                + policy_regularization(mean, log_std, self.hparams.policy_reg))
        self.descend(loss, [self.raw_optimizers()[0]])
        return {"actor_loss": loss.detach(), "kl": kl.mean().detach(), "log_prob": logp.detach()}

    def temperature_update(self, log_prob: Tensor) -> None:
        """One step of log λ toward the target entropy H̄ (``autotune_alpha``)."""
        self.descend(temperature_loss(self.log_alpha, log_prob, self.target_entropy), [self.raw_optimizers()[2]])

    @torch.no_grad()
    def update_targets(self) -> None:
        for net, target in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
            torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), self.hparams.tau)

    # -- one iteration ------------------------------------------------------------------------

    def step_size_at(self, k: int, new_steps: int) -> float:
        hp = self.hparams
        if hp.step_size_schedule == "constant":
            return hp.step_size
        K = max(1, math.ceil(self.schedule_steps() * new_steps / hp.env_steps_per_refresh))
        return hp.step_size * step_size(min(k, K - 1), K)

    def iteration(self) -> dict[str, Tensor]:
        hp = self.hparams
        new_steps = self.collect()
        self.env_steps += new_steps
        k = int(self.env_steps) // hp.env_steps_per_refresh  # π_θk is the policy at the last multiple of m
        if k > int(self.n_refreshes):
            self.policy_old.load_state_dict(self.policy.state_dict())
            self.n_refreshes.fill_(k)
        t_k = self.step_size_at(k, new_steps)
        if hp.lr_anneal:
            self.anneal_lr(int(self.global_step), self.schedule_steps())
        learning = int(self.env_steps) >= hp.learning_starts
        n_updates = (new_steps if hp.gradient_steps < 0 else hp.gradient_steps) if learning else 0
        stats: dict[str, list[Tensor]] = {"actor_loss": [], "critic_loss": [], "kl": [], "alpha": [], "entropy": []}
        for _ in range(n_updates):
            b = {key: v.to(self.device) for key, v in self.buffer.sample(hp.batch_size, self.generator).items()}
            x, x_next = self.features(b["obs"]), self.features(b["next_obs"])
            lam = self.log_alpha.detach().exp()
            critic_loss = self.critic_update(b, x, x_next, lam)
            actor = self.actor_update(x, t_k, lam)
            if hp.autotune_alpha:
                self.temperature_update(actor["log_prob"])
            self.update_targets()
            for name, v in zip(stats, (actor["actor_loss"], critic_loss, actor["kl"], lam, -actor["log_prob"].mean())):
                stats[name].append(v)
        out = {name: torch.stack(v).mean() for name, v in stats.items() if v}
        return {**out, "t_k": torch.tensor(float(t_k))}

    # -- Lightning plumbing -------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.hparams.get("init_from"):  # a fine-tune refreshes π_θk on its own count
            self.n_refreshes.zero_()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["mdpo_replay"] = self.buffer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "mdpo_replay" in checkpoint:
            self.buffer.load_state_dict(checkpoint["mdpo_replay"])
