"""A byte-level BPE tokenizer trained offline with the ``tokenizers`` library.

It is returned, and saved, as a ``transformers.PreTrainedTokenizerFast``: a directory written by
``save_pretrained`` (or by ``save_tokenizer``) loads with ``transformers.AutoTokenizer.from_pretrained``.
Byte-level means every UTF-8 string round-trips exactly: ``decode(encode(s)) == s``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from zoo.errors import UserError
from zoo.files import ROOT, tokenizer_files, tokenizer_from_files  # noqa: F401  (the files a checkpoint keeps)

EOS = "<|endoftext|>"
PAD = "<|pad|>"
CACHE = ROOT / "data" / "cache" / "tokenizers"


def train_bpe(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2):
    """A byte-level BPE of at most ``vocab_size`` tokens (the 256 bytes, the merges, EOS and PAD)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 258:
        raise UserError(f"--model.vocab_size must be at least 258 (256 bytes + EOS + PAD), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=[EOS, PAD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=PAD,
                                   clean_up_tokenization_spaces=False, model_max_length=1 << 30)


def cached_bpe(text: str, vocab_size: int):
    """``train_bpe`` on ``text``, trained once and kept under data/cache/tokenizers/ (keyed by a hash of
    the text), so that every run on the same corpus, and every DDP rank, gets the very same tokenizer."""
    from transformers import AutoTokenizer

    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    directory = CACHE / f"bpe-{vocab_size}-{key}"
    if not (directory / "tokenizer.json").exists():
        tok = train_bpe(_lines(text), vocab_size)
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=CACHE))
        tok.save_pretrained(tmp)
        try:
            os.replace(tmp, directory)  # atomic: a second process training at once keeps the first copy
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return AutoTokenizer.from_pretrained(directory)


def _lines(text: str, chunk: int = 1 << 16):
    """The text in pieces the trainer can work through in parallel (cut at line ends)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + chunk)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def encode(tokenizer, text: str, chunk: int = 1 << 20) -> list[int]:
    """Token ids of a long text, encoded in line-aligned pieces (no special tokens added)."""
    backend = tokenizer.backend_tokenizer
    ids: list[int] = []
    for enc in backend.encode_batch(list(_lines(text, chunk)), add_special_tokens=False):
        ids.extend(enc.ids)
    return ids
