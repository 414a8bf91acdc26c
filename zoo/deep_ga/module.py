r"""Deep GA (Such et al., 2017): a genetic algorithm over the weights of a deep policy, with seed chains.

One training step is one generation (Algorithm 1): N − 1 offspring θ' = θ_k + σε(τ), each from a
parent k drawn uniformly from the top T of the last generation, are played for one episode each;
they are sorted by return F; the elite candidates (the top 9 and the previous elite) play
``elite_episodes`` more episodes and the best mean becomes the elite, carried unmutated. No
crossover. With ``novelty_search`` (GA-NS) the offspring are ranked by the novelty of their
behaviour against an archive and the population instead, and there is no elite.

Every individual is its seed chain (objective.py): weights are rebuilt from seeds wherever they are
needed. Under DDP each rank plays its share of the generation's episodes; rank 0 draws the
generation's seeds from ``self.generator`` and broadcasts them, and the ranks all-gather the
(seed, return, behaviour) of what they played: no weights cross ranks, every rank selects the same
individuals, and a run gives the same result on any number of processes. The population, the
archive and the random stream are in the checkpoint, so ``fit --ckpt_path last`` resumes exactly.
The module's weights are the elite's θ (GA-NS: the best-returning individual found), and its seed
chain; a release stores only the chain.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

import zoo.deep_ga.data  # noqa: F401  (registers zoo/HardMaze-v0)
from zoo.deep_ga.nets import MLP, AtariNet, FlatPolicy
from zoo.deep_ga.objective import elite_candidates, mutate, novelty, rank_by, select_elite, theta_from_chain
from zoo.deep_ga.rollouts import Evaluator
from zoo.errors import CheckpointError, UserError
from zoo.module import Steps, ZooModule
from zoo.rl import evaluate, make_env

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*manual optimization and every_n_train_steps.*")
warnings.filterwarnings("ignore", ".*configure_optimizers. returned .None.*")

SEED_BOUND = 2**31 - 1  # seeds fit int32, which a release stores
Chain = tuple[int, ...]


def check_chain(seeds: Sequence[int], sigma: float, where: str) -> None:
    """A seed chain read from a file (a release, a checkpoint): at least the initialisation seed, every seed
    one that Deep GA draws (0 ≤ τ < 2³¹ − 1), and σ finite and > 0; else an error naming ``where``."""
    if not math.isfinite(sigma) or sigma <= 0:
        raise CheckpointError(f"{where}: the seed chain's σ is {sigma:g}; the mutation power must be finite and > 0 "
                              "(the file is corrupted, or was not written by Deep GA)")
    if len(seeds) < 1:
        raise CheckpointError(f"{where}: an empty seed chain; a chain holds at least the initialisation seed")
    bad = next((s for s in seeds if not 0 <= s < SEED_BOUND), None)
    if bad is not None:
        raise CheckpointError(f"{where}: the seed chain holds the seed {bad}, outside [0, 2³¹ − 1) where Deep GA "
                              "draws its seeds (the file is corrupted, or was not written by Deep GA)")


class DeepGA(ZooModule):
    curve_metrics = ("val/return", "train/elite_return", "train/fitness_max", "train/fitness_mean")
    code_hparams = ("env",)
    scales_fp16_gradients = False  # no gradients at all

    def __init__(
        self,
        env: str = "LunarLander-v3",
        env_kwargs: dict | None = None,
        policy: Literal["auto", "mlp", "dqn", "dqn_large"] = "auto",
        hidden_sizes: Sequence[int] = (64, 64),
        activation: Literal["tanh", "relu"] = "tanh",
        population_size: int = 150,
        truncation: int = 20,
        sigma: float = 0.02,
        elite_candidates: int = 10,
        elite_episodes: int = 30,
        max_episode_steps: int | None = None,
        novelty_search: bool = False,
        novelty_k: int = 10,
        archive_probability: float = 0.01,
        n_envs: int = 16,
        max_env_steps: int | None = None,
        target_return: float | None = None,
        n_eval_episodes: int = 10,
        eval_seed: int = 1_000_000,
        steps_per_epoch: int = 10,
        chain_capacity: int = 2048,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            env: a gymnasium id (LunarLander-v3, ALE/Frostbite-v5, zoo/HardMaze-v0, Humanoid-v5, …) or
                ``package.module:callable`` returning a gymnasium.Env.
            env_kwargs: keyword arguments for ``gymnasium.make`` or the entry point, taken as data ("11" stays a string).
            policy: ``mlp`` for vector observations, ``dqn`` (Mnih et al. 2013, ~1 M weights) or
                ``dqn_large`` (2015, ~4 M) for Atari frames; ``auto`` picks mlp or dqn from the observations.
            hidden_sizes: hidden layer widths of the MLP.
            activation: nonlinearity between the MLP's layers.
            population_size: N, the individuals of a generation (N − 1 offspring and the elite).
            truncation: T, the top individuals that parent the next generation.
            sigma: σ, the mutation power: θ' = θ + σ ε.
            elite_candidates: how many top individuals (the previous elite among them) are re-evaluated
                to pick the elite; 0 turns elitism off.
            elite_episodes: episodes each elite candidate plays (30 in the paper).
            max_episode_steps: cut episodes at this many steps (the paper: 5000 on Atari); None: the env's own.
            novelty_search: GA-NS: rank by novelty of the behaviour instead of return.
            novelty_k: k, the nearest neighbours whose mean distance is the novelty.
            archive_probability: the chance that each offspring's behaviour enters the archive.
            n_envs: environments stepped side by side in each process.
            max_env_steps: stop once this many environment steps were played (all episodes counted).
            target_return: stop once the validation return reaches this value.
            n_eval_episodes: episodes of the current policy per validation.
            eval_seed: seed of the first validation episode; the others follow it.
            steps_per_epoch: generations between two validations.
            chain_capacity: the longest seed chain the weights file holds (generations + 1).
            init_from: start from a released checkpoint (id or path): the first generation mutates its elite.
        """
        super().__init__()
        self.save_hyperparameters()
        for name, value in (("population_size", population_size), ("truncation", truncation), ("n_envs", n_envs),
                            ("elite_episodes", elite_episodes), ("novelty_k", novelty_k),
                            ("n_eval_episodes", n_eval_episodes), ("steps_per_epoch", steps_per_epoch),
                            ("chain_capacity", chain_capacity)):
            if value < 1:
                raise UserError(f"--model.{name} must be ≥ 1, got {value}")
        if population_size < truncation:
            raise UserError(f"--model.population_size {population_size} is smaller than --model.truncation "
                            f"{truncation}: the top T parents must come from the population (N ≥ T)")
        if not sigma > 0 or not math.isfinite(sigma):
            raise UserError(f"--model.sigma must be > 0 (the mutation power), got {sigma}")
        if not 0 <= elite_candidates <= population_size:
            raise UserError(f"--model.elite_candidates must lie in [0, population_size = {population_size}], "
                            f"got {elite_candidates}")
        if not 0 <= archive_probability <= 1:
            raise UserError(f"--model.archive_probability must lie in [0, 1], got {archive_probability}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise UserError(f"--model.max_episode_steps must be ≥ 1 or null, got {max_episode_steps}")
        try:
            probe = self.make_env()
        except (ValueError, gym.error.Error) as e:  # a message that names its flag already is kept as it is
            raise UserError(str(e) if str(e).startswith("--model.") else f"--model.env {env}: {e}") from None
        obs_space, act_space = probe.observation_space, probe.action_space
        probe.close()
        if not isinstance(obs_space, gym.spaces.Box):
            raise UserError(f"--model.env {env}: the policies take Box observations, got {obs_space}")
        if not isinstance(act_space, (gym.spaces.Discrete, gym.spaces.Box)):
            raise UserError(f"--model.env {env}: Discrete or Box actions are supported, got {act_space}")
        self.obs_shape = tuple(obs_space.shape)
        n_out = int(act_space.n) if isinstance(act_space, gym.spaces.Discrete) else int(np.prod(act_space.shape))
        image = len(self.obs_shape) == 3
        kind = policy if policy != "auto" else ("dqn" if image else "mlp")
        if kind == "mlp":
            self.net: FlatPolicy = MLP(int(np.prod(self.obs_shape)), n_out, list(hidden_sizes), activation)
        elif image:
            self.net = AtariNet(self.obs_shape, n_out, kind)
        else:
            raise UserError(f"--model.policy {policy} is a network for [C, H, W] frames; --model.env {env} "
                            f"gives observations of shape {self.obs_shape}: use mlp")
        self.register_buffer("init_scale", self.net.init_scale(), persistent=False)
        # the state: the elite's weights and its seed chain (padded with −1), and the σ the chain was made with
        # a Parameter only so that DDP agrees to wrap the module: nothing ever computes its gradient
        self.theta = torch.nn.Parameter(theta_from_chain((0,), self.init_scale, sigma))
        self.register_buffer("elite_chain", torch.full((chain_capacity,), -1, dtype=torch.long))
        self.elite_chain[0] = 0
        self.register_buffer("elite_chain_length", torch.ones((), dtype=torch.long))
        self.register_buffer("chain_sigma", torch.tensor(float(sigma)))
        self.automatic_optimization = False
        self.reset_search()
        self.evaluator: Evaluator | None = None
        example = torch.linspace(0, 255 if image else 1, 2 * int(np.prod(self.obs_shape)))
        self.example_input_array = (example.round() if image else example - 0.5).view(2, *self.obs_shape)

    def reset_search(self) -> None:
        """The GA's state besides the weights: the ranked population, the archive, the counters."""
        self.population: list[Chain] = []  # best first; the first T parent the next generation
        self.scores: list[float] = []  # returns (GA) or novelties (GA-NS), aligned with the population
        self.has_elite = False
        self.archive = torch.zeros((0, 0), dtype=torch.float64)
        self.best_return = -math.inf
        self.env_steps = 0
        self.generation = 0
        self._cache: dict[Chain, Tensor] = {}

    # -- environments and weights -------------------------------------------------------------

    def make_env(self, **kwargs: Any) -> gym.Env:
        return make_env(self.hparams.env, **{**(self.hparams.env_kwargs or {}), **kwargs})

    def elite(self) -> Chain:
        return tuple(int(s) for s in self.elite_chain[: int(self.elite_chain_length)])

    def weights(self, chain: Chain) -> Tensor:
        """θ of a seed chain: from the cached parent and one mutation where it can, else from scratch."""
        if chain in self._cache:
            return self._cache[chain]
        sigma = float(self.chain_sigma)
        if chain[:-1] in self._cache:
            return mutate(self._cache[chain[:-1]], chain[-1], sigma)
        return theta_from_chain(chain, self.init_scale.cpu(), sigma)

    @torch.no_grad()
    def set_elite(self, chain: Chain) -> None:
        if len(chain) > self.hparams.chain_capacity:
            raise UserError(f"the seed chain has grown to {len(chain)} > --model.chain_capacity "
                            f"{self.hparams.chain_capacity}: raise it to run more generations")
        self.theta.copy_(self.weights(chain))
        self.elite_chain.fill_(-1)
        self.elite_chain[: len(chain)] = torch.tensor(chain, dtype=torch.long)
        self.elite_chain_length.fill_(len(chain))

    # -- acting ---------------------------------------------------------------------------------

    def forward(self, obs: Tensor) -> Tensor:
        """The policy's outputs for a batch of observations [B, ...]: action logits, or the continuous action
        before clipping to the box."""
        return self.net.forward_flat(self.theta.unsqueeze(0), obs.unsqueeze(0).to(self.theta.device)).squeeze(0)

    @torch.no_grad()
    def act(self, obs: Any) -> np.ndarray:
        """Actions for ``env.step`` from one observation or a batch (NumPy or tensor)."""
        obs_t = torch.as_tensor(np.asarray(obs), device=self.theta.device)
        single = tuple(obs_t.shape) == self.obs_shape
        if single:
            obs_t = obs_t[None]
        if tuple(obs_t.shape[1:]) != self.obs_shape:
            raise UserError(f"act: observations of shape {tuple(obs_t.shape)} do not match the env's {self.obs_shape}")
        out = self.evaluator_for_actions().to_actions(self(obs_t if obs_t.dtype == torch.uint8 else obs_t.float()))
        return out[0] if single else out

    def evaluator_for_actions(self) -> Evaluator:
        if self.evaluator is None:
            self.evaluator = Evaluator(self.make_env, self.hparams.n_envs, self.net, self.hparams.max_episode_steps,
                                       name=self.hparams.env)
        return self.evaluator

    # -- one generation -----------------------------------------------------------------------

    def world(self) -> tuple[int, int]:
        trainer = self._trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def draw(self, n_offspring: int, n_parents: int) -> dict[str, Tensor]:
        """The generation's random choices, drawn on rank 0 and broadcast, so every rank holds the same."""
        world_size, rank = self.world()
        hp = self.hparams
        out = {}
        if rank == 0:
            g = self.generator
            out = {"parents": torch.randint(n_parents, (n_offspring,), generator=g, device=g.device),
                   "mutations": torch.randint(SEED_BOUND, (n_offspring,), generator=g, device=g.device),
                   "episodes": torch.randint(SEED_BOUND, (n_offspring,), generator=g, device=g.device),
                   "elite_episodes": torch.randint(SEED_BOUND, (hp.elite_episodes,), generator=g, device=g.device),
                   "archive": torch.rand(n_offspring, generator=g, device=g.device)}
            out = {k: v.cpu() for k, v in out.items()}
        if world_size > 1:
            out = self.trainer.strategy.broadcast(out, src=0)
        return out

    def play(self, jobs: list[tuple[Chain, int]]) -> tuple[Tensor, Tensor, Tensor]:
        """(returns, lengths, behaviours) of one episode per (chain, episode seed), shared out among the
        ranks (job i on rank i mod world size) and all-gathered as (seed, return, length, behaviour)."""
        world_size, rank = self.world()
        mine = list(range(rank, len(jobs), world_size))
        returns, lengths, bcs = self.evaluator_for_actions().run([jobs[i] for i in mine], self.weights, self.theta.device)
        dim = max((len(b) for b in bcs), default=0)
        if world_size > 1:
            dim = int(self.all_gather(torch.tensor(dim, device=self.device)).max())  # NCCL gathers device tensors
        rows = torch.zeros((math.ceil(len(jobs) / world_size), 3 + dim), dtype=torch.float64)
        for m, i in enumerate(mine):
            rows[m, 0], rows[m, 1], rows[m, 2] = float(jobs[i][1]), returns[m], float(lengths[m])
            rows[m, 3: 3 + len(bcs[m])] = torch.as_tensor(bcs[m])
        gathered = self.all_gather(rows.to(self.device)).cpu() if world_size > 1 else rows[None]
        table = torch.zeros((len(jobs), 3 + dim), dtype=torch.float64)
        for i in range(len(jobs)):
            table[i] = gathered[i % world_size, i // world_size]
        if not torch.equal(table[:, 0].long(), torch.tensor([int(s) for _, s in jobs])):
            raise RuntimeError("the ranks disagree about the generation's episode seeds")
        return table[:, 1], table[:, 2].long(), table[:, 3:]

    def next_generation(self) -> dict[str, float]:
        hp = self.hparams
        elitism = hp.elite_candidates > 0 and not hp.novelty_search
        starting = not self.population
        if starting and self.hparams.get("init_from") and not self.has_elite:  # fine-tune: mutate the release's elite
            self.population, self.scores, self.has_elite = [self.elite()], [-math.inf], elitism
        parents = self.population[: hp.truncation]
        n_offspring = hp.population_size - (1 if self.has_elite and elitism else 0)
        draws = self.draw(n_offspring, max(len(parents), 1))
        if parents:
            offspring = [parents[int(k)] + (int(s),) for k, s in zip(draws["parents"], draws["mutations"])]
        else:  # the first generation: N random networks φ(τ₀)
            offspring = [(int(s),) for s in draws["mutations"]]
        returns, lengths, bcs = self.play([(c, int(e)) for c, e in zip(offspring, draws["episodes"])])
        self.env_steps += int(lengths.sum())
        self.best_return = max(self.best_return, float(returns.max()))
        stats = {"fitness_max": float(returns.max()), "fitness_mean": float(returns.mean())}

        if hp.novelty_search:
            reference = torch.cat([self.archive, bcs]) if self.archive.numel() else bcs
            self_index = torch.arange(len(self.archive), len(self.archive) + len(offspring))
            scores = novelty(bcs, reference, hp.novelty_k, self_index)
            keep = draws["archive"] < hp.archive_probability
            self.archive = torch.cat([self.archive, bcs[keep]]) if self.archive.numel() else bcs[keep]
            best = int(rank_by(returns)[0])
            if float(returns[best]) >= self.best_return:  # the weights: the best-returning individual found
                self._cache[offspring[best]] = self.weights(offspring[best])
                self.set_elite(offspring[best])
            stats.update(novelty_max=float(scores.max()), archive_size=float(len(self.archive)))
        else:
            scores = returns
        order = [int(i) for i in rank_by(scores)]
        ranked, ranked_scores = [offspring[i] for i in order], [float(scores[i]) for i in order]

        if elitism:
            candidates = [offspring[i] for i in elite_candidates(scores, hp.elite_candidates, self.has_elite)]
            if self.has_elite:
                candidates.append(self.elite())
            seeds = [int(s) for s in draws["elite_episodes"]]  # the same episodes for every candidate
            cand_returns, cand_lengths, _ = self.play([(c, s) for c in candidates for s in seeds])
            self.env_steps += int(cand_lengths.sum())
            cand_returns = cand_returns.view(len(candidates), len(seeds))
            e = select_elite(cand_returns)
            elite, elite_score = candidates[e], float(cand_returns[e].mean())
            others = [(c, s) for c, s in zip(ranked, ranked_scores) if c != elite]
            ranked = [elite] + [c for c, _ in others]
            ranked_scores = [elite_score] + [s for _, s in others]
            self._cache[elite] = self.weights(elite)
            self.set_elite(elite)
            self.has_elite = True
            stats["elite_return"] = elite_score
        elif not hp.novelty_search:
            self._cache[ranked[0]] = self.weights(ranked[0])
            self.set_elite(ranked[0])
        self.population, self.scores = ranked[: hp.population_size], ranked_scores[: hp.population_size]
        self._cache = {c: self.weights(c) for c in self.population[: hp.truncation]}  # next generation's parents
        self.generation += 1
        return stats

    def training_step(self, batch: Any, batch_idx: int) -> None:
        stats = self.next_generation()
        if self.logging_step():
            self.log_dict({f"train/{k}": float(v) for k, v in stats.items()}, prog_bar=False)
            self.log("train/best_return", self.best_return, prog_bar=True)
            self.log("train/env_steps", float(self.env_steps))
            self.log("train/generation", float(self.generation))
        self.count_step()  # no optimiser: the generation is the trainer's step (global_step, max_steps, checkpoints)
        # the budgets, after every generation: the generation that crosses the step budget is the last
        max_env_steps = self.hparams.max_env_steps
        if max_env_steps is not None and self.env_steps >= max_env_steps:
            self.trainer.should_stop = True
        if self.reached_target(stats):
            self.trainer.should_stop = True

    def reached_target(self, stats: dict[str, float]) -> bool:
        """Whether the policy's validation return reaches ``target_return``. The validation episodes are played
        only once this generation's own measure of the policy (the elite's mean, the best individual's return)
        reaches the target, so the target is checked every generation at the cost of a few validations."""
        target, hp = self.hparams.target_return, self.hparams
        if target is None:
            return False
        claim = stats.get("elite_return", self.best_return if hp.novelty_search else stats["fitness_max"])
        return claim >= target and float(self.evaluate().mean()) >= target

    def progress(self) -> float | None:
        """How far the run is toward its environment-step budget (the progress bars' time left counts toward
        whichever of it and ``max_steps`` comes first); None without a budget."""
        budget = self.hparams.max_env_steps
        return min(self.env_steps / budget, 1.0) if budget else None

    # -- evaluation -----------------------------------------------------------------------------

    def evaluate(self, n_episodes: int | None = None, seed: int | None = None) -> np.ndarray:
        """Returns of the current policy on fixed seeds (the same on every rank)."""
        n = n_episodes or self.hparams.n_eval_episodes
        seed = self.hparams.eval_seed if seed is None else seed
        jobs = [(self.elite(), seed + i) for i in range(n)]
        cache, self._cache = self._cache, {self.elite(): self.theta.detach().cpu()}
        try:
            returns, _, _ = self.evaluator_for_actions().run(jobs, self.weights, self.theta.device)
        finally:
            self._cache = cache
        return returns

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        returns = torch.as_tensor(self.evaluate(), dtype=torch.float32)
        self.log("val/return", returns.mean(), prog_bar=True, batch_size=len(returns))
        self.log("val/return_std", returns.std(), batch_size=len(returns))
        self.log("val/env_steps", float(self.env_steps), batch_size=len(returns))
        target = self.hparams.target_return
        if target is not None and self._trainer is not None and self.trainer.state.fn == "fit" and returns.mean() >= target:
            self.trainer.should_stop = True

    def release_metrics(self) -> dict[str, float]:
        returns = self.evaluate(n_episodes=20, seed=2_000_000)
        chain_bytes = 4 * int(self.elite_chain_length) + 4
        return {"eval/return_mean_20ep": float(returns.mean()), "eval/return_std_20ep": float(returns.std()),
                "env_steps": float(self.env_steps), "generations": float(self.generation),
                "release/seed_chain_bytes": float(chain_bytes), "release/weights_bytes": float(4 * self.theta.numel()),
                "release/parameters": float(self.theta.numel())}

    # -- releases: the seed chain, not the weights -------------------------------------------------

    def save_release(self, directory: Path) -> None:
        """``model.safetensors`` holds the elite's seed chain (int32) and σ; the weights are rebuilt on load."""
        from zoo import hub

        hub.write_safetensors({"seeds": self.elite_chain[: int(self.elite_chain_length)].to(torch.int32),
                               "sigma": self.chain_sigma.reshape(1).float()}, Path(directory) / hub.WEIGHTS)

    @classmethod
    def load_release(cls, directory: Path, init_args: dict[str, Any]) -> "DeepGA":
        from zoo import hub

        path = Path(directory) / hub.WEIGHTS
        state = hub.read_weights(path)
        if (set(state) != {"seeds", "sigma"} or state["seeds"].dim() != 1 or len(state["seeds"]) < 1
                or state["sigma"].numel() != 1):
            raise CheckpointError(f"{path}: expected a seed chain (tensors 'seeds' and 'sigma', one σ), got "
                                  f"{ {k: tuple(v.shape) for k, v in state.items()} }")
        chain = tuple(int(s) for s in state["seeds"])
        sigma = float(state["sigma"].reshape(-1)[0])
        check_chain(chain, sigma, str(path))
        model = cls(**{k: v for k, v in init_args.items() if k != "init_from"})
        with torch.no_grad():
            model.chain_sigma.fill_(sigma)
        model.set_elite(chain)
        return model

    # -- Lightning plumbing -------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        super().setup(stage)  # loads --model.init_from
        if self.hparams.get("init_from"):
            check_chain(self.elite(), float(self.chain_sigma), f"--model.init_from {self.hparams.init_from}")
        if self.hparams.get("init_from") and not math.isclose(float(self.chain_sigma), self.hparams.sigma, rel_tol=1e-6):
            raise UserError(f"--model.init_from {self.hparams.init_from}: its seed chain was evolved with σ = "
                            f"{float(self.chain_sigma):g}, and the chain continues with the same σ: pass "
                            f"--model.sigma {float(self.chain_sigma):g}")

    def configure_optimizers(self) -> None:
        return None

    def train_dataloader(self) -> Steps:
        """No data set: each training step is a generation."""
        return Steps(self.hparams.steps_per_epoch)

    def val_dataloader(self) -> Steps:
        return Steps(1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        width = max((len(c) for c in self.population), default=0)
        chains = torch.full((len(self.population), width), -1, dtype=torch.long)
        for i, c in enumerate(self.population):
            chains[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        checkpoint["deep_ga"] = {
            "chains": chains, "lengths": torch.tensor([len(c) for c in self.population], dtype=torch.long),
            "scores": torch.tensor(self.scores, dtype=torch.float64), "has_elite": self.has_elite,
            "archive": self.archive.clone(), "best_return": self.best_return,
            "env_steps": self.env_steps, "generation": self.generation}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        where = str(self._trainer.ckpt_path) if self._trainer is not None and self._trainer.ckpt_path else "the checkpoint"
        weights = checkpoint.get("state_dict") or {}
        if {"elite_chain", "elite_chain_length", "chain_sigma"} <= set(weights):
            n = int(weights["elite_chain_length"])
            if not 1 <= n <= len(weights["elite_chain"]):
                raise CheckpointError(f"{where}: the elite's seed chain has length {n}, outside [1, "
                                      f"{len(weights['elite_chain'])}] (the file is corrupted)")
            check_chain([int(s) for s in weights["elite_chain"][:n]], float(weights["chain_sigma"]), where)
        state = checkpoint.get("deep_ga")
        if state is None:
            return
        chains, lengths, scores = state["chains"], state["lengths"], state["scores"]
        if (chains.dim() != 2 or not len(chains) == len(lengths) == len(scores)
                or not all(1 <= int(n) <= chains.shape[1] for n in lengths)):
            raise CheckpointError(f"{where}: the Deep GA population is inconsistent ({len(chains)} chains, "
                                  f"{len(lengths)} lengths, {len(scores)} scores; the file is corrupted)")
        for row, n in zip(chains, lengths):
            check_chain([int(s) for s in row[: int(n)]], float(weights.get("chain_sigma", self.chain_sigma)), where)
        self.reset_search()
        self.population = [tuple(int(s) for s in row[:n]) for row, n in zip(state["chains"], state["lengths"])]
        self.scores = [float(s) for s in state["scores"]]
        self.has_elite, self.archive = bool(state["has_elite"]), state["archive"]
        self.best_return, self.env_steps = float(state["best_return"]), int(state["env_steps"])
        self.generation = int(state["generation"])
