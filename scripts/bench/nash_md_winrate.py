"""The language-model headline: pairwise win rates of Nash-MD, RLHF and the SFT policy (tiny-lm), by the
preference model pref-tiny and by the true keyword judge, with 95 % intervals, over seeds.

    python scripts/bench/nash_md_winrate.py --seeds 0 1 2          # trains 2 policies per seed (default.yaml)

For each seed it trains Nash-MD (recipes/configs/nash_md/default.yaml) and RLHF (the same config with
--model.loss rlhf --model.preference_model reward-tiny), then on the 136 held-out prompts draws
``--samples`` responses per prompt from each policy (temperature 1) and scores every comparison: the
per-prompt mean of P(y_A ≻ y_B | x). A cell reports the mean over prompts and seeds, the normal 95 %
interval over prompts (seeds pooled), and the spread of the per-seed means. Writes
docs/nash_md/winrate.json and winrate.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from zoo.cli import load_recipe  # noqa: E402
from zoo.lm import left_pad, sample  # noqa: E402
from zoo.nash_md.objective import win_rate_interval  # noqa: E402
from zoo.preference.data import keyword_judge, sentence_starts  # noqa: E402

RUNS = {"Nash-MD": ["--model.loss", "nash_md"],
        "Nash-MD-PG": ["--model.loss", "nash_md_pg"],
        "self-play": ["--model.loss", "self_play"],
        "RLHF": ["--model.loss", "rlhf", "--model.preference_model", "reward-tiny"]}


def train(name: str, seed: int, steps: int | None, root: Path):
    recipe = load_recipe("nash_md")
    extra = ["--trainer.max_steps", str(steps)] if steps else []
    cli = recipe.main(["fit", "--seed_everything", str(seed), *RUNS[name], *extra, "--trainer.default_root_dir",
                       str(root), "--trainer.enable_progress_bar", "false"])
    return cli.model.policy.eval(), cli.model.tokenizer, {k: float(v) for k, v in cli.trainer.callback_metrics.items()}


@torch.no_grad()
def responses(policy, tokenizer, prompts: list[str], samples: int, seed: int) -> list[list[str]]:
    """``samples`` lists of one response per prompt (as in training: the prompt's last 16 tokens, 24 new ones)."""
    g = torch.Generator().manual_seed(seed)
    ids, mask = left_pad(tokenizer, prompts)
    ids, mask = ids[:, -16:], mask[:, -16:]
    out = []
    for _ in range(samples):
        seq, _ = sample(policy, ids, mask, max_new_tokens=24, generator=g, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
        out.append(tokenizer.batch_decode(seq[:, ids.shape[1]:], skip_special_tokens=True))
    return out


@torch.no_grad()
def compare(judge, prompts, a: list[list[str]], b: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt mean of P(y_a ≻ y_b) under the preference model and under the keyword judge."""
    model = torch.stack([judge.preference(prompts, ya, yb) for ya, yb in zip(a, b)]).mean(0)
    true = torch.stack([keyword_judge(ya, yb) for ya, yb in zip(a, b)]).mean(0)
    return model, true


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--policies", nargs="+", default=["Nash-MD", "RLHF"], choices=list(RUNS))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: default.yaml's)")
    parser.add_argument("--samples", type=int, default=4, help="responses per prompt and policy")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "nash_md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from zoo.lm import load_causal_lm

    judge = zoo.load("pref-tiny").eval()
    sft, tokenizer = load_causal_lm("tiny-lm")
    sft.eval()
    prompts = sentence_starts("eval")
    pairs = [(a, b) for i, a in enumerate(args.policies) for b in [*args.policies[i + 1:], "SFT"]]
    per_prompt = {f"{a} vs {b}": {"model": [], "judge": []} for a, b in pairs}
    seed_means = {k: {"model": [], "judge": []} for k in per_prompt}
    training = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            policies = {"SFT": sft}
            for name in args.policies:
                policies[name], _, metrics = train(name, seed, args.steps, Path(tmp) / f"{name}-{seed}")
                training[f"{name} seed {seed}"] = metrics
                print(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())), flush=True)
            drawn = {name: responses(p, tokenizer, prompts, args.samples, seed=1000 + seed) for name, p in policies.items()}
            for a, b in pairs:
                model, true = compare(judge, prompts, drawn[a], drawn[b])
                key = f"{a} vs {b}"
                per_prompt[key]["model"].append(model)
                per_prompt[key]["judge"].append(true)
                seed_means[key]["model"].append(float(model.mean()))
                seed_means[key]["judge"].append(float(true.mean()))
                print(f"  seed {seed} {key}: preference model {float(model.mean()):.3f}, judge {float(true.mean()):.3f}", flush=True)
    table, lines = {}, ["| comparison | win rate by pref-tiny | by the keyword judge |", "|---|---|---|"]
    for key, v in per_prompt.items():
        cells = []
        for which in ("model", "judge"):
            mean, half = win_rate_interval(torch.cat(v[which]))
            spread = statistics.stdev(seed_means[key][which]) if len(args.seeds) > 1 else float("nan")
            table.setdefault(key, {})[which] = {"mean": mean, "ci95": half, "seed_std": spread,
                                                 "per_seed": seed_means[key][which]}
            cells.append(f"{mean:.3f} ± {half:.3f} (seeds: ± {spread:.3f})")
        lines.append(f"| {key} | {cells[0]} | {cells[1]} |")
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "winrate.json").write_text(json.dumps({"seeds": args.seeds, "samples_per_prompt": args.samples,
                                                       "prompts": len(prompts), "steps": args.steps, "table": table,
                                                       "training": training}, indent=2) + "\n")
    (args.out / "winrate.md").write_text(
        f"Win rate P(A ≻ B) on {len(prompts)} held-out prompts × {args.samples} samples, seeds {args.seeds}: "
        "mean, ± the 95 % interval over prompts (seeds pooled), and the spread (std) of the per-seed means.\n\n"
        + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
