"""Writing labelled examples as CPT's context: templates, token ids and the token-type masks PEFT expects.

One example (x, y) is written as

    input_template.format(x) + intra_separator + output_template.format(y) + inter_separator

with the types (zoo/cpt/objective.py): 1 for the input template's text around "{}", 2 for x, 0 for
the intra separator, 3 for the output template around "{}", 4 for the label word y, 0 for the inter
separator. Example i of the context adds 4i to its non-zero types (PEFT's convention, so that the
loss decay can tell the examples apart); a query is passed to PEFT with the types of example 0 and
PEFT shifts them past the context's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from zoo.errors import UserError


@dataclass(frozen=True)
class Templates:
    input: str = "input: {}"
    output: str = "output: {}"
    intra_separator: str = " "
    inter_separator: str = "\n"

    def check(self) -> None:
        for name, template in (("input_template", self.input), ("output_template", self.output)):
            if template.count("{}") != 1:
                raise UserError(f"--model.{name} {template!r} must hold the slot '{{}}' exactly once "
                                f"(where the {'text' if name == 'input_template' else 'label word'} goes), "
                                f"e.g. {'input: {}' if name == 'input_template' else 'output: {}'}")


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_example(tokenizer: Any, templates: Templates, text: str, label_word: str | None,
                   max_text_tokens: int | None = None, with_inter_separator: bool = True) -> tuple[list[int], list[int]]:
    """(ids, types) of one example; ``label_word`` None stops after the output template's prefix (a query
    to classify). The text is cut to its first ``max_text_tokens`` tokens."""
    in_before, in_after = templates.input.split("{}")
    out_before, out_after = templates.output.split("{}")
    x = _ids(tokenizer, text)[:max_text_tokens] if max_text_tokens is not None else _ids(tokenizer, text)
    parts = [(_ids(tokenizer, in_before), 1), (x, 2), (_ids(tokenizer, in_after), 1),
             (_ids(tokenizer, templates.intra_separator), 0), (_ids(tokenizer, out_before), 3)]
    if label_word is not None:
        parts += [(_ids(tokenizer, label_word), 4), (_ids(tokenizer, out_after), 3)]
        if with_inter_separator:
            parts.append((_ids(tokenizer, templates.inter_separator), 0))
    ids = [t for p, _ in parts for t in p]
    types = [kind for p, kind in parts for _ in p]
    return ids, types


def build_context(tokenizer: Any, templates: Templates, examples: Sequence[tuple[str, str]],
                  max_text_tokens: int | None = None) -> tuple[list[int], list[int]]:
    """The context of k examples [(text, label word)]: ids and types, example i's types shifted by 4i."""
    ids: list[int] = []
    types: list[int] = []
    for i, (text, word) in enumerate(examples):
        e_ids, e_types = encode_example(tokenizer, templates, text, word, max_text_tokens)
        ids += e_ids
        types += [t + 4 * i if t > 0 else 0 for t in e_types]
    return ids, types


def overhead(tokenizer: Any, templates: Templates, label_words: Sequence[str]) -> int:
    """Tokens an example takes besides its text (templates, separators, the longest label word)."""
    ids, _ = encode_example(tokenizer, templates, "", max(label_words, key=lambda w: len(_ids(tokenizer, w))))
    return len(ids)


def text_budget(positions: int, k: int, tokenizer: Any, templates: Templates, label_words: Sequence[str]) -> int:
    """The most text tokens per example such that a context of k examples and one query fit in ``positions``."""
    budget = positions // (k + 1) - overhead(tokenizer, templates, label_words)
    if budget < 1:
        raise UserError(f"a context of k={k} examples and a query cannot fit the model's {positions} positions "
                        f"with these templates ({overhead(tokenizer, templates, label_words)} tokens each besides "
                        "the text): lower --data.k, shorten the templates, or use a base model with a longer context")
    return budget


def pad_right(rows: Sequence[Sequence[int]], value: int) -> Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def transfer_delta(old_ids: Tensor, old_types: Tensor, old_delta: Tensor, new_ids: Tensor, new_types: Tensor) -> Tensor:
    """CPT's δ of a context carried over to another context of the same templates: for every example slot i
    and every role (type 4i+1 input template, 4i+2 text, 4i+3 output template), the slot's tokens of that role
    take the old δ where they are the same tokens in both contexts, and δ = 0 elsewhere. So the templates' δ
    moves to the new examples, a text's δ only where example i's text is the same text; label words and
    separators have no δ (PEFT masks them), and the slots past the old context's k start at 0."""
    new = old_delta.new_zeros(len(new_ids), old_delta.shape[1])
    for t in new_types.unique().tolist():
        if t <= 0 or t % 4 == 0:
            continue
        src, dst = old_types == t, new_types == t
        if int(src.sum()) == int(dst.sum()) and torch.equal(old_ids[src], new_ids[dst]):
            new[dst] = old_delta[src]
    return new
