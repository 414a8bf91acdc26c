"""Nash-MD (Munos et al., ICML 2024): a policy that no other policy is preferred to, under a learned
pairwise preference model, regularised towards the reference policy μ.

Language models (the default). Each step, for a batch of prompts x: y ∼ π_θ(·|x) and y' from the
opponent, both sampled with the KV cache; P(y ≻ y'|x) from the preference model; then one optimiser
step on the loss of zoo/nash_md/objective.py (``--model.loss``):

    nash_md      y' ∼ π_θ^β, the token-level geometric mixture of π_θ and μ;
                 −(P(y ≻ y') − ½) log π_θ(y|x) + τ KL̂ (per-token REINFORCE, as TRL)
    nash_md_pg   y' ∼ π_θ^β;  −sg[P(y ≻ y') − ½ − τ log π_θ(y|x)/μ(y|x)] log π_θ(y|x) (the paper's gradient)
    self_play    y' ∼ π_θ (β = 0), the Nash-MD loss: mirror descent without the mixture
    rlhf         a Bradley–Terry reward model; y' ∼ π_θ is the baseline, −(r(y) − r(y')) log π_θ(y|x) + τ KL̂

μ is the frozen base model (with ``--model.lora_r``: the policy with its adapters off). Validation
compares π_θ with μ on held-out prompts: the win rate P(π_θ ≻ μ) under the preference model (and under
the keyword judge on the generated task).

Tabular games (``--model.game``): the exact algorithm on a preference matrix, one iteration per step, for
Nash-MD and its baselines side by side; the logged metric is each one's exploitability (see objective.py).
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from zoo import offline
from zoo.errors import UserError
from zoo.lm.helpers import add_lora, left_pad, load_causal_lm, sample
from zoo.lm.module import adamw_warmup_cosine
from zoo.lm.objective import token_log_probs
from zoo.module import ZooModule
from zoo.nash_md import objective as O
from zoo.nash_md.data import preference_game, reference_policy
from zoo.nash_md.nets import AdapterDisabled, GeometricMixture, HubRewardModel, KeywordJudge, freeze

# tabular games make exact updates, with no optimiser (and so Lightning's manual-optimisation path)
warnings.filterwarnings("ignore", ".*configure_optimizers. returned .None.*")
warnings.filterwarnings("ignore", ".*manual optimization and every_n_train_steps.*")

LOSSES = ("nash_md", "nash_md_pg", "self_play", "rlhf")
TABULAR = ("nash_md", "nash_md_vs_current", "self_play", "rlhf")


class NashMD(ZooModule):
    model_hparams = ("base", "preference_model")  # names of models to load: offline only where read from a file
    curve_metrics = ("val/win_rate", "val/judge_win_rate", "train/preference", "train/kl", "train/loss",
                     "tabular/exploitability/nash_md", "tabular/exploitability/self_play", "tabular/exploitability/rlhf")

    def __init__(
        self,
        base: str = "tiny-lm",
        preference_model: str | None = "pref-tiny",
        loss: Literal["nash_md", "nash_md_pg", "self_play", "rlhf"] = "nash_md",
        beta: float = 0.125,
        tau: float = 0.05,
        max_prompt_tokens: int = 64,
        max_new_tokens: int = 24,
        temperature: float = 1.0,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 10,
        schedule_steps: int | None = None,
        lora_r: int = 0,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.0,
        game: str | None = None,
        game_size: int = 10,
        game_seed: int = 0,
        reference: str = "skewed",
        eta: float = 0.5,
        eta_schedule: Literal["constant", "decreasing"] = "constant",
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            base: the policy's starting point and the reference μ: an HF causal LM by zoo id (``tiny-lm``),
                save_pretrained folder or hub name.
            preference_model: the judge of (y, y'): a release or checkpoint of ``recipes/preference.py`` (a pairwise
                preference model, or a Bradley–Terry reward model, which gives P = σ(r − r')), a hub name of a
                sequence-classification reward model, or ``keyword-judge`` (the generated task's true preference,
                an oracle). ``rlhf`` needs a reward model.
            loss: ``nash_md``, ``nash_md_pg`` (the paper's policy gradient), ``self_play`` or ``rlhf`` (see above).
            beta: β, the weight of μ in the opponent's mixture π_θ^β ∝ π_θ^(1−β) μ^β (nash_md, nash_md_pg); in [0, 1].
            tau: τ > 0, the strength of the KL(π_θ ‖ μ) regularisation.
            max_prompt_tokens: a prompt keeps its last this many tokens.
            max_new_tokens: tokens sampled per response (fewer where the model ends it).
            temperature: sampling temperature of y and y'.
            lr: AdamW peak learning rate (linear warm-up, cosine decay to a tenth).
            weight_decay: AdamW weight decay of the matrices.
            warmup_steps: learning-rate warm-up steps.
            schedule_steps: length of the learning-rate schedule; the trainer's max_steps when not given.
            lora_r: rank of LoRA adapters (PEFT) on the policy; 0 trains every weight. With adapters, μ is the
                policy with them switched off (no second copy of the model).
            lora_alpha: LoRA scale α.
            lora_dropout: dropout on the LoRA branch.
            game: a tabular game instead of a language model: ``rps``, ``rps_like``, ``random`` or a .json matrix;
                each step is one exact iteration of Nash-MD, Nash-MD against π_t, self-play and RLHF.
            game_size: responses of the ``random`` game.
            game_seed: seed of the ``random`` game.
            reference: μ of a tabular game: ``uniform`` or ``skewed``.
            eta: η, the tabular step size (Nash-MD's mixture weight is β = ητ).
            eta_schedule: ``constant`` η, or ``decreasing`` η_t = min(η, 2/(τ(t + 2))), under which the paper's
                Nash-MD converges to π*_τ itself rather than to a neighbourhood of it.
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__()
        self.save_hyperparameters()
        if loss not in LOSSES:
            raise UserError(f"--model.loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if not 0 <= beta <= 1:
            raise UserError(f"--model.beta must lie in [0, 1] (the weight of the reference in the mixture), got {beta}")
        if tau <= 0:
            raise UserError(f"--model.tau must be > 0 (the KL regularisation that makes the Nash equilibrium unique), "
                            f"got {tau}")
        if temperature <= 0:
            raise UserError(f"--model.temperature must be > 0, got {temperature}")
        self.tokenizer = None
        # μ and the preference model are frozen and kept out of the state dict: both are loaded again
        # from --model.base and --model.preference_model, so checkpoints and releases hold the policy only
        object.__setattr__(self, "judge", None)
        object.__setattr__(self, "_frozen_reference", None)
        if game is not None:
            self._init_tabular()
            return
        self.policy, self.tokenizer = load_causal_lm(base)
        if self.tokenizer is None:
            raise UserError(f"--model.base {base}: has no tokenizer; Nash-MD decodes responses for the preference model")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if init_from is not None:
            from zoo.lm.module import release_tokenizer

            self.tokenizer = release_tokenizer(init_from) or self.tokenizer
        if lora_r == 0:
            object.__setattr__(self, "_frozen_reference", freeze(copy.deepcopy(self.policy)))
        else:
            self.policy = add_lora(self.policy, lora_r, lora_alpha, lora_dropout)
        self.policy.train()  # from_pretrained returns eval mode, which Lightning would keep
        self.example_input_array = torch.arange(16).remainder(self.policy.config.vocab_size).view(2, 8)

    def _init_tabular(self) -> None:
        hp = self.hparams
        self.automatic_optimization = False
        P = preference_game(hp.game, hp.game_size, hp.game_seed)
        mu = reference_policy(hp.reference, P.shape[0])
        self.register_buffer("P", P)
        self.register_buffer("mu", mu)
        self.register_buffer("pi_star", O.regularised_nash(P, mu, hp.tau))
        self.register_buffer("bt_reward", O.bradley_terry_fit(P, torch.outer(mu, mu)))
        self.register_buffer("policies", mu.expand(len(TABULAR), -1).clone())  # one row per algorithm
        self.example_input_array = torch.arange(len(TABULAR))

    # -- the policy --------------------------------------------------------------------------------

    def forward(self, input_ids: Tensor) -> Tensor:
        """Next-token logits of the policy [B, T, V]; for a tabular game, log π of the algorithms' rows."""
        if self.hparams.game is not None:
            return self.policies[input_ids].log()
        return self.policy(input_ids=input_ids).logits

    def reference_model(self) -> nn.Module:
        """μ: the frozen base (on the policy's device), or the policy with its adapters off."""
        if self._frozen_reference is None:
            return AdapterDisabled(self.policy)
        return self._frozen_reference.to(self.device)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.hparams.game is None and stage in ("fit", "validate", "test"):
            self.load_judge()  # before the first step: a missing or wrong judge fails the run at once

    def load_judge(self) -> nn.Module:
        """The preference model that ``--model.preference_model`` names (loaded once, on first use: a model built
        by ``zoo.load`` has it as soon as it compares, without a Trainer)."""
        hp = self.hparams
        if self.judge is not None:
            return self.judge
        if hp.preference_model is None:
            raise UserError("--model.preference_model is needed to train or evaluate a policy: a release of "
                            "recipes/preference.py (e.g. pref-tiny) or a checkpoint of it")
        with offline.marking(self._names_from_files):  # a judge named by a file stays offline
            judge = freeze(load_judge(hp.preference_model))
        if hp.loss == "rlhf" and getattr(judge, "kind", "pairwise") != "bradley_terry":
            raise UserError(f"--model.loss rlhf needs a reward model, but --model.preference_model "
                            f"{hp.preference_model} is a pairwise preference model: train one with "
                            "recipes/preference.py --model.kind bradley_terry")
        object.__setattr__(self, "judge", judge)
        return judge

    def judge_on_device(self) -> nn.Module:
        return self.load_judge().to(self.device)

    # -- sampling ------------------------------------------------------------------------------------

    def prompts_to_ids(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        ids, mask = left_pad(self.tokenizer, prompts)
        keep = self.hparams.max_prompt_tokens
        return ids[:, -keep:].to(self.device), mask[:, -keep:].to(self.device)

    def generate(self, model: nn.Module, ids: Tensor, mask: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Responses [B, N] and their mask (1 up to and with the end-of-text token) from ``model``."""
        hp = self.hparams
        was_training = model.training
        model.eval()
        seq, seq_mask = sample(model, ids, mask, max_new_tokens=hp.max_new_tokens, temperature=hp.temperature,
                               generator=generator, eos_token_id=self.tokenizer.eos_token_id,
                               pad_token_id=self.tokenizer.pad_token_id)
        model.train(was_training)
        return seq[:, ids.shape[1]:], seq_mask[:, ids.shape[1]:]

    def opponent(self) -> nn.Module:
        """The model y' is drawn from: π_θ^β for Nash-MD, π_θ itself for self-play and RLHF."""
        if self.hparams.loss in ("nash_md", "nash_md_pg") and self.hparams.beta > 0:
            return GeometricMixture(self.policy, self.reference_model(), self.hparams.beta)
        return self.policy

    def decode(self, responses: Tensor) -> list[str]:
        return self.tokenizer.batch_decode(responses, skip_special_tokens=True)

    def response_log_probs(self, model: nn.Module, ids: Tensor, mask: Tensor, responses: Tensor,
                           response_mask: Tensor) -> Tensor:
        """log model(y_n | x, y_<n) of each response token: [B, N]."""
        full, full_mask = torch.cat([ids, responses], 1), torch.cat([mask, response_mask], 1)
        position_ids = (full_mask.cumsum(-1) - 1).clamp_min(0)
        logits = model(input_ids=full, attention_mask=full_mask, position_ids=position_ids).logits
        return token_log_probs(logits, full)[:, ids.shape[1] - 1:]

    # -- training ------------------------------------------------------------------------------------

    def training_step(self, batch: list[str], batch_idx: int) -> Tensor | None:
        if self.hparams.game is not None:
            return self.tabular_step()
        hp = self.hparams
        ids, mask = self.prompts_to_ids(batch)
        with torch.no_grad():
            y, y_mask = self.generate(self.policy, ids, mask, self.generator)
            y_prime, _ = self.generate(self.opponent(), ids, mask, self.generator)
            texts, texts_prime = self.decode(y), self.decode(y_prime)
            judge = self.judge_on_device()
            if hp.loss == "rlhf":
                rewards = judge.reward(batch + batch, texts + texts_prime).float()
                reward, baseline = rewards[:len(batch)], rewards[len(batch):]
                preference = torch.sigmoid(reward - baseline)
            else:
                preference = judge.preference(batch, texts, texts_prime).float()
            ref_logp = self.response_log_probs(self.reference_model(), ids, mask, y, y_mask).float()
        logp = self.response_log_probs(self.policy, ids, mask, y, y_mask).float()
        if hp.loss == "nash_md_pg":
            losses = O.nash_md_pg_loss(logp, ref_logp, y_mask, preference, hp.tau)
        elif hp.loss == "rlhf":
            losses = O.rlhf_loss(logp, ref_logp, y_mask, reward, baseline, hp.tau)
        else:
            losses = O.nash_md_loss(logp, ref_logp, y_mask, preference, hp.tau)
        loss = losses.mean()
        if self.logging_step():
            n = len(batch)
            self.log("train/loss", loss, prog_bar=True, batch_size=n)
            self.log("train/preference", preference.mean(), prog_bar=True, batch_size=n)
            self.log("train/kl", O.sequence_kl(logp, ref_logp, y_mask).mean(), batch_size=n)
            self.log("train/response_tokens", y_mask.sum(-1).float().mean(), batch_size=n)
            if hp.loss == "rlhf":
                self.log("train/reward", reward.mean(), batch_size=n)
        return loss

    def tabular_step(self) -> None:
        hp, P, mu = self.hparams, self.P, self.mu
        t = self.global_step
        eta = hp.eta if hp.eta_schedule == "constant" else min(hp.eta, 2.0 / (hp.tau * (t + 2)))
        pi = self.policies
        new = torch.stack([O.nash_md_update(pi[0], mu, P, eta, hp.tau),
                           O.nash_md_update(pi[1], mu, P, eta, hp.tau, against="current"),
                           O.self_play_update(pi[2], P, eta),
                           O.rlhf_update(pi[3], mu, self.bt_reward, eta, hp.tau)])
        self.policies.copy_(new)
        for name, p in zip(TABULAR, new):
            self.log(f"tabular/exploitability/{name}", O.exploitability(p, P, mu, hp.tau).float(), batch_size=1)
            self.log(f"tabular/kl_to_nash/{name}", O.kl(self.pi_star, p).float(), batch_size=1)
        # no optimiser steps: count the iteration as the trainer's step (global_step, max_steps, checkpoints)
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        progress.increment_completed()
        return None

    # -- evaluation ----------------------------------------------------------------------------------

    @torch.no_grad()
    def compare(self, prompts: list[str], model_a: nn.Module, model_b: nn.Module, seed: int) -> tuple[Tensor, list[str], list[str]]:
        """P(y_a ≻ y_b | x) with y_a ∼ model_a, y_b ∼ model_b on each prompt, from a fixed seed: [B]."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        ids, mask = self.prompts_to_ids(prompts)
        a = self.decode(self.generate(model_a, ids, mask, g)[0])
        b = self.decode(self.generate(model_b, ids, mask, g)[0])
        return self.judge_on_device().preference(prompts, a, b).float(), a, b

    def validation_step(self, batch: list[str], batch_idx: int) -> None:
        if self.hparams.game is not None:
            return
        # a fixed stream per batch: every validation meets the same draws, and training's stream is untouched
        p, a, b = self.compare(batch, self.policy, self.reference_model(), seed=10_007 * (batch_idx + 1) + self.global_rank)
        self.log("val/win_rate", p.mean(), prog_bar=True, batch_size=len(batch), sync_dist=True)
        judge = getattr(self.trainer.datamodule, "judge", None) if self.trainer is not None else None
        if judge is not None:
            self.log("val/judge_win_rate", judge(a, b).mean(), batch_size=len(batch), sync_dist=True)

    def configure_optimizers(self):
        if self.hparams.game is not None:
            return None
        hp = self.hparams
        return adamw_warmup_cosine(self.policy, hp.lr, hp.weight_decay, (0.9, 0.999), hp.warmup_steps,
                                   self.schedule_steps())

    # -- releases: the policy as a Hugging Face folder -------------------------------------------------

    def hf_model(self) -> nn.Module:
        if hasattr(self.policy, "merge_and_unload"):
            return copy.deepcopy(self.policy).merge_and_unload()
        return self.policy

    def save_release(self, directory: Path) -> None:
        if self.hparams.game is not None:
            return super().save_release(directory)
        self.hf_model().save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def load_release(cls, directory: Path, init_args: dict[str, Any]) -> "NashMD":
        if init_args.get("game") is not None:
            return super().load_release(directory, init_args)
        init_args = {**init_args, "base": str(directory), "lora_r": 0}  # adapters were merged at release
        init_args.pop("init_from", None)
        return cls(**init_args)


def load_judge(source: str) -> nn.Module:
    """The preference model of ``source``: a zoo release or checkpoint of recipes/preference.py, a hub name or
    folder of a sequence-classification reward model (taken as Bradley–Terry), or ``keyword-judge``, the
    generated task's true preference. A folder is verified like a release (zoo.lm.helpers.resolve_base); a name
    that comes from a file loads offline only (zoo/offline.py)."""
    from zoo import hub
    from zoo.module import load
    from zoo.preference import PreferenceModel

    if source == "keyword-judge":
        return KeywordJudge()
    if source in hub.registry() or Path(source).expanduser().exists() and (
            str(source).endswith(".ckpt") or (Path(source).expanduser() / hub.MANIFEST).exists()):
        model = load(source)
        if not isinstance(model, PreferenceModel):
            raise UserError(f"--model.preference_model {source}: a release of {type(model).__name__}, not a preference "
                            "or reward model (train one with recipes/preference.py)")
        model.kind = model.hparams.kind
        return model
    return HubRewardModel(source)
