"""The networks Nash-MD samples from: the token-level geometric mixture π_θ^β of the policy and the
reference, and the reference as the policy with its LoRA adapters switched off.

``GeometricMixture`` looks to ``zoo.lm.sample`` like one causal LM: each call runs both models on the
new tokens, each with its own KV cache, and returns log_softmax((1 − β) z_θ + β z_μ). Sampling is
therefore one forward pass of each model per token, as for one model.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import UserError
from zoo.lm.helpers import cache_argument
from zoo.nash_md.objective import geometric_mixture_logits


class MixtureOutput(dict):
    """The mixture's step: ``logits`` (its next-token log-probabilities) and both models' caches."""

    @property
    def logits(self) -> Tensor:
        return self["logits"]


def step(model: nn.Module, cache: Any, **inputs: Any) -> tuple[Tensor, Any]:
    out = model(**inputs, use_cache=True, **{cache_argument(model): cache})
    return out.logits, (out["cache"] if "cache" in out else out["past_key_values"])


class GeometricMixture(nn.Module):
    """π^β(y_n | x, y_<n) ∝ π_θ(y_n | ·)^(1−β) μ(y_n | ·)^β, token by token, with a KV cache in each model."""

    def __init__(self, policy: nn.Module, reference: nn.Module, beta: float) -> None:
        super().__init__()
        self.policy, self.reference, self.beta = policy, reference, beta
        self.config = getattr(policy, "config", None)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                use_cache: bool = True, past_key_values: tuple[Any, Any] | None = None) -> MixtureOutput:
        policy_cache, reference_cache = past_key_values if past_key_values is not None else (None, None)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        z_policy, policy_cache = step(self.policy, policy_cache, **inputs)
        z_reference, reference_cache = step(self.reference, reference_cache, **inputs)
        return MixtureOutput(logits=geometric_mixture_logits(z_policy, z_reference, self.beta),
                             past_key_values=(policy_cache, reference_cache))


class AdapterDisabled(nn.Module):
    """The base model under a PEFT model: the policy with its LoRA adapters off, i.e. the reference μ."""

    def __init__(self, peft_model: nn.Module) -> None:
        super().__init__()
        self.peft_model = peft_model
        self.config = peft_model.config

    def get_base_model(self) -> nn.Module:
        return self.peft_model.get_base_model()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.peft_model.disable_adapter():
            return self.peft_model(*args, **kwargs)


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class HubRewardModel(nn.Module):
    """A sequence-classification reward model from the HF hub or a folder (e.g. a TL;DR reward model), read as
    Bradley–Terry: r(x, y) is its first logit on the text x + y, P(y ≻ y' | x) = σ(r(x, y) − r(x, y')).
    A folder without the score head's weights is refused, as is a zoo release without its manifest."""

    kind = "bradley_terry"

    def __init__(self, name: str, max_length: int = 1024) -> None:
        super().__init__()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from zoo import offline
        from zoo.lm.helpers import check_complete, resolve_base

        flag = "--model.preference_model"
        where = resolve_base(name, flag)  # a release folder verified, a name from a file kept offline
        try:
            self.model, info = AutoModelForSequenceClassification.from_pretrained(where, output_loading_info=True)
            self.tokenizer = AutoTokenizer.from_pretrained(where)
        except (OSError, ValueError) as e:
            raise UserError(f"{flag} {name!r}: neither a zoo preference model nor a loadable "
                             f"sequence-classification reward model ({str(e)[:300]}); offline, train one with "
                             "recipes/preference.py and give its release or checkpoint") from None
        # a causal LM's folder loads too, its score head at random: a judge that would be noise
        check_complete(info, name, flag, "a sequence-classification reward model")
        offline.loaded(name, where)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.max_length = max_length

    def reward(self, prompts: list[str], responses: list[str]) -> Tensor:
        device = next(self.model.parameters()).device
        enc = self.tokenizer([x + y for x, y in zip(prompts, responses)], return_tensors="pt", padding=True,
                             truncation=True, max_length=self.max_length).to(device)
        return self.model(**enc).logits[:, 0].float()

    def preference(self, prompts: list[str], y: list[str], y_prime: list[str]) -> Tensor:
        r = self.reward(list(prompts) * 2, [*y, *y_prime])
        return torch.sigmoid(r[:len(y)] - r[len(y):])


class KeywordJudge(nn.Module):
    """The generated task's true preference (zoo/preference/data.py: keyword_judge) used as the preference
    model itself: an oracle, for tests and for seeing what Nash-MD does with a perfect judge."""

    kind = "pairwise"

    def preference(self, prompts: list[str], y: list[str], y_prime: list[str]) -> Tensor:
        from zoo.preference.data import keyword_judge

        return keyword_judge(y, y_prime)


__all__ = ["GeometricMixture", "KeywordJudge", "AdapterDisabled", "HubRewardModel", "freeze"]
