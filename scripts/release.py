"""Train a recipe and release it as checkpoints/<id>/, registered in checkpoints/registry.json.

    python scripts/release.py op-gfn-hypergrid --data "2-D 8×8 hypergrid" --headline val/l1 \\
        -- fit --config recipes/configs/op_gfn/default.yaml

Writes the weights (model.safetensors, or the method's own format), hparams.yaml, manifest.json (the
sha256 of every file the release loads from), metrics.json, curve.png and card.md (the exact command,
seed, package versions, git commit and the measured metrics), and pins the manifest's sha256 in the
registry. Release from a clean tree: the card names the commit that reproduces the release.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo import hub  # noqa: E402
from zoo.cards import card, git_commit  # noqa: E402
from zoo.cli import load_recipe, method_of  # noqa: E402
from zoo.curves import plot_curve  # noqa: E402

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     usage="%(prog)s ID --data DATA --headline METRIC [--method M] -- RECIPE ARGS")
    parser.add_argument("id", help="release id, method-data (e.g. op-gfn-hypergrid)")
    parser.add_argument("--method", help="recipe name (recipes/<method>.py); taken from the id's prefix if omitted")
    parser.add_argument("--data", required=True, help="what the model was trained on, one line")
    parser.add_argument("--headline", required=True, help="the metric the registry table shows")
    parser.add_argument("--licence", default="MIT (weights); data as stated", help="licence line for the card")
    parser.add_argument("--curve-from", nargs="+", type=Path, metavar="CSV",
                        help="the metrics.csv logs to plot, oldest first, instead of this run's: for a release that "
                             "resumes a finished run's checkpoint (--ckpt_path), the logs of that run's versions")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="release from a tree with uncommitted changes (the card says so); for trials only")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, recipe_args = parser.parse_args(argv[:split]), argv[split + 1:]
    if not recipe_args:
        parser.error("give the recipe's arguments after --, e.g. -- fit --config recipes/configs/op_gfn/default.yaml")
    parts = args.id.split("-")  # the longest prefix of the id that names a recipe: op-gfn-x -> op_gfn
    method = args.method or next((m for m in ("_".join(parts[:k]) for k in range(len(parts), 0, -1))
                                  if (ROOT / "recipes" / f"{m}.py").exists()), None)
    if method is None:
        parser.error(f"no recipe matches the id {args.id!r}: pass --method")
    missing = [str(f) for f in args.curve_from or () if not f.is_file()]
    if missing:
        parser.error(f"--curve-from: no such file {', '.join(missing)}")
    out = hub.CHECKPOINTS / args.id
    commit = git_commit()  # the code that trains the release: taken now, before training starts
    if commit.endswith("(with uncommitted changes)") and not args.allow_dirty:
        parser.error("the tree has uncommitted changes: commit them first, so that the card's commit reproduces "
                     "the release (or pass --allow-dirty for a trial)")

    with tempfile.TemporaryDirectory() as tmp:
        cli = load_recipe(method).main([*recipe_args, "--trainer.default_root_dir", tmp])
        model, trainer = cli.model.cpu().eval(), cli.trainer
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k != "loss" and math.isfinite(float(v))}
        metrics.update(model.release_metrics())  # further measurements a method makes of its final model
        if args.headline not in metrics:
            raise SystemExit(f"--headline {args.headline!r} was not measured; measured: {sorted(metrics)}")
        manifest = hub.save(model, out)
        log_dir = Path(trainer.loggers[0].log_dir)
        plot_curve(args.curve_from or log_dir / "metrics.csv", out / "curve.png", getattr(model, "curve_metrics", ()), args.id)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    command = "python recipes/{}.py {}".format(method, shlex.join(recipe_args))
    seed = cli.config[cli.subcommand].get("seed_everything")
    base = json.loads((out / "base.json").read_text()) if (out / "base.json").is_file() else None  # an adapter's base
    (out / "card.md").write_text(card(args.id, method_of(type(model)), args.data, command, seed, metrics, model, args.licence,
                                     commit, base=base))

    registry = hub.registry()
    registry[args.id] = {"path": args.id, "method": method, "data": args.data,
                         "headline": {"name": args.headline, "value": float(f"{metrics[args.headline]:.4g}")},
                         "manifest": manifest}
    hub.REGISTRY.parent.mkdir(exist_ok=True)
    hub.REGISTRY.write_text(json.dumps(dict(sorted(registry.items())), indent=2) + "\n")
    print(f"released {args.id} -> {out} ({args.headline} = {metrics[args.headline]:.6g})")


if __name__ == "__main__":
    main()
