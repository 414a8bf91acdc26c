"""Write data/preference/keyword_pairs.jsonl: preference pairs of tiny-lm continuations, labelled by the
keyword judge (zoo/preference/data.py).

    python data/preference/generate.py            # about a minute on one core

Each prompt (the first six words of a sentence of CPython's documentation) is continued twice by
tiny-lm (temperature 1, 24 new tokens); the pair's label is drawn as a person's would be, chosen = y
with probability P*(y ≻ y'). Pairs of the held-out prompts (every tenth) come last, so that the
default validation split (the last tenth of the file) holds prompts never trained on.
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from zoo.lm import left_pad, load_causal_lm, sample  # noqa: E402
from zoo.preference.data import SHIPPED, keyword_judge, sentence_starts  # noqa: E402

PAIRS_PER_PROMPT, MAX_NEW_TOKENS, BATCH = 3, 24, 64


def continuations(model, tokenizer, prompts: list[str], generator: torch.Generator) -> list[str]:
    out = []
    for i in range(0, len(prompts), BATCH):
        ids, mask = left_pad(tokenizer, prompts[i:i + BATCH])
        seq, _ = sample(model, ids, mask, max_new_tokens=MAX_NEW_TOKENS, generator=generator,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        out += tokenizer.batch_decode(seq[:, ids.shape[1]:], skip_special_tokens=True)
    return out


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, tokenizer = load_causal_lm("tiny-lm")
    model.eval()
    g = torch.Generator().manual_seed(0)
    rows = []
    for split in ("train", "eval"):
        prompts = [p for p in sentence_starts(split) for _ in range(PAIRS_PER_PROMPT)]
        y, y_prime = continuations(model, tokenizer, prompts, g), continuations(model, tokenizer, prompts, g)
        p = keyword_judge(y, y_prime)
        first = torch.rand(len(p), generator=g) < p
        for x, a, b, f in zip(prompts, y, y_prime, first.tolist()):
            if a.strip() and b.strip() and a != b:
                rows.append({"prompt": x, "chosen": a if f else b, "rejected": b if f else a})
    SHIPPED.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{SHIPPED}: {len(rows)} pairs")


if __name__ == "__main__":
    main()
