"""Nash-MD against RLHF at equal distance from μ: a sweep of the regularisation τ for each loss, recording
each final policy's KL(π‖μ) and its win rate against the SFT policy.

    python scripts/bench/nash_md_sweep.py --seeds 0 --not-after 17:30      # trains what the file lacks
    python scripts/bench/nash_md_sweep.py --table --plot docs/nash_md/sweep.png   # the finished runs
    python scripts/bench/nash_md_sweep.py --head-to-head docs/nash_md/head_to_head.jsonl

Each run trains recipes/configs/nash_md/default.yaml (tiny-lm, judged by pref-tiny; RLHF by reward-tiny)
with ``--model.loss LOSS --model.tau τ`` and the seed; then, on the 136 held-out prompts with
``--samples`` responses each (the training's prompt window and length, temperature 1):

- KL(π‖μ): the mean over responses y ∼ π of Σ_n log π(y_n | ·) − log μ(y_n | ·) (μ: tiny-lm, the SFT policy);
- the win rate against the SFT policy, P(y ≻ y_SFT), by the keyword judge (the task's true preference,
  which no policy trained against) and by pref-tiny (the model Nash-MD trained against; RLHF's reward
  model was trained on the same pairs).

One JSON line a run in ``--jsonl`` (loss, tau, seed, steps, kl, the two win rates with their 95 %
intervals over prompts, the last training metrics); a run already in the file is skipped, so the sweep
spans sessions. Each run's checkpoint stays under ``--root`` for head-to-head comparisons at matched KL.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

LOSSES = {"nash_md": [], "nash_md_pg": [], "rlhf": ["--model.preference_model", "reward-tiny"]}
TAUS = (0.01, 0.05, 0.2, 0.5)


def done(path: Path) -> set[tuple[str, float, int]]:
    if not path.exists():
        return set()
    return {(r["loss"], r["tau"], r["seed"]) for r in map(json.loads, path.read_text().splitlines()) if r}


def past(hhmm: str | None) -> bool:
    return hhmm is not None and dt.datetime.now().strftime("%H:%M") >= hhmm


@torch.no_grad()
def measure(model, judge, prompts: list[str], samples: int, seed: int) -> dict:
    """KL(π‖μ) and the win rates against μ on ``prompts``, ``samples`` responses each."""
    from zoo.nash_md import objective as O
    from zoo.nash_md.objective import win_rate_interval
    from zoo.preference.data import keyword_judge

    model.eval()
    g = torch.Generator().manual_seed(seed)
    ids, mask = model.prompts_to_ids(prompts)
    policy, sft = model.policy, model.reference_model()
    kl, by_judge, by_model = [], [], []
    for _ in range(samples):
        y, y_mask = model.generate(policy, ids, mask, g)
        y_sft, _ = model.generate(sft, ids, mask, g)
        logp = model.response_log_probs(policy, ids, mask, y, y_mask)
        ref = model.response_log_probs(sft, ids, mask, y, y_mask)
        kl.append(O.sequence_kl(logp, ref, y_mask))
        a, b = model.decode(y), model.decode(y_sft)
        by_judge.append(keyword_judge(a, b).float())
        by_model.append(judge.preference(prompts, a, b).float())
    out = {"kl": float(torch.stack(kl).mean())}
    for name, values in (("win_rate_judge", by_judge), ("win_rate_pref_tiny", by_model)):
        mean, half = win_rate_interval(torch.stack(values).mean(0))  # per-prompt means, then over prompts
        out[name], out[name + "_ci95"] = mean, half
    return out


def run(loss: str, tau: float, seed: int, root: Path, steps: int | None, samples: int, judge) -> dict:
    from zoo.cli import load_recipe
    from zoo.preference.data import sentence_starts

    extra = ["--trainer.max_steps", str(steps)] if steps else []
    cli = load_recipe("nash_md").main(["fit", "--seed_everything", str(seed), "--model.loss", loss, "--model.tau",
                                       str(tau), *LOSSES[loss], *extra, "--trainer.default_root_dir",
                                       str(root / f"{loss}-{tau}-{seed}"), "--trainer.enable_progress_bar", "false"])
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    record = {"loss": loss, "tau": tau, "seed": seed, "steps": int(cli.trainer.global_step), "samples": samples,
              **measure(cli.model, judge, sentence_starts("eval"), samples, seed=1000 + seed),
              "checkpoint": str(Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"), "training": metrics}
    return record


@torch.no_grad()
def head_to_head(path: Path, samples: int, out: Path) -> str:
    """Each Nash-MD run (both losses) against the RLHF run of its seed whose KL(π‖μ) is nearest, on the
    held-out prompts: P(y_Nash ≻ y_RLHF) by the keyword judge, with its 95 % interval. Written to ``out``."""
    import zoo
    from zoo.nash_md.objective import win_rate_interval
    from zoo.preference.data import keyword_judge, sentence_starts

    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    prompts = sentence_starts("eval")
    lines = ["| Nash-MD run | KL | RLHF run (nearest KL) | KL | P(Nash-MD ≻ RLHF), keyword judge |", "|---|---|---|---|---|"]
    records = []
    for r in (r for r in rows if r["loss"] != "rlhf"):
        rivals = [x for x in rows if x["loss"] == "rlhf" and x["seed"] == r["seed"]]
        if not rivals:
            continue
        rival = min(rivals, key=lambda x: abs(math.log(max(x["kl"], 1e-3) / max(r["kl"], 1e-3))))
        a, b = zoo.load(r["checkpoint"]), zoo.load(rival["checkpoint"])
        ids, mask = a.prompts_to_ids(prompts)
        g = torch.Generator().manual_seed(2000 + r["seed"])
        wins = torch.stack([keyword_judge(a.decode(a.generate(a.policy, ids, mask, g)[0]),
                                          b.decode(b.generate(b.policy, ids, mask, g)[0])).float()
                            for _ in range(samples)]).mean(0)
        mean, half = win_rate_interval(wins)
        records.append({"nash": [r["loss"], r["tau"], r["seed"]], "nash_kl": r["kl"], "rlhf_tau": rival["tau"],
                        "rlhf_kl": rival["kl"], "win_rate_judge": mean, "ci95": half})
        lines.append(f"| {r['loss']} τ={r['tau']} seed {r['seed']} | {r['kl']:.2f} | rlhf τ={rival['tau']} | "
                     f"{rival['kl']:.2f} | {mean:.3f} ± {half:.3f} |")
    out.write_text("".join(json.dumps(x) + "\n" for x in records))
    return "\n".join(lines)


def table(path: Path) -> str:
    rows = sorted((json.loads(line) for line in path.read_text().splitlines() if line),
                  key=lambda r: (r["loss"], r["tau"], r["seed"]))
    out = ["| loss | τ | seed | KL(π‖μ) | win rate vs SFT, keyword judge | by pref-tiny |", "|---|---|---|---|---|---|"]
    out += [f"| {r['loss']} | {r['tau']} | {r['seed']} | {r['kl']:.2f} | {r['win_rate_judge']:.3f} ± "
            f"{r['win_rate_judge_ci95']:.3f} | {r['win_rate_pref_tiny']:.3f} ± {r['win_rate_pref_tiny_ci95']:.3f} |"
            for r in rows]
    return "\n".join(out)


def plot(path: Path, out: Path) -> None:
    """Win rate against the SFT policy (keyword judge) versus KL(π‖μ), one line per loss through its τ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    fig, ax = plt.subplots(figsize=(6, 4))
    for loss in LOSSES:
        mine = sorted((r for r in rows if r["loss"] == loss), key=lambda r: r["kl"])
        if mine:
            ax.errorbar([r["kl"] for r in mine], [r["win_rate_judge"] for r in mine],
                        yerr=[r["win_rate_judge_ci95"] for r in mine], marker="o", capsize=3, label=loss)
            for r in mine:
                ax.annotate(f"τ={r['tau']}", (r["kl"], r["win_rate_judge"]), fontsize=7, xytext=(3, -9),
                            textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("KL(π‖μ), nats (held-out prompts)")
    ax.set_ylabel("win rate against the SFT policy (keyword judge)")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jsonl", type=Path, default=ROOT / "docs" / "nash_md" / "sweep.jsonl")
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES))
    parser.add_argument("--taus", type=float, nargs="+", default=list(TAUS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: default.yaml's)")
    parser.add_argument("--samples", type=int, default=4, help="responses per held-out prompt")
    parser.add_argument("--root", type=Path, default=ROOT / "logs" / "nash_md_sweep")
    parser.add_argument("--not-after", metavar="HH:MM", help="start no run past this local time")
    parser.add_argument("--table", action="store_true", help="only print the table of the finished runs")
    parser.add_argument("--plot", type=Path, help="with --table: draw win rate against KL into this PNG")
    parser.add_argument("--head-to-head", type=Path, metavar="JSONL",
                        help="only compare each Nash-MD policy with the RLHF policy of the nearest KL; results here")
    args = parser.parse_args()
    if args.head_to_head:
        return print(head_to_head(args.jsonl, args.samples, args.head_to_head))
    if args.table:
        if args.plot:
            plot(args.jsonl, args.plot)
        return print(table(args.jsonl))
    torch.set_num_threads(1)
    import zoo

    judge = zoo.load("pref-tiny").eval()
    for seed in args.seeds:
        for tau in args.taus:
            for loss in args.losses:
                if (loss, tau, seed) in done(args.jsonl):
                    continue
                if past(args.not_after):
                    print(f"past {args.not_after}: no new run starts; the same command continues", flush=True)
                    return
                record = run(loss, tau, seed, args.root, args.steps, args.samples, judge)
                args.jsonl.parent.mkdir(parents=True, exist_ok=True)
                with args.jsonl.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(f"{loss} τ={tau} seed {seed}: KL {record['kl']:.2f}, win rate vs SFT {record['win_rate_judge']:.3f} "
                      f"(judge), {record['win_rate_pref_tiny']:.3f} (pref-tiny)", flush=True)


if __name__ == "__main__":
    main()
