"""The NPO headline on TOFU: every objective on forget01, forget05 and forget10, several seeds.

    python scripts/npo_headline.py --data ../shared/data/tofu --base npo-tofu-full \\
        --retain-model RETAIN.ckpt --out docs/npo [--objectives ga npo npo_rt] [--seeds 0 1 2]
    python scripts/npo_headline.py --config recipes/configs/npo/smollm2_unlearn.yaml --base npo-smollm2-tofu-full \\
        --splits forget01 forget05 --retain-model forget01=R99.json forget05=R95.json --out docs/npo/smollm2

Each run is ``python recipes/npo.py fit --config recipes/configs/npo/tofu.yaml`` (``--config``) with the split's
step count (``epochs × n // batch``, as the official code counts), evaluated every ``--eval-every``
epochs. Results are appended to OUT/headline.jsonl as they finish (a run already there is skipped,
so the script resumes); ``--report`` writes OUT/headline.md (mean ± std over seeds) and
OUT/headline.png (model utility and retain utility against forget quality over the unlearning
steps, each objective's lowest seed; a star marks each run's end, the square the fine-tuned model it starts from).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"forget01": 40, "forget05": 200, "forget10": 400}
NAMES = {"start": "fine-tuned (before)", "ga": "GA", "gd": "GD", "ga_kl": "GA+KL", "npo": "NPO", "npo_rt": "NPO+RT", "npo_kl": "NPO+KL"}


def retain_model(args, split: str) -> str:
    """The retain model of ``split``: the one given for it (``split=path``), else the one given for every split."""
    given = dict(item.split("=", 1) if "=" in item else ("*", item) for item in args.retain_model or [])
    if split not in given and "*" not in given:
        raise SystemExit(f"--retain-model: none for {split} (give PATH, or {split}=PATH)")
    return given.get(split, given.get("*"))


def evaluation(args) -> list[str]:
    return ["--model.eval_size", str(args.eval_size), "--model.max_new_tokens", str(args.max_new_tokens)]


def run(args, split: str, objective: str, seed: int) -> dict:
    from tests.conftest import load_recipe

    steps_per_epoch = max(1, SIZES[split] // args.batch_size)
    steps = max(1, args.epochs * SIZES[split] // args.batch_size)
    every = max(1, args.eval_every * steps_per_epoch)
    with tempfile.TemporaryDirectory() as tmp:
        cli = load_recipe("npo").main([
            "fit", "--config", args.config, "--trainer.default_root_dir", tmp,
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--seed_everything", str(seed), "--data.path", args.data, "--data.forget_split", split,
            "--model.base", args.base, "--model.retain_model", retain_model(args, split), "--model.objective", objective,
            *(["--model.lr", str(args.lr)] if args.lr is not None else []),
            "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(every),
            "--checkpoint.every_n_train_steps", str(steps), "--data.batch_size", str(args.batch_size), *evaluation(args)])
        curve, log = [], Path(cli.trainer.loggers[0].log_dir) / "metrics.csv"
        with open(log) if log.exists() else open("/dev/null") as f:
            for row in csv.DictReader(f):
                if row.get("val/forget_quality"):
                    curve.append({"step": int(row["step"]) + 1, "forget_quality": float(row["val/forget_quality"]),
                                  "model_utility": float(row["val/model_utility"]),
                                  "retain_utility": float(row["val/retain_utility"]),
                                  "forget_prob": float(row["val/forget_prob"])})
    final = cli.model.release_metrics()
    return {"split": split, "objective": objective, "seed": seed, "steps": steps, "lr": cli.model.hparams.lr, "base": args.base,
            "final": {k.removeprefix("val/"): v for k, v in final.items()}, "curve": curve}


def start(args, split: str) -> dict:
    """TOFU's metrics of the fine-tuned model itself on a split: where every curve starts."""
    from tests.conftest import load_recipe

    with tempfile.TemporaryDirectory() as tmp:
        cli = load_recipe("npo").main([
            "validate", "--config", args.config, "--trainer.default_root_dir", tmp,
            "--trainer.enable_progress_bar", "false", "--data.path", args.data, "--data.forget_split", split,
            "--model.base", args.base, "--model.retain_model", retain_model(args, split), *evaluation(args)])
        m = cli.model.last_eval["metrics"]
    return {"split": split, "objective": "start", "seed": 0, "final": m, "base": args.base,
            "curve": [{"step": 0, **{k: m[k] for k in ("forget_quality", "model_utility", "retain_utility", "forget_prob")}}]}


def report(out: Path) -> None:
    rows = [json.loads(x) for x in (out / "headline.jsonl").read_text().splitlines() if x.strip()]
    # one row per (split, objective, seed): two processes sharing the file may both have written a start
    rows = list({(r["split"], r["objective"], r["seed"]): r for r in rows}.values())
    lines = ["| objective | split | seeds | forget quality | model utility | retain utility | forget ROUGE-L | "
             "forget probability | retain probability |", "|---|---|---|---|---|---|---|---|---|"]
    for split in SIZES:
        for obj in NAMES:
            rs = [r for r in rows if r["split"] == split and r["objective"] == obj]
            if not rs:
                continue

            def ms(key):
                v = [r["final"][key] for r in rs]
                if len(v) == 1:
                    return f"{v[0]:.3g}"
                return f"{statistics.mean(v):.3g} ± {statistics.stdev(v):.2g}"
            lines.append(f"| {NAMES[obj]} | {split} | {len(rs)} | {ms('forget_quality')} | {ms('model_utility')} | "
                         f"{ms('retain_utility')} | {ms('forget_rouge')} | {ms('forget_prob')} | {ms('retain_prob')} |")
    (out / "headline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in SIZES if any(r["split"] == s for r in rows)]
    utilities = [("model_utility", "model utility (TOFU: hmean of 9 values)"),
                 ("retain_utility", "retain utility (hmean of the retain set's 3)")]
    fig, axes = plt.subplots(2, len(splits), figsize=(4.8 * len(splits), 8.0), squeeze=False)
    for col, split in enumerate(splits):
        first = [x["curve"][0] for x in rows if x["split"] == split and x["objective"] == "start"]
        for row, (key, label) in enumerate(utilities):
            ax = axes[row][col]
            for obj in list(NAMES)[1:]:
                rs = [r for r in rows if r["split"] == split and r["objective"] == obj and r["curve"]]
                if not rs:
                    continue
                r = min(rs, key=lambda r: r["seed"])
                curve = first + r["curve"]
                fq = [max(c["forget_quality"], 1e-30) for c in curve]
                mu = [c[key] for c in curve]
                line, = ax.plot(fq, mu, marker="o", ms=3, label=f"{NAMES[obj]} (seed {r['seed']})")
                ax.plot(fq[-1:], mu[-1:], marker="*", ms=10, color=line.get_color())
            if first:
                ax.plot([first[0]["forget_quality"]], [first[0][key]], marker="s", ms=7, color="black",
                        label=NAMES["start"], linestyle="none")
            ax.set_xscale("log")
            ax.set_xlabel("forget quality (KS p-value, log)")
            ax.set_ylabel(label, fontsize=8)
            bases = sorted({r.get("base", "npo-tofu-full") for r in rows if r["split"] == split})
            ax.set_title(f"{', '.join(bases)} on TOFU {split}")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "headline.png", dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tofu"))
    p.add_argument("--base", default="npo-tofu-full")
    p.add_argument("--config", default=str(ROOT / "recipes/configs/npo/tofu.yaml"), help="the runs' recipe config")
    p.add_argument("--retain-model", nargs="+", default=None,
                   help="the retain model (a .ckpt, folder or truth_ratios.json), or one per split: forget05=PATH ...")
    p.add_argument("--splits", nargs="+", default=list(SIZES))
    p.add_argument("--objectives", nargs="+", default=list(NAMES)[1:])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=2, help="epochs between evaluations")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="the learning rate (default: the config's)")
    p.add_argument("--eval-size", type=int, default=300, help="items of each evaluation set (TOFU: 300)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--out", default=str(ROOT / "docs" / "npo"))
    p.add_argument("--report", action="store_true", help="only write the table and the plot from OUT/headline.jsonl")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        import torch

        torch.set_num_threads(1)
        done_file = out / "headline.jsonl"
        done = set()
        if done_file.exists():
            done = {(r["split"], r["objective"], r["seed"]) for r in map(json.loads, done_file.read_text().splitlines())}
        for split in args.splits:
            if (split, "start", 0) not in done:
                r = start(args, split)
                with open(done_file, "a") as f:
                    f.write(json.dumps(r) + "\n")
        for seed in args.seeds:
            for obj in args.objectives:
                for split in args.splits:
                    if (split, obj, seed) in done:
                        continue
                    r = run(args, split, obj, seed)
                    with open(done_file, "a") as f:
                        f.write(json.dumps(r) + "\n")
                    fin = r["final"]
                    print(f"{split} {obj} seed {seed}: forget quality {fin.get('forget_quality', math.nan):.3g}, "
                          f"model utility {fin['model_utility']:.3g}", flush=True)
    report(out)


if __name__ == "__main__":
    main()
