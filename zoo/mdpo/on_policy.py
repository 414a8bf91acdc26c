r"""On-policy MDPO (Tomar et al., ICLR 2022, Section 4.1).

Iteration k: a rollout of n_steps × n_envs environment steps from π_θk, advantages A by GAE(γ, λ),
then m gradient steps on

    L(θ) = −E_{s,a∼π_θk}[ π_θ(a|s)/π_θk(a|s) · A(s, a) ] + (1/t_k) E_s[ KL(π_θ(·|s) ‖ π_θk(·|s)) ],
    t_k = 1 − k/K  (``step_size_schedule: linear``; the KL weight 1/t_k grows from 1 to K),

and a regression of the value function V(s) onto the GAE returns. Two update schedules:

    full_batch   the paper's and the official code's (mdpo_on/mdpo.py L427-447): m = sgd_epochs Adam
                 steps of the policy alone on the whole rollout (advantages standardised over it),
                 then value_epochs passes of value_minibatch_size minibatches for V, with its own Adam
    minibatch    PPO's: sgd_epochs passes of minibatch_size minibatches, each one Adam step of the
                 policy and V together on L(θ) + vf_coef (V(s) − R̂)²
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import UserError
from zoo.mdpo.module import MDPO
from zoo.mdpo import nets
from zoo.mdpo.objective import (
    categorical_entropy,
    categorical_kl,
    categorical_log_prob,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
    mdpo_on_policy_loss,
    step_size,
)
from zoo.rl import RunningNorm, collect_rollout, gae


class OnPolicyMDPO(MDPO):
    """On-policy MDPO: rollouts, GAE, and m gradient steps per iteration on the MD trust-region objective."""

    def __init__(
        self,
        env: str = "CartPole-v1",
        env_kwargs: dict | None = None,
        n_envs: int = 1,
        n_steps: int = 2048,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: Literal["tanh", "relu"] = "tanh",
        orthogonal_init: bool = True,
        normalize_obs: bool = True,
        normalize_reward: bool = False,
        value_clip: float = 0.0,
        update_schedule: Literal["full_batch", "minibatch"] = "full_batch",
        sgd_epochs: int = 10,
        minibatch_size: int = 64,
        vf_coef: float = 0.5,
        value_epochs: int = 5,
        value_minibatch_size: int = 128,
        lr: float = 3e-4,
        value_lr: float | None = None,
        lr_anneal: bool = False,
        step_size_schedule: Literal["linear", "constant"] = "linear",
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        max_grad_norm: float = 0.5,
        log_std_init: float = 0.0,
        n_eval_episodes: int = 10,
        eval_seed: int = 1_000_000,
        steps_per_epoch: int = 10,
        schedule_steps: int | None = None,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            env: a gymnasium id (CartPole-v1, Acrobot-v1, Pendulum-v1, Hopper-v5, …) or ``package.module:callable``
                returning a gymnasium.Env with a Box observation space and Discrete or bounded Box actions.
            env_kwargs: keyword arguments for ``gymnasium.make`` or the entry point, taken as data ("11" stays a string).
            n_envs: environments stepped side by side in each process.
            n_steps: environment steps per environment in one iteration (one training step).
            gamma: discount factor γ.
            gae_lambda: λ of generalised advantage estimation.
            hidden_sizes: hidden layer widths of the policy and of the value function.
            activation: ``tanh`` or ``relu`` between the hidden layers.
            orthogonal_init: orthogonal weights (gain √2; 0.01 for the policy's head, 1 for the value's), as
                the official code's networks; false: PyTorch's default initialisation.
            normalize_obs: normalise observations with running mean and variance (kept in the weights).
            normalize_reward: divide each reward by the running standard deviation of the discounted return
                (clipped to ±10), as the official code's ``VecNormalize``: V learns the scaled returns.
            value_clip: > 0: the clipped value loss of the official code (PPO's), max((V − R)²,
                (V_k + clip(V − V_k, ±value_clip) − R)²) with V_k the rollout's prediction; 0: plain squared error.
            update_schedule: ``full_batch`` (the paper's: m = sgd_epochs Adam steps of the policy on the whole rollout,
                then the value function with its own Adam) or ``minibatch`` (PPO's: sgd_epochs epochs of
                minibatch_size minibatches, policy and value function in one loss).
            sgd_epochs: m, the policy's passes over each rollout (full_batch: gradient steps).
            minibatch_size: transitions per minibatch (``update_schedule: minibatch``).
            vf_coef: weight of the value loss in the joint loss (``update_schedule: minibatch``).
            value_epochs: passes of the value function over each rollout (``update_schedule: full_batch``).
            value_minibatch_size: transitions per value-function minibatch (``update_schedule: full_batch``).
            lr: Adam learning rate of the policy (and of the value function unless value_lr is given).
            value_lr: Adam learning rate of the value function; lr when not given.
            lr_anneal: decay the learning rates linearly to 0 over the run.
            step_size_schedule: ``linear`` is the paper's t_k = 1 − k/K; ``constant`` keeps t_k = 1.
            normalize_advantage: standardise the advantages (over the rollout; per minibatch with ``minibatch``).
            ent_coef: weight of an entropy bonus (0 in the paper).
            max_grad_norm: clip the norm of the policy's gradient (with ``minibatch``: of the joint one); ≤ 0: off.
            log_std_init: initial log σ of the Gaussian policy (Box actions).
            n_eval_episodes: episodes of the greedy policy per evaluation (validation).
            eval_seed: seed of the first evaluation episode; the others follow it.
            steps_per_epoch: iterations between two evaluations.
            schedule_steps: K, the iterations (training steps) over which t_k = 1 − k/K and the learning rates
                anneal; the trainer's max_steps when not given (a resumed run keeps the K it started with).
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__(env, env_kwargs, n_envs, n_steps, hidden_sizes, activation, normalize_obs,
                         state_dependent_std=False, log_std_init=log_std_init, n_eval_episodes=n_eval_episodes,
                         steps_per_epoch=steps_per_epoch)
        self.save_hyperparameters()
        for name, value in (("sgd_epochs", sgd_epochs), ("minibatch_size", minibatch_size),
                            ("value_epochs", value_epochs), ("value_minibatch_size", value_minibatch_size)):
            if value < 1:
                raise UserError(f"--model.{name} must be ≥ 1, got {value}")
        if not 0 < gamma <= 1 or not 0 <= gae_lambda <= 1:
            raise UserError(f"--model.gamma must lie in (0, 1] and gae_lambda in [0, 1]; got {gamma}, {gae_lambda}")
        self.value = nets.mlp(self.obs_dim, list(hidden_sizes), 1, activation)
        # the reward scaling's state: the discounted return G of each environment and its running statistics
        # (VecNormalize's, count starting at 10⁻⁴); in a dict, so kept in checkpoints beside the weights, not in them
        self.reward_norm = {"G": torch.zeros(n_envs, dtype=torch.float64), "stats": RunningNorm(())}
        self.reward_norm["stats"].count.fill_(1e-4)
        if orthogonal_init:
            nets.orthogonal_init(self.policy.net, out_gain=0.01)
            nets.orthogonal_init(self.value, out_gain=1.0)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        policy = torch.optim.Adam(self.policy.parameters(), lr=hp.lr, eps=1e-5, foreach=True)
        value = torch.optim.Adam(self.value.parameters(), lr=hp.value_lr or hp.lr, eps=1e-5, foreach=True)
        return [self.with_initial_lr(policy), self.with_initial_lr(value)]

    # -- the rollout --------------------------------------------------------------------------

    def _act(self, obs: Tensor) -> tuple[Any, dict[str, Tensor]]:
        x = self.features(obs)
        a, raw, logp, params = self.sample_action(x, self.generator)
        return self.to_env_action(a), {"x": x, "actions": raw, "log_prob": logp, "old_params": params}

    @torch.no_grad()
    def rollout(self) -> dict[str, Tensor]:
        """A rollout of π_θk, flattened to [T·N, ...], with its GAE advantages and value targets."""
        hp = self.hparams
        roll = collect_rollout(self.env_pool(), self._act, hp.n_steps, self.generator, self.device)
        T, N = roll["rewards"].shape
        ended = roll["terminated"] | roll["truncated"]
        rewards = self.scale_rewards(roll["rewards"], ended) if hp.normalize_reward else roll["rewards"]
        values = self.value(roll["x"].flatten(0, 1)).float().view(T, N)
        next_values = self.value(self.features(roll["next_obs"].flatten(0, 1))).float().view(T, N)
        adv, returns = gae(rewards, values, next_values, roll["terminated"], ended, hp.gamma, hp.gae_lambda)
        self.update_obs_norm(roll["obs"].flatten(0, 1))
        return {"x": roll["x"].flatten(0, 1), "actions": roll["actions"].flatten(0, 1),
                "log_prob": roll["log_prob"].flatten(0, 1), "old_params": roll["old_params"].flatten(0, 1),
                "adv": adv.flatten(), "returns": returns.flatten(), "old_values": values.flatten()}

    def scale_rewards(self, rewards: Tensor, ended: Tensor) -> Tensor:
        """r_t / √(Var[G] + 10⁻⁸), clipped to ±10, step by step as ``VecNormalize`` does it while stepping:
        G ← γ G + r_t per environment, Var[G] updated with the environments' G, then G ← 0 where an episode
        ended. The actions never see the scaled rewards, so scaling after the rollout is the same."""
        G, stats = self.reward_norm["G"], self.reward_norm["stats"]
        r, done = rewards.detach().double().cpu(), ended.cpu()
        out = torch.empty_like(r)
        for t in range(r.shape[0]):
            G.mul_(self.hparams.gamma).add_(r[t])
            stats.update(G)
            out[t] = (r[t] / torch.sqrt(stats.var + 1e-8)).clamp(-10.0, 10.0)
            G.masked_fill_(done[t], 0.0)
        return out.to(rewards.device, rewards.dtype)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.hparams.normalize_reward:
            checkpoint["mdpo_reward_norm"] = {"G": self.reward_norm["G"].clone(), **self.reward_norm["stats"].state_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "mdpo_reward_norm" in checkpoint:
            state = dict(checkpoint["mdpo_reward_norm"])
            self.reward_norm["G"] = state.pop("G").clone()
            self.reward_norm["stats"].load_state_dict(state)

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

    # -- the updates --------------------------------------------------------------------------

    def policy_loss(self, batch: dict[str, Tensor], i: Tensor | slice, adv: Tensor, t_k: float) -> tuple[Tensor, ...]:
        """The MD objective (plus the entropy bonus) on the transitions ``i``; (loss, KL, entropy)."""
        logp, kl, entropy = self.log_prob_kl_entropy(batch["x"][i], batch["actions"][i], batch["old_params"][i])
        loss = mdpo_on_policy_loss(logp, batch["log_prob"][i], adv, kl, t_k) - self.hparams.ent_coef * entropy.mean()
        return loss, kl.mean(), entropy.mean()

    def value_loss(self, batch: dict[str, Tensor], i: Tensor | slice) -> Tensor:
        v, target = self.value(batch["x"][i]).float().squeeze(-1), batch["returns"][i]
        c = self.hparams.value_clip
        if c <= 0:
            return F.mse_loss(v, target)
        old = batch["old_values"][i]
        clipped = old + (v - old).clamp(-c, c)
        return torch.maximum((v - target).pow(2), (clipped - target).pow(2)).mean()

    def minibatches(self, n: int, size: int) -> list[Tensor]:
        perm = torch.randperm(n, generator=self.generator, device=self.generator.device).to(self.device)
        size = min(size, n)
        return [perm[start:start + size] for start in range(0, n - size + 1, size)]

    def full_batch_update(self, batch: dict[str, Tensor], t_k: float) -> dict[str, Tensor]:
        """m Adam steps of the policy on the whole rollout, then value_epochs passes for V (the paper's)."""
        hp = self.hparams
        policy_opt, value_opt = self.raw_optimizers()
        adv = batch["adv"]
        if hp.normalize_advantage and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        stats: dict[str, list[Tensor]] = {"policy_loss": [], "kl": [], "entropy": [], "value_loss": []}
        for _ in range(hp.sgd_epochs):
            loss, kl, entropy = self.policy_loss(batch, slice(None), adv, t_k)
            self.descend(loss, [policy_opt], hp.max_grad_norm)
            for name, v in zip(("policy_loss", "kl", "entropy"), (loss, kl, entropy)):
                stats[name].append(v.detach())
        for _ in range(hp.value_epochs):
            for i in self.minibatches(len(adv), hp.value_minibatch_size):
                loss = self.value_loss(batch, i)
                self.descend(loss, [value_opt])
                stats["value_loss"].append(loss.detach())
        return {k: torch.stack(v).mean() for k, v in stats.items()}

    def minibatch_update(self, batch: dict[str, Tensor], t_k: float) -> dict[str, Tensor]:
        """sgd_epochs passes of minibatches, each one step of policy and V on the joint loss (PPO's)."""
        hp = self.hparams
        stats: dict[str, list[Tensor]] = {"policy_loss": [], "kl": [], "entropy": [], "value_loss": []}
        for _ in range(hp.sgd_epochs):
            for i in self.minibatches(len(batch["adv"]), hp.minibatch_size):
                adv = batch["adv"][i]
                if hp.normalize_advantage and len(adv) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                policy_loss, kl, entropy = self.policy_loss(batch, i, adv, t_k)
                value_loss = self.value_loss(batch, i)
                self.descend(policy_loss + hp.vf_coef * value_loss, self.raw_optimizers(), hp.max_grad_norm)
                for name, v in zip(stats, (policy_loss, kl, entropy, value_loss)):
                    stats[name].append(v.detach())
        return {k: torch.stack(v).mean() for k, v in stats.items()}

    def iteration(self) -> dict[str, Tensor]:
        hp = self.hparams
        batch = self.rollout()
        k, K = int(self.global_step), self.schedule_steps()
        t_k = step_size(min(k, K - 1), K) if hp.step_size_schedule == "linear" else 1.0
        if hp.lr_anneal:
            self.anneal_lr(k, K)
        update = self.full_batch_update if hp.update_schedule == "full_batch" else self.minibatch_update
        stats = update(batch, t_k)
        self.env_steps += len(batch["adv"])
        return {**stats, "t_k": torch.tensor(float(t_k))}
