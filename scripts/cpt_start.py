"""CPT against its own start: CPT before any step is in-context learning (ICL) on the same context, so a
trained CPT below it has been made worse by its training. For each draw of k examples this measures the
untrained start and CPT after training under one or more settings, on a balanced test set, with each
model's share of answers per class (a model that drifts to one answer shows it there).

    python scripts/cpt_start.py --data sst2_smollm2 --draws 0 1 --variants paper hide=hide_own_example:true \\
        --out docs/cpt/start.jsonl
    python scripts/cpt_start.py --table docs/cpt/start.jsonl

``--data`` is a config of recipes/configs/cpt/ (base model, templates, label words, data path; its lr, ε
and γ are the "paper" variant's); a variant is ``name`` or ``name=key:value,key:value`` with model
settings overriding the config's (``paper`` alone: the config as it is); ``select:true`` chooses lr, ε and
steps by cross-validation on the k examples (zoo/cpt/select.py; candidates from the --select_* options). The test set is
``--per_class`` sentences of each class of the test split, drawn once with a fixed seed, the same for
every draw and variant. One JSON line per (draw, variant) in ``--out``, the start as variant ``start``;
lines already there are skipped.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition("=")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition(":")
        overrides[key] = yaml.safe_load(value)
    return name, overrides


def balanced_folder(config: dict, per_class: int, where: Path) -> Path:
    """A folder with the config's train split and ``per_class`` test examples of each label."""
    from zoo.cpt.data import read_folder, resolve_path

    data = config["data"]
    splits = read_folder(str(resolve_path(data["path"])), data.get("encoding", "utf-8"), data["label_map"])
    rng = random.Random(12345)
    test = []
    for label in data["label_map"]:
        rows = [r for r in splits["test"] if r[1] == label]
        test += rng.sample(rows, min(per_class, len(rows)))
    for name, rows in (("train", splits["train"]), ("test", test)):
        (where / f"{name}.txt").write_text("".join(f"{label} {text}\n" for text, label in rows))
    return where


@torch.no_grad()
def evaluate(model, dm) -> dict:
    """Accuracy and the share of answers per class on the test split."""
    model.eval()
    model._share_context(True)
    preds, labels = [], []
    for batch in dm.test_dataloader():
        preds.append(model.scores(batch).argmax(-1))
        labels.append(batch["label"])
    model._share_context(False)
    model.train()
    preds, labels = torch.cat(preds), torch.cat(labels)
    words = model.hparams.label_words
    return {"acc": float((preds == labels).float().mean()),
            "answers": {w: float((preds == i).float().mean()) for i, w in enumerate(words)}}


def run(config: dict, folder: Path, k: int, draw: int, steps: int, overrides: dict, rule: dict) -> tuple[dict, dict]:
    """(the untrained start, the trained model) evaluated for one draw and one setting; with ``select: true``
    among the overrides, lr, ε and steps are first chosen from the k examples by zoo/cpt/select.py (``rule``)."""
    import lightning as L

    from zoo.cpt import CPT, FewShotDataModule
    from zoo.cpt.select import select

    overrides = dict(overrides)
    selecting = overrides.pop("select", False)
    model_args = {**config["model"], "method": "cpt", **overrides}
    data_args = {**config["data"], "path": str(folder), "k": k, "draw_seed": draw, "val_size": 0, "test_size": None}
    L.seed_everything(draw, verbose=False)
    model, dm = CPT(**model_args), FewShotDataModule(**data_args)
    dm.setup("fit", model)
    start = evaluate(model, dm)
    counts = {w: sum(1 for _, y in model.hparams.examples if y == w) for w in model.hparams.label_words}
    began = time.time()
    chosen = None
    if selecting:
        best, _ = select(model_args, [tuple(e) for e in model.hparams.examples], list(model.hparams.label_words),
                         rule["lrs"], rule["epsilons"], rule["steps"], rule["folds"], data_args.get("batch_size", 4), draw)
        chosen = {"lr": best.lr, "epsilon": best.epsilon, "format_epsilon": best.format_epsilon, "steps": best.steps,
                  "cv_acc": best.acc, "cv_nll": best.nll, "select_s": round(time.time() - began, 1)}
        print(f"draw {draw}: chose {chosen}", flush=True)
        steps = best.steps
        L.seed_everything(draw, verbose=False)
        model = CPT(**{**model_args, "lr": best.lr, "epsilon": best.epsilon, "format_epsilon": best.format_epsilon,
                       "examples": model.hparams.examples, "label_words": model.hparams.label_words})
        dm = FewShotDataModule(**data_args)
        dm.setup("fit", model)
        if steps == 0:
            return {**start, "context_labels": counts}, {**start, "chosen": chosen, "fit_s": 0.0, "losses": []}
    quiet = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                 enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, max_steps=steps)
    losses = []

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(round(float(outputs["loss"]), 4))

    L.Trainer(callbacks=[Losses()], **quiet).fit(model, dm)
    trained = {**evaluate(model, dm), "fit_s": round(time.time() - began, 1), "losses": losses,
               "delta_norm": float(model.prompt().delta_embedding.weight.norm(dim=-1).max())}
    if chosen is not None:
        trained["chosen"] = chosen
    return {**start, "context_labels": counts}, trained


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = []
    for data in dict.fromkeys(r["data"] for r in rows):
        mine = [r for r in rows if r["data"] == data]
        variants = [v for v in dict.fromkeys(r["variant"] for r in mine) if v != "start"]
        draws = sorted({r["draw"] for r in mine})
        out.append(f"**{data}**, k = {mine[0]['k']}, {mine[0]['test_n']} test sentences (accuracy %; answers: "
                   "share of the first label word)\n")
        out.append("| draw | context labels | start (ICL) | " + " | ".join(variants) + " |")
        out.append("|---|---|---|" + "---|" * len(variants))
        for d in draws:
            cell = {r["variant"]: r for r in mine if r["draw"] == d}
            start = cell.get("start")
            if start is None:
                continue
            first = next(iter(start["answers"]))
            def fmt(r):
                if r is None:
                    return "–"
                return f"{100 * r['acc']:.1f} ({100 * r['answers'][first]:.0f} %)"
            out.append(f"| {d} | {'/'.join(str(v) for v in start['context_labels'].values())} | {fmt(start)} | "
                       + " | ".join(fmt(cell.get(v)) for v in variants) + " |")
        for v in variants:
            diffs = [100 * (r["acc"] - s["acc"]) for r in mine if r["variant"] == v
                     for s in mine if s["variant"] == "start" and s["draw"] == r["draw"]]
            if diffs:
                out.append(f"\n{v}: CPT − start {statistics.mean(diffs):+.1f} points on average, "
                           f"min {min(diffs):+.1f}, max {max(diffs):+.1f} (n = {len(diffs)})")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sst2_smollm2", help="a config of recipes/configs/cpt/")
    parser.add_argument("--label_map", type=json.loads, help="label words other than the config's (JSON)")
    parser.add_argument("--draws", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--per_class", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--variants", nargs="+", default=["paper"])
    parser.add_argument("--select_lrs", nargs="+", type=float, default=[3e-3, 3e-2],
                        help="a variant with select:true chooses among these learning rates ...")
    parser.add_argument("--select_epsilons", nargs="+", default=["0.2/0.1"], help="... these ε/ε_format ...")
    parser.add_argument("--select_steps", nargs="+", type=int, default=[0, 25, 50], help="... and steps (0: ICL)")
    parser.add_argument("--select_folds", type=int, default=2, help="... by cross-validation on the k examples")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "cpt" / "start.jsonl")
    parser.add_argument("--table", type=Path, help="print the table of a results file and stop")
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return
    torch.set_num_threads(1)
    config = yaml.safe_load((ROOT / "recipes" / "configs" / "cpt" / f"{args.data}.yaml").read_text())
    if args.label_map:
        config["data"]["label_map"] = args.label_map
    name = args.data + ("" if not args.label_map else "+" + "/".join(w.strip() for w in args.label_map.values()))
    done = set()
    if args.out.exists():
        done = {(r["data"], r["draw"], r["variant"]) for r in map(json.loads, args.out.read_text().splitlines()) if r}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = balanced_folder(config, args.per_class, Path(tmp))
        test_n = len((folder / "test.txt").read_text().splitlines())
        for draw in args.draws:
            for text in args.variants:
                variant, overrides = parse_variant(text)
                if (name, draw, variant) in done:
                    continue
                rule = {"lrs": args.select_lrs, "steps": args.select_steps, "folds": args.select_folds,
                        "epsilons": [tuple(float(x) for x in e.split("/")) for e in args.select_epsilons]}
                start, trained = run(config, folder, args.k, draw, args.steps, overrides, rule)
                common = {"data": name, "k": args.k, "draw": draw, "test_n": test_n}
                lines = []
                if (name, draw, "start") not in done:
                    lines.append({**common, "variant": "start", **start})
                    done.add((name, draw, "start"))
                lines.append({**common, "variant": variant, "overrides": overrides, "steps": args.steps, **trained})
                with args.out.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in lines)
                print(f"{name} draw {draw}: start {start['acc']:.3f} {start['answers']} → {variant} "
                      f"{trained['acc']:.3f} {trained['answers']} ({trained['fit_s']} s)", flush=True)


if __name__ == "__main__":
    main()
