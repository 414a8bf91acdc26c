"""Nash-MD side by side with TRL 1.13.0's NashMDTrainer: training steps per second in paired rounds, the
loss on one fixed batch, and the tokens each side's geometric mixture draws.

    python scripts/bench/nash_md.py                        # lengths 16 32 64 128, 3 rounds of 6 timed steps
    python scripts/bench/nash_md.py --lengths 32 --steps 4 --rounds 2

Both train tiny-lm with the same prompts (sentence starts of CPython's documentation), batch, generation
length, temperature 1, β (mixture_coef) and τ (TRL's beta), each judged by a Bradley–Terry reward model
of the same size (tiny-lm's transformer with a linear head; TRL: GPT2ForSequenceClassification), on one
CPU thread, each in its own process, in float32 (TRL's configs default to bf16 autocast, switched off here so
that both compute the same thing). TRL is installed at its pin into a separate virtual environment
(``--venv``, default .bench/trl: private to the checkout, ignored by git) that sees the project's
torch and transformers through a .pth file; the project never imports it.

TRL is set up as its users would run it fast and correctly: ``gradient_checkpointing=False`` (TRL's default
True recomputes activations in backward and turns the KV cache off for its policy sampling; the zoo does
neither), its policy sampling with the cache, and its mixture sampling without (TRL's
``GeometricMixtureWrapper`` turns the cache off itself; handed a cache anyway, it shares one between the
two models and draws tokens of neither mixture, which the token check below shows).

Each round runs the two sides in fresh processes, in alternating order, for each length: 2 warm-up steps,
then the median time of the timed steps. Each round's ratio is printed, then the minimum, median and
maximum over the rounds.

Checks that both sides compute the same thing: the fixed batch's loss (the same prompt and completion
tokens and preference probabilities through TRL's ``_compute_logprobs`` and ``_compute_losses`` and through
zoo's ``response_log_probs`` and ``nash_md_loss``), and the mixture's tokens: greedy (temperature 0)
decoding of π^β for a policy that differs from μ (tiny-lm with seeded noise on its weights) by TRL's
``GeometricMixtureWrapper`` and by zoo's ``GeometricMixture`` must give the same tokens.
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
# what TRL adds to the project's packages, each at the version the bench was measured with
TRL_PINS = (TRL_PIN, "datasets==5.2.0", "multiprocess==0.70.19", "pandas==3.1.1", "pyarrow==26.0.1")
TINY_LM = ROOT / "checkpoints" / "tiny-lm"

TRL_WORKER = r'''
import copy, json, statistics, sys, time, tempfile
import torch
torch.set_num_threads(1)
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
from trl.experimental.nash_md import NashMDConfig, NashMDTrainer

from transformers import GenerationConfig
from trl.experimental.nash_md import nash_md_trainer

cfg = json.loads(sys.argv[1])
torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(cfg["model"])
tok.padding_side = "left"
if "mixture" in cfg:  # greedy tokens of TRL's geometric mixture, without and with a cache
    m = cfg["mixture"]
    policy, ref = (AutoModelForCausalLM.from_pretrained(p).eval() for p in (m["policy"], cfg["model"]))
    ids = torch.tensor(m["prompt_ids"])
    out = {}
    for cached in (False, True):
        gen = GenerationConfig(do_sample=False, max_new_tokens=m["length"], use_cache=cached,
                               pad_token_id=tok.pad_token_id, eos_token_id=None)
        wrapper = nash_md_trainer.GeometricMixtureWrapper(policy, ref, gen, mixture_coef=cfg["beta"], device=torch.device("cpu"))
        seq = wrapper.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gen)
        out["cached" if cached else "uncached"] = seq[:, ids.shape[1]:].tolist()
    print("RESULT " + json.dumps(out))
    sys.exit()

_generate = nash_md_trainer.GeometricMixtureWrapper.generate

def uncached(self, *args, generation_config=None, **kwargs):  # the mixture's correct form: no shared cache
    generation_config = copy.deepcopy(generation_config)
    generation_config.use_cache = False
    return _generate(self, *args, generation_config=generation_config, **kwargs)

nash_md_trainer.GeometricMixtureWrapper.generate = uncached
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
                    save_strategy="no", seed=0, dataloader_num_workers=0, bf16=False, gradient_checkpointing=False)
trainer = NashMDTrainer(model=model, reward_funcs=reward, args=args, processing_class=tok,
                        train_dataset=Dataset.from_dict({"prompt": cfg["prompts"]}), callbacks=[Clock()])
assert trainer.generation_config.use_cache  # the policy's sampling is cached
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
    subprocess.run([str(python), "-m", "pip", "install", "-q", *TRL_PINS], check=True)
    return python


def run(python: Path, code: str, cfg: dict, env: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
    out = subprocess.run([str(python), f.name, json.dumps(cfg)], capture_output=True, text=True, env=env, cwd=ROOT)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{python} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(line[7:])


def mixture_tokens(beta: float, length: int, prompt_ids: list[list[int]], policy_dir: Path) -> list[list[int]]:
    """The zoo's greedy tokens of π^β ∝ π^(1−β) μ^β: policy from ``policy_dir``, μ = tiny-lm."""
    import torch
    from transformers import AutoModelForCausalLM

    from zoo.lm.helpers import sample
    from zoo.nash_md.nets import GeometricMixture

    policy, ref = (AutoModelForCausalLM.from_pretrained(p).eval() for p in (policy_dir, TINY_LM))
    ids = torch.tensor(prompt_ids)
    seq, _ = sample(GeometricMixture(policy, ref, beta), ids, torch.ones_like(ids), max_new_tokens=length, temperature=0)
    return seq[:, ids.shape[1]:].tolist()


def noisy_policy(directory: Path, scale: float = 0.02) -> Path:
    """tiny-lm with seeded Gaussian noise on every weight: a policy that differs from μ."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(TINY_LM)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(TINY_LM).save_pretrained(directory)
    return directory


def first_difference(a: list[list[int]], b: list[list[int]]) -> int | None:
    """The first token position where any row differs, or None."""
    return next((n for n in range(len(a[0])) if any(x[n] != y[n] for x, y in zip(a, b))), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per run, after 2 warm-up steps")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds per length (sides alternate first)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.125, help="the mixture coefficient (TRL: mixture_coef)")
    parser.add_argument("--tau", type=float, default=0.05, help="the KL coefficient (TRL: beta)")
    parser.add_argument("--venv", type=Path, default=ROOT / ".bench" / "trl")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be at least 1")

    import torch
    from transformers.utils import logging as hf_logging

    from zoo.preference.data import sentence_starts

    hf_logging.disable_progress_bar()
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

    # the mixture's tokens, greedy, 24 of them for two prompts
    starts = [tok(p, add_special_tokens=False)["input_ids"][:6] for p in prompts[:2]]
    with tempfile.TemporaryDirectory() as policy_dir:
        noisy_policy(Path(policy_dir))
        ours = mixture_tokens(args.beta, 24, starts, Path(policy_dir))
        theirs = run(python, TRL_WORKER, {**base, "mixture": {"policy": policy_dir, "prompt_ids": starts, "length": 24}}, env)
    mixture = {"zoo": ours, "trl": theirs["uncached"], "trl_cached": theirs["cached"],
               "equal": ours == theirs["uncached"], "cached_first_difference": first_difference(ours, theirs["cached"])}
    print(f"greedy mixture tokens (2 prompts × 24): zoo = TRL uncached: {mixture['equal']}; TRL handed a cache "
          f"differs from token {mixture['cached_first_difference']}")
    if not mixture["equal"]:
        sys.exit("the two sides' mixtures draw different tokens: the speed comparison would compare different work")

    rows = []
    for length in args.lengths:
        cfg = {**base, "length": length, "steps": args.steps + 2}
        rounds = []
        for r in range(args.rounds):
            sides = [("zoo", Path(sys.executable), ZOO_WORKER), ("trl", python, TRL_WORKER)]
            speeds = {}
            for name, py, code in (sides if r % 2 == 0 else sides[::-1]):
                speeds[name] = 1.0 / statistics.median(run(py, code, cfg, env)["times"][2:])
            rounds.append({"zoo_steps_per_s": speeds["zoo"], "trl_steps_per_s": speeds["trl"],
                           "ratio": speeds["zoo"] / speeds["trl"]})
            print(f"length {length:>3} round {r}: zoo {speeds['zoo']:.3f} steps/s, TRL {speeds['trl']:.3f} steps/s, "
                  f"{speeds['zoo'] / speeds['trl']:.2f}×", flush=True)
        ratios = sorted(x["ratio"] for x in rounds)
        row = {"length": length, "rounds": rounds, "ratio_min": ratios[0], "ratio_median": statistics.median(ratios),
               "ratio_max": ratios[-1]}
        rows.append(row)
        print(f"length {length:>3}: {row['ratio_median']:.2f}× ({row['ratio_min']:.2f}-{row['ratio_max']:.2f}, "
              f"{args.rounds} rounds)", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps({"fixed_batch_loss": {"zoo": zoo_loss, "trl": trl_loss}, "mixture": mixture,
                                        "speed": rows, "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
                                        "pins": list(TRL_PINS), "gradient_checkpointing": False, "time": time.ctime()}, indent=2))


if __name__ == "__main__":
    main()
