"""Nash-MD side by side with TRL 1.13.0's NashMDTrainer: training steps per second, and the loss on one
fixed batch.

    python scripts/bench/nash_md.py                        # lengths 16 32 64 128, 8 timed steps each
    python scripts/bench/nash_md.py --lengths 32 --steps 4

Both train tiny-lm with the same prompts (sentence starts of CPython's documentation), batch, generation
length, temperature 1, β (mixture_coef) and τ (TRL's beta), each judged by a Bradley–Terry reward model
of the same size (tiny-lm's transformer with a linear head; TRL: GPT2ForSequenceClassification), on one
CPU thread, each in its own process, in float32 (TRL's configs default to bf16 autocast, switched off here so
that both compute the same thing). TRL is installed at its pin into a separate virtual environment
(``--venv``, default .bench/trl: private to the checkout, ignored by git) that sees the project's
torch and transformers through a .pth file; the project never imports it. Steps/s is the median over the timed steps after two warm-up steps.

The fixed batch: the same prompt and completion tokens and the same preference probabilities go through
TRL's ``_compute_logprobs`` and ``_compute_losses`` and through zoo's ``response_log_probs`` and
``nash_md_loss`` (the loss whose KL term is TRL's estimator); the two losses should agree to float error.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
TRL_PIN = "trl==1.13.0"
TINY_LM = ROOT / "checkpoints" / "tiny-lm"

TRL_WORKER = r'''
import json, statistics, sys, time, tempfile
import torch
torch.set_num_threads(1)
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
from trl.experimental.nash_md import NashMDConfig, NashMDTrainer

cfg = json.loads(sys.argv[1])
torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(cfg["model"])
tok.padding_side = "left"
model = AutoModelForCausalLM.from_pretrained(cfg["model"])
reward = AutoModelForSequenceClassification.from_pretrained(cfg["model"], num_labels=1)
reward.config.pad_token_id = tok.pad_token_id
times = []

class Clock(TrainerCallback):
    def on_step_begin(self, args, state, control, **kw):
        self.t = time.perf_counter()
    def on_step_end(self, args, state, control, **kw):
        times.append(time.perf_counter() - self.t)

args = NashMDConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=cfg["batch"], max_steps=cfg["steps"],
                    max_new_tokens=cfg["length"], temperature=1.0, beta=[cfg["tau"]], mixture_coef=[cfg["beta"]],
                    learning_rate=cfg["lr"], use_cpu=True, report_to="none", logging_steps=10**6,
                    save_strategy="no", seed=0, dataloader_num_workers=0, bf16=False)
trainer = NashMDTrainer(model=model, reward_funcs=reward, args=args, processing_class=tok,
                        train_dataset=Dataset.from_dict({"prompt": cfg["prompts"]}), callbacks=[Clock()])
fixed = cfg.get("fixed")
loss = None
if fixed is not None:
    ids = torch.tensor(fixed["prompt_ids"]); comp = torch.tensor(fixed["completion_ids"])
    data = {"input_ids": torch.cat([ids, comp], 1), "attention_mask": torch.ones(ids.shape[0], ids.shape[1] + comp.shape[1], dtype=torch.long)}
    with torch.no_grad():
        lp, ref_lp = trainer._compute_logprobs(trainer.model, data, ids.shape[1])
        loss = float(trainer._compute_losses(lp, ref_lp, torch.tensor(fixed["probability"]))[0])
if cfg["steps"] > 0:
    trainer.train()
print("RESULT " + json.dumps({"times": times, "loss": loss}))
'''

ZOO_WORKER = r'''
import json, sys, time
import torch
torch.set_num_threads(1)
import lightning as L
from zoo.nash_md import NashMD, PromptData
from zoo.nash_md import objective as O
from zoo.preference import PreferenceModel

cfg = json.loads(sys.argv[1])
L.seed_everything(0, verbose=False)
model = NashMD(base=cfg["model"], preference_model=None, loss="nash_md", beta=cfg["beta"], tau=cfg["tau"],
               max_new_tokens=cfg["length"], temperature=1.0, lr=cfg["lr"], warmup_steps=0)
object.__setattr__(model, "judge", PreferenceModel(backbone=cfg["model"], kind="bradley_terry").eval())
fixed = cfg.get("fixed")
loss = None
if fixed is not None:
    ids = torch.tensor(fixed["prompt_ids"]); comp = torch.tensor(fixed["completion_ids"])
    ones, comp_mask = torch.ones_like(ids), torch.ones_like(comp)
    with torch.no_grad():
        lp = model.response_log_probs(model.policy, ids, ones, comp, comp_mask)
        ref_lp = model.response_log_probs(model.reference_model(), ids, ones, comp, comp_mask)
        loss = float(O.nash_md_loss(lp, ref_lp, comp_mask, torch.tensor(fixed["probability"]), cfg["tau"]).mean())
times = []

class Clock(L.Callback):
    def on_train_batch_start(self, *a):
        self.t = time.perf_counter()
    def on_train_batch_end(self, *a):
        times.append(time.perf_counter() - self.t)

class Prompts(PromptData):
    def setup(self, stage):
        self.train_prompts, self.val_prompts = cfg["prompts"], cfg["prompts"][:1]

if cfg["steps"] > 0:
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=cfg["steps"], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[Clock()])
    trainer.fit(model, datamodule=Prompts(batch_size=cfg["batch"]))
print("RESULT " + json.dumps({"times": times, "loss": loss}))
'''


def trl_python(venv: Path) -> Path:
    """The bench venv's python, with TRL installed at its pin (created on first use)."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import trl; assert trl.__version__ == '1.13.0'"],
                                          capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} with {TRL_PIN} (once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # torch, transformers and accelerate come from the project's environment, so both sides run the same ones
    (Path(site) / "zoo_env.pth").write_text(ours + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", TRL_PIN], check=True)
    return python


def run(python: Path, code: str, cfg: dict, env: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
    out = subprocess.run([str(python), f.name, json.dumps(cfg)], capture_output=True, text=True, env=env, cwd=ROOT)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{python} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(line[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run, after 2 warm-up steps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.125, help="the mixture coefficient (TRL: mixture_coef)")
    parser.add_argument("--tau", type=float, default=0.05, help="the KL coefficient (TRL: beta)")
    parser.add_argument("--venv", type=Path, default=ROOT / ".bench" / "trl")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    import torch

    from zoo.preference.data import sentence_starts

    python = trl_python(args.venv)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    prompts = sentence_starts("train")[:256]
    base = {"model": str(TINY_LM), "batch": args.batch, "beta": args.beta, "tau": args.tau, "lr": 1e-5, "prompts": prompts}

    # the fixed batch: 4 copies of one prompt (no padding, so no position-id conventions differ), 16 drawn tokens
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(TINY_LM)
    prompt_ids = tok("The list type is a mutable sequence", add_special_tokens=False)["input_ids"]
    g = torch.Generator().manual_seed(0)
    fixed = {"prompt_ids": [prompt_ids] * 4, "completion_ids": torch.randint(2, 4000, (4, 16), generator=g).tolist(),
             "probability": [0.9, 0.2, 0.55, 0.5]}
    zoo_loss = run(Path(sys.executable), ZOO_WORKER, {**base, "length": 16, "steps": 0, "fixed": fixed}, env)["loss"]
    trl_loss = run(python, TRL_WORKER, {**base, "length": 16, "steps": 0, "fixed": fixed}, env)["loss"]
    print(f"loss on the fixed batch: zoo {zoo_loss:.8f}  TRL {trl_loss:.8f}  |difference| {abs(zoo_loss - trl_loss):.2e}")

    rows = []
    print(f"{'length':>6} {'zoo steps/s':>12} {'TRL steps/s':>12} {'ratio':>7}")
    for length in args.lengths:
        cfg = {**base, "length": length, "steps": args.steps + 2}
        speeds = {}
        for name, py, code in (("zoo", Path(sys.executable), ZOO_WORKER), ("trl", python, TRL_WORKER)):
            times = run(py, code, cfg, env)["times"][2:]
            speeds[name] = 1.0 / statistics.median(times)
        rows.append({"length": length, "zoo_steps_per_s": speeds["zoo"], "trl_steps_per_s": speeds["trl"],
                     "ratio": speeds["zoo"] / speeds["trl"]})
        print(f"{length:>6} {speeds['zoo']:>12.3f} {speeds['trl']:>12.3f} {speeds['zoo'] / speeds['trl']:>6.2f}×", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"fixed_batch_loss": {"zoo": zoo_loss, "trl": trl_loss}, "speed": rows,
                                        "batch": args.batch, "steps": args.steps, "time": time.ctime()}, indent=2))


if __name__ == "__main__":
    main()
