r"""Go-Explore (Ecoffet, Huizinga, Lehman, Stanley & Clune, Nature 2021): remember, return, explore; then robustify.

    training steps 0 … phase1_steps − 1    phase 1: each step selects cells (P ∝ W(c)), returns to each
                                           by restoring its state and explores up to ``explore_steps``
                                           repeated random actions, until it has spent ``frames_per_step``
                                           environment steps; then it merges what it found into the
                                           archive (new cells; better trajectories)
    the remaining steps                    phase 2: the backward algorithm on the best trajectory, one
                                           iteration of the zoo's on-policy learner (MDPO's on-policy
                                           update) per step, under sticky actions and no-op starts

MDPO's on-policy update, per iteration k of K:  min_θ −E[π_θ/π_θk · A] + (1/t_k) E[KL(π_θ ‖ π_θk)],
t_k = 1 − k/K, with GAE advantages (zoo/mdpo/objective.py, zoo/rl.py), plus (``sil_coef`` > 0) the
official robustification's self-imitation of the demonstration, c_SIL (L_π + c_V L_V). The equations of
Go-Explore are in zoo/go_explore/objective.py; the archive and one exploration in archive.py; the environments and their
save/restore protocol in data.py; the backward algorithm's episodes in robustify.py.

Every process explores its own cells (from its own random stream) and the exploration records of all
processes are merged in the same order on every process (through the strategy's broadcast), so the
archives stay identical; in phase 2 Lightning averages the gradients and the start point moves on the
successes summed over processes. The archive, the adaptive downscaling, the best trajectory, the
phase-2 episodes and the random streams are all in the checkpoint, so ``fit --ckpt_path last`` resumes
exactly.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import CheckpointError, UserError
from zoo.go_explore.archive import Archive, CellFunction, Downscaling, explore
from zoo.go_explore.data import Game, make_game
from zoo.go_explore.nets import actor_critic
from zoo.go_explore.objective import (draw_cell, move_start, search_downscale, selection_probabilities,
                                      self_imitation_loss)
from zoo.go_explore.robustify import BackwardRunner, Demo, SelfImitation, shorten
from zoo.mdpo.objective import categorical_entropy, categorical_kl, categorical_log_prob, mdpo_on_policy_loss, step_size
from zoo.module import Steps, ZooModule
from zoo.rl import gae

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*manual optimization and every_n_train_steps.*")

TRAJECTORY = "trajectory.safetensors"


class GoExplore(ZooModule):
    curve_metrics = ("train/best_score", "train/cells", "val/success", "train/start")
    code_hparams = ("env",)
    scales_fp16_gradients = False  # phase 2 steps Adam by hand, several times per training step

    def __init__(
        self,
        env: str = "MiniGrid-MultiRoom-N4-S5-v1",
        env_kwargs: dict | None = None,
        env_seed: int = 0,
        cell: Literal["domain", "downscaled"] = "domain",
        frames_per_step: int = 1600,
        explore_steps: int = 100,
        mean_repeat: float = 1.0,
        seen_weight: float = 1.0,
        seen_power: float = 0.5,
        chosen_weight: float = 0.0,
        chosen_power: float = 0.5,
        chosen_since_new_weight: float = 0.0,
        chosen_since_new_power: float = 0.5,
        horiz_weight: float = 0.0,
        vert_weight: float = 0.0,
        high_score_weight: float = 0.0,
        low_level_weight: float = 1.0,
        reset_cell_on_update: bool = True,
        split_factor: float = 0.125,
        split_iterations: int = 300,
        first_recompute: int = 10_000,
        recompute_every: int = 1_000_000,
        recent_frames: int = 2000,
        recent_frame_prob: float = 0.01,
        max_cells: int = 50_000,
        phase1_steps: int = 100,
        sticky: float = 0.25,
        noop_max: int = 30,
        end_on_life_loss: bool = False,
        frac_sample: float = 0.2,
        from_reset_prob: float = 0.1,
        move_threshold: float = 0.2,
        start_window: int = 10,
        min_episodes: int = 16,
        allowed_lag: int = 50,
        allowed_score_deficit: float = 0.0,
        success_score: float | None = None,
        shorten_demo: bool = False,
        sil_coef: float = 0.1,
        sil_vf_coef: float = 0.01,
        sil_envs: int = 2,
        sil_from_start_prob: float = 0.3,
        sil_before_max: int = 10,
        n_envs: int = 16,
        n_steps: int = 128,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        hidden_sizes: Sequence[int] = (64, 64),
        lr: float = 3e-4,
        sgd_epochs: int = 4,
        minibatch_size: int = 256,
        normalize_advantage: bool = True,
        vf_coef: float = 0.5,
        ent_coef: float = 0.01,
        max_grad_norm: float = 0.5,
        reward_clip: bool = False,
        n_eval_episodes: int = 20,
        eval_seed: int = 1_000_000,
        eval_max_steps: int = 4500,
        write_media: bool = True,
        steps_per_epoch: int = 10,
        schedule_steps: int | None = None,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            env: ``MiniGrid-…`` ids (domain cells: position, carried object, doors), ``ALE/…-v5`` Atari ids
                (domain cells for MontezumaRevenge and Pitfall from RAM), or any gymnasium id or
                ``package.module:callable`` whose env has get_state()/set_state() (docs/go_explore.md).
            env_kwargs: keyword arguments for ``gymnasium.make`` or the entry point, taken as data ("11" stays a string).
            env_seed: the reset seed: the MiniGrid layout, the state every trajectory starts from.
            cell: ``domain`` (the game's domain-knowledge cell) or ``downscaled`` (grey frames downscaled with
                parameters the archive adapts, the domain-agnostic representation).
            frames_per_step: environment steps each process spends exploring in one training step: it
                returns to cells drawn (with replacement) from the weights at the step's start and explores
                from each, until it has spent them (a batch of explorations; the last may overrun).
            explore_steps: random actions per exploration (fewer where the episode ends).
            mean_repeat: mean number of steps a random action is repeated (geometric); 1 is uniform play.
            seen_weight: weight w of the times-seen term w / (C + 1)^p of a cell's selection weight.
            seen_power: its power p.
            chosen_weight: weight of the times-chosen term.
            chosen_power: its power.
            chosen_since_new_weight: weight of the chosen-since-it-led-to-a-new-cell term.
            chosen_since_new_power: its power.
            horiz_weight: weight per missing horizontal neighbour (domain cells with x, y).
            vert_weight: weight per missing vertical neighbour (domain cells with x, y).
            high_score_weight: weight of a cell that no cell at the same place beats in keys held.
            low_level_weight: λ, the factor per level a cell lies below the highest level reached.
            reset_cell_on_update: restart a cell's counts when its trajectory improves.
            split_factor: downscaled cells: the target number of cells as a fraction of the recent frames.
            split_iterations: downscaled cells: random-search proposals per choice of parameters.
            first_recompute: downscaled cells: environment steps before the first choice of parameters.
            recompute_every: downscaled cells: environment steps between two choices.
            recent_frames: downscaled cells: most recent distinct frames kept for the choice.
            recent_frame_prob: downscaled cells: probability that a step's frame joins them.
            max_cells: downscaled cells: choose new parameters early when the archive grows past this.
            phase1_steps: training steps of exploration; the rest of the run robustifies (phase 2).
            sticky: phase 2 and evaluation: probability that the previous action repeats (ALE v5's 0.25).
            noop_max: phase 2 and evaluation: episodes from reset begin with up to this many no-ops.
            end_on_life_loss: phase 2: a lost life ends the episode (phase 1 always ends there).
            frac_sample: phase 2: fraction of episodes starting anywhere between the start point and the end.
            from_reset_prob: phase 2: fraction of episodes starting from reset (with no-ops).
            move_threshold: phase 2: τ, the success accumulated over the window (× W) that moves the start.
            start_window: phase 2: W, the demonstration points episodes start from, from the start point on
                (the official workers' spread); the start moves back by up to W − 1 points at a time.
            min_episodes: phase 2: episodes from the window before its success rates are judged.
            allowed_lag: phase 2: steps an episode may lag the demonstration's score before it is ended.
            allowed_score_deficit: phase 2: score below the demonstration's that still counts as success.
            success_score: phase 2: a fixed score that counts as success (instead of the demonstration's).
            shorten_demo: phase 2: robustify the best trajectory with its loops erased (steps that come back
                to a state already passed, clock aside, with the same score), where the game's place()
                tells; the zoo's addition, off by default (docs/go_explore.md measures it): the trajectory
                as phase 1 found it, as the official code robustifies it.
            sil_coef: phase 2: weight of self-imitation of the demonstration (``self_imitation_loss``), the
                official robustification's 0.1; 0: none.
            sil_vf_coef: phase 2: weight of its value term (the official Atari 0.01).
            sil_envs: phase 2: replays of the demonstration per process, beside the n_envs games.
            sil_from_start_prob: phase 2: fraction of the replayed steps that start at the demonstration's
                beginning (the official Atari 0.3).
            sil_before_max: phase 2: a replay starts up to this many points before the start point.
            n_envs: phase 2: environments per process.
            n_steps: phase 2: steps per environment in one iteration.
            gamma: phase 2: discount factor.
            gae_lambda: phase 2: λ of generalised advantage estimation.
            hidden_sizes: phase 2: hidden widths of the MLP policy and value networks (vector observations).
            lr: phase 2: Adam learning rate.
            sgd_epochs: phase 2: passes of minibatch SGD over each rollout (m of MDPO).
            minibatch_size: phase 2: transitions per minibatch.
            normalize_advantage: phase 2: standardise the advantages in each minibatch.
            vf_coef: phase 2: weight of the value loss.
            ent_coef: phase 2: weight of the entropy bonus.
            max_grad_norm: phase 2: gradient-norm clip (≤ 0: none).
            reward_clip: phase 2: learn from sign(reward) (Atari).
            n_eval_episodes: evaluation episodes from reset (sticky actions, no-ops) per validation.
            eval_seed: seed of the first evaluation episode; the others follow it.
            eval_max_steps: evaluation episodes end after this many steps.
            write_media: write progress.png and best_trajectory.gif into the log folder (and releases).
            steps_per_epoch: training steps between two validations.
            schedule_steps: K of MDPO's t_k = 1 − k/K counts the run's steps from here (phase 2's
                iterations are K − phase1_steps); the trainer's max_steps when not given.
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__()
        self.save_hyperparameters()
        for name in ("frames_per_step", "explore_steps", "split_iterations", "recent_frames", "n_envs", "n_steps",
                     "sgd_epochs", "minibatch_size", "min_episodes", "start_window", "n_eval_episodes", "steps_per_epoch",
                     "eval_max_steps", "max_cells"):
            if getattr(self.hparams, name) < 1:
                raise UserError(f"--model.{name} must be ≥ 1, got {getattr(self.hparams, name)}")
        if sil_coef < 0 or sil_vf_coef < 0 or sil_envs < 0 or sil_before_max < 0:
            raise UserError("--model.sil_coef, sil_vf_coef, sil_envs and sil_before_max must be ≥ 0; got "
                            f"{sil_coef}, {sil_vf_coef}, {sil_envs}, {sil_before_max}")
        for name in ("sticky", "frac_sample", "from_reset_prob", "move_threshold", "recent_frame_prob",
                     "low_level_weight", "sil_from_start_prob"):
            if not 0 <= getattr(self.hparams, name) <= 1:
                raise UserError(f"--model.{name} must lie in [0, 1], got {getattr(self.hparams, name)}")
        if mean_repeat < 1:
            raise UserError(f"--model.mean_repeat is a mean number of steps, ≥ 1; got {mean_repeat}")
        if not 0 < gamma <= 1 or not 0 <= gae_lambda <= 1 or split_factor <= 0 or phase1_steps < 0 or noop_max < 0:
            raise UserError("--model.gamma must lie in (0, 1], gae_lambda in [0, 1], split_factor > 0, phase1_steps "
                            f"and noop_max ≥ 0; got {gamma}, {gae_lambda}, {split_factor}, {phase1_steps}, {noop_max}")
        self.game = self.make_game()
        if self.game.n_actions > 255:
            raise UserError(f"--model.env {env}: {self.game.n_actions} actions; trajectories are stored as bytes (≤ 255)")
        if cell == "domain":
            self.game.cell()  # fails clearly where the game has no domain cell
        self.obs_shape = (self.game.frame_stack, *self.game.observation().shape)
        self.net = actor_critic(self.obs_shape, self.game.n_actions, list(hidden_sizes))
        self.register_buffer("best_score", torch.zeros((), dtype=torch.float64))
        self.register_buffer("phase2_iterations", torch.zeros((), dtype=torch.long))
        self.example_input_array = torch.linspace(0, 10, int(np.prod(self.obs_shape)) * 2).view(2, *self.obs_shape)
        self.automatic_optimization = False
        self.cell_of = CellFunction(cell)
        self.archive: Archive | None = None
        self.downscaling = Downscaling(recent_frames, first_recompute)
        self.frames = 0                   # environment steps of phase 1, all processes together
        self.robust_steps = 0             # environment steps of phase 2, all processes together
        self.reset_successes = 0          # phase-2 episodes from reset that succeeded (this process)
        self.best_training_return = 0.0   # the best phase-2 episode's score (this process)
        self.history: list[tuple[float, ...]] = []  # (step, frames, cells, best score) after each phase-1 step
        self.best_actions = np.zeros(0, np.uint8)
        self.demo: Demo | None = None
        self.runner: BackwardRunner | None = None
        self.imitation: SelfImitation | None = None
        self._pending_runner: dict[str, Any] | None = None

    # -- environments -------------------------------------------------------------------------

    def make_game(self, sticky: float = 0.0, end_on_life_loss: bool = True) -> Game:
        hp = self.hparams
        return make_game(hp.env, hp.env_kwargs, hp.env_seed, sticky=sticky, end_on_life_loss=end_on_life_loss)

    # -- acting -------------------------------------------------------------------------------

    def forward(self, obs: Tensor) -> Tensor:
        """The policy's logits for a batch of observation stacks [B, frame_stack, ...] (raw game values)."""
        return self.net(obs.float() * self.game.obs_scale)[0]

    @torch.no_grad()
    def act(self, obs: Any, greedy: bool = True, generator: torch.Generator | None = None) -> np.ndarray:
        """Actions for a batch of observation stacks: argmax of the logits, or sampled."""
        logits = self(torch.as_tensor(np.asarray(obs), device=self.device))
        if greedy:
            return logits.argmax(-1).cpu().numpy()
        return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1).cpu().numpy()

    # -- phase 1: remember, return, explore -------------------------------------------------------

    def start_archive(self) -> Archive:
        archive = Archive(self.game.cell_fields if self.hparams.cell == "domain" else ())
        self.game.reset()
        key, frame = self.cell_of(self.game)
        archive.add(key, 0.0, 0, self.game.get_state(), np.zeros(0, np.uint8), frame)
        if self.game.room() >= 0:
            archive.rooms.add(self.game.room())
        return archive

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process (the strategy's broadcast, once per rank)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return [obj]
        return [trainer.strategy.broadcast(obj, src=r) for r in range(trainer.world_size)]

    def explore_iteration(self) -> dict[str, float]:
        hp = self.hparams
        if self.archive is None:
            self.archive = self.start_archive()
        archive, g = self.archive, self.generator
        weights = archive.weights((hp.seen_weight, hp.seen_power), (hp.chosen_weight, hp.chosen_power),
                                  (hp.chosen_since_new_weight, hp.chosen_since_new_power), hp.horiz_weight,
                                  hp.vert_weight, hp.high_score_weight, hp.low_level_weight)
        cdf = selection_probabilities(weights).to(g.device).cumsum(0)
        frame_prob = hp.recent_frame_prob if hp.cell == "downscaled" else 0.0
        records, spent = [], 0
        while spent < hp.frames_per_step:
            start = draw_cell(cdf, g)
            seed = int(torch.randint(2**62, (1,), generator=g, device=g.device))
            records.append(explore(self.game, archive, start, np.random.default_rng(seed), self.cell_of,
                                   hp.explore_steps, hp.mean_repeat, frame_prob))
            spent += records[-1]["steps"]
        records = [r for rank in self.gather(records) for r in rank]
        n_new, n_better = archive.apply(records, hp.reset_cell_on_update)
        self.frames += sum(r["steps"] for r in records)
        if hp.cell == "downscaled":
            self.downscaling.add([f for r in records for f in r["frames"]])
            if self.frames >= self.downscaling.next_at or len(archive) > hp.max_cells:
                self.choose_downscaling()
        score, _, self.best_actions = archive.best()
        self.best_score.fill_(score)
        self.history.append((float(self.global_step), float(self.frames), float(len(archive)), score))
        return {"cells": len(archive), "best_score": score, "frames": self.frames, "new_cells": n_new,
                "better_cells": n_better, "rooms": len(archive.rooms), "best_length": len(self.best_actions)}

    def choose_downscaling(self) -> None:
        """New downscaling parameters from the recent frames (chosen on rank 0, broadcast), then the archive
        re-filed under them."""
        hp, ds = self.hparams, self.downscaling
        params = ds.params
        if ds.frames and self.global_rank == 0:
            seed = int(torch.randint(2**62, (1,), generator=self.generator, device=self.generator.device))
            params, _, _ = search_downscale(ds.sample(), hp.split_iterations, hp.split_factor, np.random.default_rng(seed))
        params = self.gather(params)[0]
        if params is not None:
            ds.params = self.cell_of.params = tuple(int(v) for v in params)
            self.archive.rekey(self.cell_of.of_frame, hp.reset_cell_on_update)
        ds.frames.clear()
        ds.next_at = self.frames + hp.recompute_every

    # -- phase 2: robustify ---------------------------------------------------------------------

    def robustifier(self) -> BackwardRunner:
        if self.runner is None:
            hp = self.hparams
            if self.demo is None:
                actions = shorten(self.game, self.best_actions) if hp.shorten_demo else self.best_actions
                self.demo = Demo(self.game, actions)
            games = [self.make_game(hp.sticky, hp.end_on_life_loss) for _ in range(hp.n_envs)]
            self.runner = BackwardRunner(games, self.demo, hp.start_window, hp.frac_sample, hp.from_reset_prob, hp.noop_max,
                                         hp.allowed_lag, hp.allowed_score_deficit, hp.success_score)
            if hp.sil_coef > 0 and hp.sil_envs > 0 and len(self.demo) > 0:
                self.imitation = SelfImitation(self.demo, hp.sil_envs, self.game.frame_stack, hp.start_window,
                                               hp.sil_before_max, hp.sil_from_start_prob, hp.gamma, hp.reward_clip)
            if self._pending_runner is not None:
                if self.global_rank == 0:  # rank 0's episodes and the window's counts; the others start afresh
                    self.runner.load_state_dict(self._pending_runner)
                    if self.imitation is not None and "imitation" in self._pending_runner:
                        self.imitation.load_state_dict(self._pending_runner["imitation"])
                else:
                    self.runner.start = int(self._pending_runner["start"])
                    if "point_success" in self._pending_runner:
                        self.runner.point_success = self._pending_runner["point_success"].numpy().copy()
                self._pending_runner = None
        return self.runner

    def _act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, Tensor]]:
        logits = self(torch.from_numpy(obs).to(self.device))
        a = torch.multinomial(logits.softmax(-1).to(self.generator.device), 1, generator=self.generator).squeeze(1)
        a = a.to(logits.device)
        return a.cpu().numpy(), {"actions": a, "log_prob": categorical_log_prob(logits, a), "logits": logits}

    def values(self, obs: Tensor) -> Tensor:
        return self.net(obs.to(self.device).float() * self.game.obs_scale)[1]

    def robustify_iteration(self) -> dict[str, float]:
        hp = self.hparams
        runner = self.robustifier()
        with torch.no_grad():
            roll = runner.rollout(self._act, hp.n_steps, self.generator)
            T, N = roll["rewards"].shape
            obs, next_obs = roll["obs"].flatten(0, 1), roll["next_obs"].flatten(0, 1)
            values, next_values = self.values(obs).view(T, N), self.values(next_obs).view(T, N)
            rewards = roll["rewards"].float().to(self.device)
            rewards = rewards.sign() if hp.reward_clip else rewards
            terminated, truncated = roll["terminated"].to(self.device), roll["truncated"].to(self.device)
            adv, returns = gae(rewards, values, next_values, terminated, terminated | truncated, hp.gamma, hp.gae_lambda)
            sil = None
            if self.imitation is not None:  # the demonstration's own steps, for self-imitation
                sil = {k: v.to(self.device) for k, v in
                       self.imitation.rollout(hp.n_steps, runner.start, runner.point_success, self.generator).items()}
                sil["old_value"] = self.values(sil["obs"])
        batch = {"obs": obs.to(self.device), "actions": roll["actions"].flatten(), "log_prob": roll["log_prob"].flatten(),
                 "logits": roll["logits"].flatten(0, 1), "adv": adv.flatten(), "returns": returns.flatten()}
        k = int(self.global_step) - hp.phase1_steps
        K = max(self.schedule_steps() - hp.phase1_steps, 1)
        t_k = step_size(min(k, K - 1), K)
        opt = self.optimizers()
        B = T * N
        mb = min(hp.minibatch_size, B)
        n_updates = hp.sgd_epochs * (B // mb)
        stats: dict[str, list[Tensor]] = {"policy_loss": [], "value_loss": [], "kl": [], "entropy": []}
        sil_losses: list[Tensor] = []
        if sil is not None:
            S, M = len(sil["actions"]), B // mb
            chunk = -(-S // M)  # each minibatch takes its share of the replayed steps
        for _ in range(hp.sgd_epochs):
            perm = torch.randperm(B, generator=self.generator, device=self.generator.device).to(self.device)
            if sil is not None:
                sil_perm = torch.randperm(S, generator=self.generator, device=self.generator.device).to(self.device)
            for s in range(0, B - mb + 1, mb):
                i = perm[s:s + mb]
                adv_i = batch["adv"][i]
                if hp.normalize_advantage and mb > 1:
                    adv_i = (adv_i - adv_i.mean()) / (adv_i.std() + 1e-8)
                logits, value = self.net(batch["obs"][i].float() * self.game.obs_scale)
                logp = categorical_log_prob(logits, batch["actions"][i])
                kl = categorical_kl(logits, batch["logits"][i])
                entropy = categorical_entropy(logits)
                policy_loss = mdpo_on_policy_loss(logp, batch["log_prob"][i], adv_i, kl, t_k)
                value_loss = F.mse_loss(value, batch["returns"][i])
                loss = policy_loss + hp.vf_coef * value_loss - hp.ent_coef * entropy.mean()
                j = sil_perm[(s // mb) * chunk:(s // mb + 1) * chunk] if sil is not None else []
                if len(j):
                    sil_logits, sil_value = self.net(sil["obs"][j].float() * self.game.obs_scale)
                    sil_policy, sil_value_loss = self_imitation_loss(
                        categorical_log_prob(sil_logits, sil["actions"][j]), sil_value, sil["old_value"][j],
                        sil["returns"][j], sil["weights"][j], mb + len(j))
                    loss = loss + hp.sil_coef * (sil_policy + hp.sil_vf_coef * sil_value_loss)
                    sil_losses.append(sil_policy.detach())
                self.sgd_step(opt, loss, last=len(stats["kl"]) == n_updates - 1)
                for name, v in zip(stats, (policy_loss, value_loss, kl.mean(), entropy.mean())):
                    stats[name].append(v.detach())
        world = self._trainer.world_size if self._trainer is not None else 1
        self.robust_steps += B * world
        self.phase2_iterations += 1
        # the backward step, on the episodes every process started in the window since the last judgement
        counts = torch.tensor(runner.counts, device=self.device)  # a copy: the strategy's reduce works in place
        if world > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        episodes, successes = counts.cpu().numpy()
        moved = move_start(runner.start, successes, episodes, hp.move_threshold, hp.min_episodes)
        if episodes.sum() >= hp.min_episodes:  # judged: the next judgement counts afresh
            runner.judge(moved, episodes, successes)
        elif world > 1:  # not yet: the sums so far are kept once, by rank 0 (whose runner the checkpoint holds)
            runner.counts = counts.cpu().numpy() if self.global_rank == 0 else np.zeros_like(runner.counts)
        out = {k: float(torch.stack(v).mean()) for k, v in stats.items()}
        if sil_losses:
            out["sil_policy_loss"] = float(torch.stack(sil_losses).mean())
        finished = runner.pop_finished()
        demo_starts = [f for f in finished if not f[2]]
        resets = [f for f in finished if f[2]]
        if demo_starts:
            out["success"] = float(np.mean([f[1] for f in demo_starts]))
        if resets:
            out["success_from_reset"] = float(np.mean([f[1] for f in resets]))
            self.reset_successes += int(sum(f[1] for f in resets))
        if finished:
            out["episode_return"] = float(np.mean([f[0] for f in finished]))
            self.best_training_return = max(self.best_training_return, max(f[0] for f in finished))
        return {**out, "t_k": t_k, "start": runner.start, "demo_length": len(runner.demo),
                "robustify_steps": self.robust_steps}

    def sgd_step(self, opt, loss: Tensor, last: bool) -> None:
        """One Adam step; only the iteration's last goes through Lightning's optimizer, so that the trainer's
        global step counts iterations (as MDPO does)."""
        opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.max_grad_norm > 0:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.max_grad_norm, gradient_clip_algorithm="norm")
        if last:
            opt.step()
        else:
            opt.optimizer.step()

    # -- Lightning's loop -------------------------------------------------------------------------

    def on_train_start(self) -> None:
        self.schedule_steps()  # K is fixed when the run starts (phase 1 included), so a resumed run keeps it

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self.global_step < self.hparams.phase1_steps:
            stats = self.explore_iteration()
            opt = self.optimizers()  # no gradient in phase 1: an empty step, so that a training step is a global step
            opt.zero_grad(set_to_none=True)
            opt.step()
        else:
            stats = self.robustify_iteration()
        if self.logging_step():
            self.log_dict({f"train/{k}": float(v) for k, v in stats.items()}, batch_size=1)

    def evaluate(self, n_episodes: int | None = None, seed: int | None = None,
                 greedy: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(returns, successes) of the policy from reset, with sticky actions and random no-ops, on fixed seeds.
        Actions are sampled from π, as in training (``greedy`` takes the argmax, which can loop for ever
        in a grid where one wrong turn repeats)."""
        hp = self.hparams
        n = n_episodes or hp.n_eval_episodes
        seed = hp.eval_seed + n * self.global_rank if seed is None else seed
        games = [self.make_game(hp.sticky, hp.end_on_life_loss) for _ in range(n)]
        rngs = [np.random.default_rng(seed + i) for i in range(n)]
        stacks = np.zeros((n, *self.obs_shape), np.asarray(games[0].observation()).dtype)
        returns, alive = np.zeros(n), np.ones(n, bool)
        for i, (game, rng) in enumerate(zip(games, rngs)):
            game.reset()
            for _ in range(int(rng.integers(hp.noop_max + 1))):
                _, term, trunc = game.step(game.noop_action)
                if term or trunc:
                    game.reset()
                    break
            stacks[i, -1] = game.observation()
        sampler = torch.Generator(device=self.device).manual_seed(seed)
        for _ in range(hp.eval_max_steps):
            actions = self.act(stacks, greedy=greedy, generator=sampler)
            for i in np.flatnonzero(alive):
                r, term, trunc = games[i].step(int(actions[i]), rngs[i].random(games[i].frameskip))
                returns[i] += r
                stacks[i, :-1] = stacks[i, 1:]
                stacks[i, -1] = games[i].observation()
                alive[i] = not (term or trunc)
            if not alive.any():
                break
        threshold = hp.success_score if hp.success_score is not None else float(self.best_score) - hp.allowed_score_deficit
        return returns, returns >= threshold

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        if int(self.phase2_iterations) == 0:  # nothing robustified yet: phase 1's metrics are logged in training
            return
        returns, successes = self.evaluate()
        n = len(returns)
        self.log("val/success", float(successes.mean()), prog_bar=True, sync_dist=True, batch_size=n)
        self.log("val/return", float(returns.mean()), sync_dist=True, batch_size=n)

    def release_metrics(self) -> dict[str, float]:
        out = {"best_score": float(self.best_score), "best_trajectory_steps": float(len(self.best_actions)),
               "explore_frames": float(self.frames), "robustify_steps": float(self.robust_steps)}
        if self.archive is not None:
            out.update(cells=float(len(self.archive)), rooms=float(len(self.archive.rooms)))
        reached = [h[1] for h in self.history if h[3] >= float(self.best_score)]
        if reached:
            out["frames_to_best_score"] = reached[0]
        if int(self.phase2_iterations) > 0:
            returns, successes = self.evaluate(n_episodes=20, seed=2_000_000)
            out.update({"eval/success_from_reset_20ep": float(successes.mean()),
                        "eval/return_mean_20ep": float(returns.mean())})
        return out

    # -- outputs people look at -------------------------------------------------------------------

    def replay(self) -> tuple[float, list[np.ndarray]]:
        """Play the best trajectory in the deterministic game: (its score, RGB frames at most 300 apart evenly)."""
        game = self.make_game()
        game.reset()
        stride = max(1, math.ceil(len(self.best_actions) / 300))
        frames, score = [game.render()], 0.0
        for t, a in enumerate(self.best_actions):
            score += game.step(int(a))[0]
            if (t + 1) % stride == 0 or t == len(self.best_actions) - 1:
                frames.append(game.render())
        return score, frames

    def write_media(self, directory: Path) -> None:
        """progress.png (cells found and best score against frames) and best_trajectory.gif."""
        from PIL import Image

        directory.mkdir(parents=True, exist_ok=True)
        _, frames = self.replay()
        images = [Image.fromarray(np.asarray(f)) for f in frames]
        images[0].save(directory / "best_trajectory.gif", save_all=True, append_images=images[1:], duration=100, loop=0)
        if self.history:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            h = np.array(self.history)
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.plot(h[:, 1], h[:, 2], color="tab:blue")
            ax.set_xlabel("environment steps (phase 1)")
            ax.set_ylabel("cells", color="tab:blue")
            ax2 = ax.twinx()
            ax2.plot(h[:, 1], h[:, 3], color="tab:red")
            ax2.set_ylabel("best score", color="tab:red")
            ax.set_title(f"Go-Explore phase 1: {self.hparams.env}")
            fig.tight_layout()
            fig.savefig(directory / "progress.png", dpi=100)
            plt.close(fig)

    def on_fit_end(self) -> None:
        trainer = self.trainer
        if self.hparams.write_media and trainer.is_global_zero and trainer.loggers:
            self.write_media(Path(trainer.loggers[0].log_dir))

    # -- Lightning plumbing -------------------------------------------------------------------

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr, eps=1e-5, foreach=True)

    def train_dataloader(self) -> Steps:
        """No data set: each training step makes its own experience."""
        return Steps(self.hparams.steps_per_epoch)

    def val_dataloader(self) -> Steps:
        return Steps(1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["go_explore"] = {
            "archive": self.archive.state_dict() if self.archive is not None else None,
            "downscaling": self.downscaling.state_dict(), "frames": self.frames, "robust_steps": self.robust_steps,
            "reset_successes": self.reset_successes, "best_training_return": self.best_training_return,
            "history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, 4),
            "demo_actions": torch.from_numpy(self.demo.actions.astype(np.uint8)) if self.demo is not None else None,
            "runner": self.runner_state(),
        }

    def runner_state(self) -> dict[str, Any] | None:
        """Phase 2's episodes and, with self-imitation, its replays of the demonstration."""
        if self.runner is None:
            return None
        state = self.runner.state_dict()
        if self.imitation is not None:
            state["imitation"] = self.imitation.state_dict()
        return state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("go_explore")
        if state is None:
            return
        where = str(self._trainer.ckpt_path) if self._trainer is not None and self._trainer.ckpt_path else "the checkpoint"
        for name in ("best_actions", "demo_actions"):  # best_actions: a checkpoint from before extra_state
            if state.get(name) is not None:
                self.check_trajectory(state[name], f"{where}: {name}")
        if state["archive"] is not None:
            self.archive = Archive()
            self.archive.load_state_dict(state["archive"], where, self.game.n_actions)
        self.downscaling.load_state_dict(state["downscaling"])
        self.cell_of.params = self.downscaling.params
        self.frames, self.robust_steps = int(state["frames"]), int(state["robust_steps"])
        self.reset_successes = int(state["reset_successes"])
        self.best_training_return = float(state["best_training_return"])
        self.history = [tuple(row) for row in state["history"].tolist()]
        if state.get("best_actions") is not None:
            self.best_actions = state["best_actions"].numpy().copy()
        self.demo = Demo(self.make_game(), state["demo_actions"].numpy()) if state["demo_actions"] is not None else None
        self.runner, self.imitation, self._pending_runner = None, None, state["runner"]

    # -- the model's state beyond its weights: the best trajectory -----------------------------------

    def extra_state(self) -> dict[str, Any]:
        """The best trajectory found (its actions, and its score): a release holds it as trajectory.safetensors."""
        return {**super().extra_state(), "trajectory": {"actions": torch.from_numpy(self.best_actions.astype(np.uint8)),
                                                        "score": self.best_score.detach().cpu().reshape(1)}}

    def load_extra_state(self, state: dict[str, Any], source: str) -> None:
        super().load_extra_state(state, source)
        trajectory = state.get("trajectory")
        if trajectory is None:
            return
        if not isinstance(trajectory, dict) or "actions" not in trajectory:
            raise CheckpointError(f"{source}: the trajectory holds no 'actions' tensor (it holds "
                                  f"{sorted(trajectory) if isinstance(trajectory, dict) else type(trajectory).__name__}); "
                                  "a Go-Explore trajectory holds the best trajectory's actions")
        self.best_actions = self.check_trajectory(trajectory["actions"], f"{source}: trajectory").numpy().astype(np.uint8)

    def save_release(self, directory: Path) -> None:
        super().save_release(directory)
        if self.hparams.write_media:
            self.write_media(Path(directory))

    def check_trajectory(self, actions: Tensor, where: str) -> Tensor:
        """A trajectory read from a file: a 1-D tensor of integer action ids below the game's action count."""
        if actions.dim() != 1 or actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
            raise CheckpointError(f"{where}: a trajectory is a 1-D tensor of integer action ids, got {actions.dtype} "
                                  f"of shape {tuple(actions.shape)}")
        if actions.numel() and not 0 <= int(actions.min()) <= int(actions.max()) < self.game.n_actions:
            bad = int(actions.max()) if int(actions.max()) >= self.game.n_actions else int(actions.min())
            raise CheckpointError(f"{where}: the trajectory holds the action id {bad}, but --model.env "
                                  f"{self.hparams.env} has {self.game.n_actions} actions (ids 0 to "
                                  f"{self.game.n_actions - 1})")
        return actions
