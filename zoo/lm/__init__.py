"""The language-model core the LLM methods share.

- ``zoo.lm.data``: ``TextDataModule`` (text files, folders, HF ``datasets`` names, the embedded
  pydoc_data.topics corpus; non-overlapping train/val/test splits).
- ``zoo.lm.tokenizer``: a byte-level BPE trained offline with ``tokenizers``, saved so that
  ``transformers.AutoTokenizer.from_pretrained(dir)`` loads it.
- ``zoo.lm.objective``: next-token loss, per-sequence log-probabilities over chosen positions.
- ``zoo.lm.helpers``: loading any HF causal LM (or a zoo id such as ``tiny-lm``), batched sampling
  with the KV cache, LoRA through PEFT, prompt/response batches with a
  response mask.
- ``zoo.lm.module``: ``CausalLM``, the GPT-2 base model that ``python recipes/lm.py fit`` pretrains.
"""
from zoo.lm.data import TextDataModule
from zoo.lm.helpers import add_lora, left_pad, load_causal_lm, prompt_response_batch, sample
from zoo.lm.module import CausalLM
from zoo.lm.objective import next_token_nll, sequence_log_probs, token_log_probs
from zoo.lm.tokenizer import train_bpe

__all__ = ["TextDataModule", "CausalLM", "add_lora", "left_pad", "load_causal_lm", "prompt_response_batch", "sample", "next_token_nll",
           "sequence_log_probs", "token_log_probs", "train_bpe"]
