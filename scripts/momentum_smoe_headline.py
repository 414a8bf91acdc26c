"""The MomentumSMoE headline at small scale: SMoE vs MomentumSMoE vs AdamSMoE vs Robust MomentumSMoE, equal
steps and equal parameter count, several seeds, on the embedded corpus (recipes/configs/momentum_smoe/default.yaml).

    python scripts/momentum_smoe_headline.py                    # train every (variant, seed), then report
    python scripts/momentum_smoe_headline.py --collect          # report the runs already in --root
    python scripts/momentum_smoe_headline.py --root logs/h1200 -- --trainer.max_steps 1200
    python scripts/momentum_smoe_headline.py --variants smoe momentum --seeds 0 1 -- --model.norm post
    python scripts/momentum_smoe_headline.py --collect --root logs/a --compare logs/b   # each variant, a − b by seed

Each run is ``python recipes/momentum_smoe.py fit --model.variant V --seed_everything S [flags]`` (one after
the other, one thread each; a run whose metrics.csv exists is not run again). The report: the final validation
perplexity (clean and under the word-swap attack) and expert load entropy, mean ± std over seeds; each
variant against SMoE paired by seed (the same seed gives the same data order and the same initial weights
wherever the parameters coincide): the mean of the per-seed differences with its spread, how many seeds
went each way, and a paired t-test and Wilcoxon signed-rank test (scipy); the per-seed values; and a plot.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.curves import read_metrics  # noqa: E402

NAMES = {"smoe": "SMoE", "momentum": "MomentumSMoE", "adam": "AdamSMoE", "robust": "Robust MomentumSMoE"}
METRICS = ("val/ppl", "val/ppl_attacked", "val/load_entropy")


def run(variant: str, seed: int, root: Path, extra: list[str]) -> None:
    out = root / f"{variant}-{seed}"
    if (out / "version_0" / "metrics.csv").exists():
        return
    cmd = [sys.executable, str(ROOT / "recipes" / "momentum_smoe.py"), "fit", "--model.variant", variant,
           "--seed_everything", str(seed), "--trainer.default_root_dir", str(out),
           "--trainer.enable_progress_bar", "false", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def collect(root: Path, variants: list[str], seeds: list[int]) -> dict:
    out = {}
    for v in variants:
        for s in seeds:
            csv = root / f"{v}-{s}" / "version_0" / "metrics.csv"
            if csv.exists():
                series = read_metrics(csv)
                out[f"{v}-{s}"] = {k: series.get(k, []) for k in (*METRICS, "train/loss")}
    return out


def finals(runs: dict, variant: str, seeds: list[int], metric: str) -> dict[int, float]:
    """{seed: the last logged value of ``metric``} for the runs that have it."""
    return {s: runs[f"{variant}-{s}"][metric][-1][1] for s in seeds
            if f"{variant}-{s}" in runs and runs[f"{variant}-{s}"][metric]}


def mean_sd(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.2f}"


def paired(name: str, a: dict[int, float], b: dict[int, float], metric: str) -> str | None:
    """One row: a − b on ``metric`` over the seeds both have, with a paired t-test and a Wilcoxon signed-rank
    test (whose smallest two-sided p with 5 seeds is 2/2⁵ = 0.0625, all five the same way)."""
    from scipy import stats

    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    d = [a[s] - b[s] for s in common]
    rel = statistics.mean(100 * (a[s] - b[s]) / b[s] for s in common)
    t = stats.ttest_rel([a[s] for s in common], [b[s] for s in common]).pvalue
    w = f"{stats.wilcoxon(d).pvalue:.3f}" if len(common) >= 5 else "–"
    return (f"| {name} | {metric} | {len(common)} | {mean_sd(d)} | {rel:+.1f} % | {sum(x < 0 for x in d)} / {len(common)} "
            f"| {t:.3f} | {w} |")


def report(runs: dict, variants: list[str], seeds: list[int]) -> str:
    rows = ["| model | seeds | val ppl ↓ | val ppl, word-swap attack ↓ | expert load entropy (nats) |",
            "|---|---|---|---|---|"]
    for v in variants:
        cells = [list(finals(runs, v, seeds, m).values()) for m in METRICS]
        if cells[0]:
            rows.append(f"| {NAMES[v]} | {len(cells[0])} | " + " | ".join(mean_sd(xs) for xs in cells) + " |")
    rows += ["", "| model − SMoE, paired by seed | metric | seeds | difference | relative | seeds lower | "
             "t-test p | Wilcoxon p |", "|---|---|---|---|---|---|---|---|"]
    for v in variants:
        if v != "smoe":
            rows += [r for m in ("val/ppl", "val/ppl_attacked")
                     if (r := paired(NAMES[v], finals(runs, v, seeds, m), finals(runs, "smoe", seeds, m), m))]
    rows += ["", "| seed | " + " | ".join(f"{NAMES[v]} (clean / attack)" for v in variants) + " |",
             "|---|" + "---|" * len(variants)]
    for s in seeds:
        cells = []
        for v in variants:
            r = runs.get(f"{v}-{s}")
            cells.append(f"{r['val/ppl'][-1][1]:.1f} / {r['val/ppl_attacked'][-1][1]:.1f}" if r and r["val/ppl"] else "–")
        rows.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def compare(runs: dict, other: dict, variants: list[str], seeds: list[int], label: str) -> str:
    """Each variant here against the same variant in ``other`` (another --root), paired by seed."""
    rows = [f"| model: this − {label}, paired by seed | metric | seeds | difference | relative | seeds lower | "
            "t-test p | Wilcoxon p |", "|---|---|---|---|---|---|---|---|"]
    for v in variants:
        rows += [r for m in ("val/ppl", "val/ppl_attacked")
                 if (r := paired(NAMES[v], finals(runs, v, seeds, m), finals(other, v, seeds, m), m))]
    return "\n".join(rows)


def plot(runs: dict, variants: list[str], seeds: list[int], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, v in enumerate(variants):
        for s in seeds:
            r = runs.get(f"{v}-{s}")
            if not r:
                continue
            for ax, m in zip(axes, ("val/ppl", "val/ppl_attacked")):
                steps, vals = zip(*r[m])
                ax.plot(steps, vals, color=f"C{i}", alpha=0.7, label=NAMES[v] if s == seeds[0] else None)
    for ax, m in zip(axes, ("validation perplexity", "validation perplexity under word-swap attack")):
        ax.set_xlabel("step")
        ax.set_title(m)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(NAMES), choices=list(NAMES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--root", type=Path, default=ROOT / "logs" / "momentum_smoe_headline")
    p.add_argument("--png", type=Path, default=None, help="the plot (default: curves.png in --root)")
    p.add_argument("--collect", action="store_true", help="only report the runs already in --root")
    p.add_argument("--compare", type=Path, default=None, help="another --root: each variant, this − that, by seed")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="-- then flags for every run")
    args = p.parse_args()
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    if not args.collect:
        for s in args.seeds:
            for v in args.variants:
                run(v, s, args.root, extra)
    runs = collect(args.root, args.variants, args.seeds)
    args.root.mkdir(parents=True, exist_ok=True)
    (args.root / "summary.json").write_text(json.dumps(runs))
    print(report(runs, args.variants, args.seeds))
    if args.compare is not None:
        print()
        print(compare(runs, collect(args.compare, args.variants, args.seeds), args.variants, args.seeds,
                      args.compare.name))
    png = args.png or args.root / "curves.png"
    plot(runs, args.variants, args.seeds, png)
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
