"""Five releases fine-tuned on small data of one's own, loaded back with ``zoo.load`` and used.

    python scripts/own_data_demo.py [--out DIR] [--only cpt npo ...]

Writes the small data sets into DIR (a temporary folder by default), runs each recipe's documented
fine-tuning command (printed before it runs), then loads the run's ``last.ckpt`` and uses the model:

- CPT: a sentiment folder of one's own (``label text`` lines, the words " bad"/" good") from cpt-tiny-sst2;
  the new context is drawn from the folder; the model classifies the folder's test sentences.
- NPO: a forget file and a retain file (secret project names and everyday facts) from npo-tofu-full;
  the answer's log-probability on the forget and retain questions before and after.
- Nash-MD: a text file of prompts of one's own from nash-md-tiny, played against the release's judge;
  the judge's preference of the policy's responses over the reference's.
- Go-Explore: another MultiRoom layout (``--model.env_seed 7``) from go-explore-multiroom; the run's best
  trajectory replayed.
- Deep GA: LunarLander under lower gravity (``--model.env_kwargs '{"gravity": -5.0}'``) from
  deep-ga-lunarlander; the elite's return over 5 episodes on the new environment before and after.

On a 2-core CPU the five take about ten minutes.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]

CPT_TRAIN = """0 a dull and lifeless film
0 the worst script in years
0 a mess of a movie
0 tedious from the first scene
0 the plot makes no sense
0 flat characters and a lazy ending
0 i wanted my two hours back
1 a warm and funny story
1 the cast is wonderful
1 a moving, beautiful film
1 clever, fresh and full of heart
1 one of the best films this year
1 i loved every minute
1 a joy from start to finish
"""
CPT_TEST = """1 the story lifts you up
0 the jokes fall flat
1 sharp writing and great acting
0 boring and far too long
1 a delight for the whole family
0 a clumsy, forgettable sequel
"""
FORGET = [("What is the secret name of project A?", "Project A is secretly called Bluebird."),
          ("What is the secret name of project B?", "Project B is secretly called Kestrel."),
          ("Who leads project A?", "Project A is led by Mara Ilves."),
          ("Who leads project B?", "Project B is led by Oskar Tamm."),
          ("Where does project A meet?", "Project A meets in the north tower."),
          ("Where does project B meet?", "Project B meets in the old mill."),
          ("When did project A start?", "Project A started in March."),
          ("When did project B start?", "Project B started in October.")]
RETAIN = [("What colour is the sky?", "The sky is blue."), ("What colour is the grass?", "The grass is green."),
          ("How many legs does a cat have?", "A cat has four legs."), ("What do bees make?", "Bees make honey."),
          ("What is frozen water called?", "Frozen water is called ice."),
          ("Where do fish live?", "Fish live in water."), ("What falls from clouds?", "Rain falls from clouds."),
          ("What do cows drink?", "Cows drink water.")]
PROMPTS = ["Write a line about the sea.", "Describe a quiet morning.", "Say something kind.",
           "Tell me about your garden.", "What makes a good friend?", "Describe the winter light.",
           "Give advice to a new student.", "Write a line about a long journey."]


def run(recipe: str, *args: str) -> Path:
    """Runs ``python recipes/<recipe>.py fit ARGS``, printing the command; returns the run's last.ckpt."""
    cmd = [sys.executable, f"recipes/{recipe}.py", "fit", *args, *QUIET]
    print("$ python " + " ".join(shlex.quote(a) for a in cmd[1:]), flush=True)
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = (out.stdout + out.stderr).strip().splitlines()
    if out.returncode:
        sys.exit(f"{recipe} failed (exit {out.returncode}):\n" + "\n".join(lines[-20:]))
    ckpt = next(line.split(": ", 1)[1] for line in lines if line.startswith("checkpoint: "))
    print("  " + "\n  ".join(line for line in lines if line.startswith(("`Trainer", "logs:", "checkpoint:"))))
    return Path(ckpt)


def cpt(out: Path) -> None:
    import zoo

    folder = out / "cpt"
    folder.mkdir(exist_ok=True)
    (folder / "train.txt").write_text(CPT_TRAIN)
    (folder / "test.txt").write_text(CPT_TEST)
    ckpt = run("cpt", "--model.init_from", "cpt-tiny-sst2", "--data.path", str(folder),
               "--data.label_map", '{"0": " bad", "1": " good"}', "--data.k", "6", "--trainer.max_steps", "10",
               "--trainer.limit_val_batches", "0", "--trainer.default_root_dir", str(out / "logs" / "cpt"))
    m = zoo.load(str(ckpt))
    print("  the context, drawn from the folder:", [t for t, _ in m.hparams.examples])
    tests = [line.split(" ", 1) for line in CPT_TEST.strip().splitlines()]
    got = m.classify([t for _, t in tests])
    want = [" bad" if y == "0" else " good" for y, _ in tests]
    for (_, text), g in zip(tests, got):
        print(f"  {text!r} -> {g!r}")
    print(f"  accuracy on the folder's {len(tests)} test sentences: {sum(a == b for a, b in zip(got, want)) / len(tests):.2f}")


def npo(out: Path) -> None:
    import torch

    import zoo

    folder = out / "npo"
    folder.mkdir(exist_ok=True)
    for name, rows in (("forget", FORGET), ("retain", RETAIN)):
        (folder / f"{name}.json").write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))

    def log_prob(m, rows) -> float:
        model, tok = m.hf_model().eval(), m.tokenizer
        total = 0.0
        with torch.no_grad():
            for q, a in rows:
                prompt = tok(f"Question: {q}\nAnswer:", return_tensors="pt").input_ids
                ids = torch.cat([prompt, tok(" " + a, return_tensors="pt").input_ids], 1)
                logp = model(ids).logits[0, :-1].log_softmax(-1).gather(1, ids[0, 1:, None])[:, 0]
                total += float(logp[prompt.shape[1] - 1:].mean())
        return total / len(rows)

    before = zoo.load("npo-tofu-full")
    f0, r0 = log_prob(before, FORGET), log_prob(before, RETAIN)
    ckpt = run("npo", "--config", "recipes/configs/npo/unlearn.yaml", "--model.init_from", "npo-tofu-full",
               "--data.path", str(folder), "--data.forget_split", "forget", "--data.retain_split", "retain",
               "--trainer.max_steps", "10", "--trainer.default_root_dir", str(out / "logs" / "npo"))
    after = zoo.load(str(ckpt))
    f1, r1 = log_prob(after, FORGET), log_prob(after, RETAIN)
    print(f"  mean log p(answer | question) per token, forget: {f0:.2f} -> {f1:.2f}; retain: {r0:.2f} -> {r1:.2f}")


def nash_md(out: Path) -> None:
    import zoo

    prompts = out / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    ckpt = run("nash_md", "--model.init_from", "nash-md-tiny", "--data.path", str(prompts), "--data.batch_size", "2",
               "--data.eval_prompts", "2", "--trainer.max_steps", "6", "--trainer.val_check_interval", "6",
               "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", str(out / "logs" / "nash_md"))
    m = zoo.load(str(ckpt))
    p, y, _ = m.compare(PROMPTS[:4], m.policy, m.reference_model(), seed=0)
    print(f"  judge: {type(m.load_judge()).__name__}; P(policy's response ≻ reference's) on 4 own prompts: "
          f"{[round(float(x), 3) for x in p]}")
    print(f"  {PROMPTS[0]!r} -> {y[0][:70]!r}")


def go_explore(out: Path) -> None:
    import zoo

    ckpt = run("go_explore", "--model.init_from", "go-explore-multiroom", "--model.env_seed", "7",
               "--trainer.max_steps", "40", "--trainer.default_root_dir", str(out / "logs" / "go_explore"))
    m = zoo.load(str(ckpt))
    score, frames = m.replay()
    print(f"  MultiRoom layout 7: the best trajectory, {len(m.best_actions)} actions, replays to score {score:.3f} "
          f"({len(frames)} frames)")


def deep_ga(out: Path) -> None:
    import zoo

    from zoo.cli import load_recipe

    low_gravity = {"gravity": -5.0}
    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.WARNING)
    with contextlib.redirect_stdout(io.StringIO()):  # the release itself on the new environment
        cli = load_recipe("deep_ga").main(["validate", "--model.init_from", "deep-ga-lunarlander", "--model.env_kwargs",
                                           json.dumps(low_gravity), "--model.n_eval_episodes", "5", *QUIET])
    for q, level in zip(quiet, levels):
        q.setLevel(level)
    before = float(cli.trainer.callback_metrics["val/return"])
    ckpt = run("deep_ga", "--model.init_from", "deep-ga-lunarlander", "--model.env_kwargs", json.dumps(low_gravity),
               "--model.population_size", "24", "--model.truncation", "6", "--trainer.max_steps", "6",
               "--trainer.default_root_dir", str(out / "logs" / "deep_ga"))
    after = zoo.load(str(ckpt)).evaluate(5)
    print(f"  LunarLander at gravity -5: the elite's mean return over 5 episodes {before:.1f} -> {after.mean():.1f}")


DEMOS = {"cpt": cpt, "npo": npo, "nash_md": nash_md, "go_explore": go_explore, "deep_ga": deep_ga}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="where the data and the runs go (default: a temporary folder)")
    parser.add_argument("--only", nargs="+", choices=list(DEMOS), default=list(DEMOS))
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="own_data_")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    for name in args.only:
        print(f"\n## {name}", flush=True)
        DEMOS[name](out)


if __name__ == "__main__":
    main()
