"""MDPO against Stable-Baselines3's PPO and SAC, side by side in one run, on equal terms: the same
networks, the same number of vectorised environments, the same environment steps and the same
update schedule; one thread each. Prints environment steps per second (ours / SB3) and the mean
greedy return of 20 evaluation episodes on the same seeds. Acrobot's PPO instead takes rl-zoo's
tuned Acrobot-v1 settings (what a user would pick), at the same number of environment steps.

    python scripts/bench/mdpo.py                       # CartPole on-policy, Pendulum off-policy
    python scripts/bench/mdpo.py --tasks pendulum_on   # Pendulum on-policy (100k steps)
    python scripts/bench/mdpo.py --tasks hopper_on_minibatch --seeds 0 1 2   # a variant of ours alone
    python scripts/bench/mdpo.py --seeds 0 1 2 --out bench.json --plot curves.png
    python scripts/bench/mdpo.py --replot bench.json --plot curves.png   # redraw from a saved run

At the paper's budget, each run is one line of a JSONL file, and runs already in it are skipped, so the
measurement can be stopped (between runs, or by --not-after and --end-by) and continued later with the
same command (scripts/bench/mdpo_1m.sh runs it one run at a time and commits each line):

    python scripts/bench/mdpo.py --tasks hopper_1m --seeds 0 1 2 3 4 --jsonl docs/mdpo/hopper_1m.jsonl \\
        --not-after 14:35 --end-by 14:44
    python scripts/bench/mdpo.py --replot docs/mdpo/hopper_1m.jsonl --plot docs/mdpo/curves_hopper_1m.png

Each run there also plays the greedy policy every --eval-every iterations (10 episodes, the same seeds for
both sides): a learning curve of the greedy policy, beside the training episodes' returns.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from zoo.cli import load_recipe  # noqa: E402
from zoo.rl import evaluate, make_env  # noqa: E402

CONFIGS = ROOT / "recipes" / "configs" / "mdpo"
EVAL_EPISODES, EVAL_SEED = 20, 5_000_000
EVAL_EPISODES_CURVE, EVAL_SEED_CURVE = 10, 1_000_000  # what ours validates with (the configs' n_eval_episodes, eval_seed)


def ours(config: str, seed: int, extra: list[str], score: bool = True, eval_every: int | None = None,
         result: dict | None = None) -> tuple[float, float, int, list]:
    """(seconds, mean greedy return, env steps, [(env step, training episode return)]) of a recipe fit,
    validation off while timed. With ``eval_every`` (iterations) validation is on instead, every so many
    iterations, and ``result`` receives the greedy curve and the final episodes' returns."""
    import lightning as L

    curve, greedy = [], []

    class Curve(L.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            r = trainer.callback_metrics.get("train/episode_return")
            if r is not None and module.env_steps > (curve[-1][0] if curve else 0):
                curve.append((int(module.env_steps), float(r)))

        def on_validation_end(self, trainer, module):
            r = trainer.callback_metrics.get("val/return")
            if r is not None and not trainer.sanity_checking:
                greedy.append((int(module.env_steps), float(r)))

    validation = (["--model.steps_per_epoch", str(eval_every)] if eval_every
                  else ["--trainer.limit_val_batches", "0"])

    recipe = load_recipe("mdpo")
    with tempfile.TemporaryDirectory() as tmp:
        cli = recipe.main(["--config", str(CONFIGS / config), "--seed_everything", str(seed),
                           "--trainer.default_root_dir", tmp, "--trainer.enable_progress_bar", "false",
                           "--trainer.enable_model_summary", "false", *validation,
                           "--trainer.logger", "false", "--checkpoint.every_n_train_steps", "1000000", *extra],
                          run=False)
        cli.trainer.callbacks.append(Curve())
        start = time.perf_counter()
        cli.trainer.fit(cli.model)
        seconds = time.perf_counter() - start
    model = cli.model.eval()
    returns = evaluate(model.act, model.make_env, EVAL_EPISODES, seed=EVAL_SEED) if score else np.full(1, np.nan)
    if result is not None:
        result.update(greedy_curve=greedy, returns=returns.tolist())
    return seconds, float(returns.mean()), int(model.env_steps), curve


# rl-baselines3-zoo's hyperparams/ppo.yml (DLR-RM/rl-baselines3-zoo, commit 22e3ff2 of 2026-04-23; the
# Hopper and HalfCheetah entries are named -v4 there, and were the same under -v3 until 2024): normalize:
# true is VecNormalize of observations and rewards, with the entry's γ (rl-zoo's exp_manager passes it on);
# everything not listed is SB3's default. Looked up by the environment's name without its version.
PPO_ZOO = {
    "Acrobot": {"n_envs": 16, "n_steps": 256, "gae_lambda": 0.94, "gamma": 0.99, "n_epochs": 4, "ent_coef": 0.0},
    "Hopper": {"n_envs": 1, "batch_size": 32, "n_steps": 512, "gamma": 0.999, "learning_rate": 9.80828e-05,
               "ent_coef": 0.00229519, "clip_range": 0.2, "n_epochs": 5, "gae_lambda": 0.99, "max_grad_norm": 0.7,
               "vf_coef": 0.835671, "policy_kwargs": {"log_std_init": -2, "ortho_init": False, "activation_fn": "relu",
                                                      "net_arch": {"pi": [256, 256], "vf": [256, 256]}}},
    "HalfCheetah": {"n_envs": 1, "batch_size": 64, "n_steps": 512, "gamma": 0.98, "learning_rate": 2.0633e-05,
                    "ent_coef": 0.000401762, "clip_range": 0.1, "n_epochs": 20, "gae_lambda": 0.92,
                    "max_grad_norm": 0.8, "vf_coef": 0.58096,
                    "policy_kwargs": {"log_std_init": -2, "ortho_init": False, "activation_fn": "relu",
                                      "net_arch": {"pi": [256, 256], "vf": [256, 256]}}},
}


def ppo_zoo_hparams(env_id: str) -> dict:
    family = env_id.split("-")[0]
    if family not in PPO_ZOO:
        raise SystemExit(f"no rl-zoo PPO settings here for {env_id}; known: {', '.join(PPO_ZOO)}")
    return PPO_ZOO[family]


def sb3(algo: str, hp: dict, seed: int, score: bool = True, eval_every: int | None = None,
        result: dict | None = None) -> tuple[float, float, int, list]:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env_id = hp["env"]
    normalize = None
    steps = hp["iterations"] * hp["n_envs"] * hp["n_steps"]
    if algo == "ppo_zoo":  # rl-zoo's tuned settings, everything else SB3's defaults
        zoo_hp = json.loads(json.dumps(ppo_zoo_hparams(env_id)))
        env = normalize = VecNormalize(make_vec_env(env_id, n_envs=zoo_hp.pop("n_envs"), seed=seed),
                                       gamma=zoo_hp["gamma"])
        if "policy_kwargs" in zoo_hp:
            zoo_hp["policy_kwargs"]["activation_fn"] = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[
                zoo_hp["policy_kwargs"]["activation_fn"]]
        model = PPO("MlpPolicy", env, seed=seed, device="cpu", **zoo_hp)
    elif algo == "ppo":
        lr = (lambda f: f * hp["lr"]) if hp.get("lr_anneal") else hp["lr"]
        env = make_vec_env(env_id, n_envs=hp["n_envs"], seed=seed)
        if hp.get("normalize_obs"):
            env = normalize = VecNormalize(env, norm_obs=True, norm_reward=False)
        model = PPO("MlpPolicy", env, n_steps=hp["n_steps"], batch_size=hp.get("minibatch_size", 64),
                    n_epochs=hp["sgd_epochs"], gamma=hp["gamma"], gae_lambda=hp["gae_lambda"], learning_rate=lr,
                    clip_range=0.2, ent_coef=hp.get("ent_coef", 0.0), max_grad_norm=0.5, seed=seed, device="cpu",
                    policy_kwargs={"net_arch": dict(pi=hp["hidden_sizes"], vf=hp["hidden_sizes"]),
                                   "activation_fn": torch.nn.Tanh})
    else:
        env = make_vec_env(env_id, n_envs=hp["n_envs"], seed=seed)
        model = SAC("MlpPolicy", env, learning_rate=hp["lr"], buffer_size=hp["buffer_size"],
                    batch_size=hp["batch_size"], learning_starts=hp["learning_starts"], tau=hp["tau"],
                    gamma=hp["gamma"], train_freq=hp["n_steps"], gradient_steps=hp["n_steps"] * hp["n_envs"],
                    ent_coef=f"auto_{hp['alpha']}" if hp.get("autotune_alpha") else hp["alpha"], seed=seed,
                    device="cpu", policy_kwargs={"net_arch": hp["hidden_sizes"]})
    curve, greedy = [], []
    # normalize_obs only reads VecNormalize's statistics, so the greedy episodes leave them as they are
    act = lambda obs: model.predict(obs if normalize is None else normalize.normalize_obs(obs), deterministic=True)[0]  # noqa: E731
    every = eval_every * hp["n_envs"] * hp["n_steps"] if eval_every else None

    class Curve(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    curve.append((self.num_timesteps, float(info["episode"]["r"])))
            # ours evaluates after every eval_every-th update, SB3's rollouts end before theirs: once a
            # rollout past the mark begins, the policy is the one updated on the data up to the mark
            if every and self.num_timesteps > (len(greedy) + 1) * every:
                n = (len(greedy) + 1) * every
                greedy.append((n, float(evaluate(act, lambda: make_env(env_id), EVAL_EPISODES_CURVE,
                                                 seed=EVAL_SEED_CURVE).mean())))
            return True

    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=Curve())
    seconds = time.perf_counter() - start
    if normalize is not None:
        normalize.training = False
    returns = evaluate(act, lambda: make_env(env_id), EVAL_EPISODES, seed=EVAL_SEED) if score else np.full(1, np.nan)
    if result is not None:
        result.update(greedy_curve=greedy, returns=returns.tolist(),
                      hparams={k: v for k, v in (ppo_zoo_hparams(env_id) if algo == "ppo_zoo" else {}).items()})
    return seconds, float(returns.mean()), steps, curve


# the update schedule this zoo used before it followed the official code (PPO's minibatches, one optimiser)
MINIBATCH = ["--model.update_schedule", "minibatch", "--model.minibatch_size", "64", "--model.orthogonal_init", "false"]

TASKS = {  # config, reference (None: ours alone), trainer.max_steps (None: the config's), our extra arguments
    "cartpole": ("default.yaml", "ppo", None, []),
    "acrobot": ("acrobot.yaml", "ppo_zoo", None, []),
    "pendulum_off": ("pendulum.yaml", "sac", None, []),
    "pendulum_on": ("pendulum_on_policy.yaml", "ppo", None, []),
    "hopper_on": ("paper_on_policy.yaml", "ppo", 98, []),  # 200k of the paper's 1M steps: what this CPU affords
    "hopper_on_minibatch": ("paper_on_policy.yaml", None, 98, MINIBATCH),
    "hopper_off": ("paper.yaml", "sac", 600, []),  # 30k of the paper's 1M steps (10k of them random)
    "hopper_off_100k": ("paper.yaml", "sac", 2000, []),
    "hopper_off_200k": ("paper.yaml", "sac", 4000, []),  # the 200k-step comparison with SAC (α fixed, as official)
    # the paper's budget, 488 × 2048 = 999,424 steps, against PPO at rl-zoo's settings for the task. MDPO here
    # as paper_on_policy.yaml was when these ran: t_k = 1 − k/K over the run's own K = 488 iterations
    "hopper_1m": ("paper_on_policy.yaml", "ppo_zoo", 488, ["--model.schedule_steps", "488"]),
    "halfcheetah_1m": ("paper_on_policy.yaml", "ppo_zoo", 488,
                       ["--model.env", "HalfCheetah-v5", "--model.schedule_steps", "488"]),
    # the official code's t_k over the same run: its K is 10⁷ / 2048 = 4882 iterations whatever the run's length
    # (paper_on_policy.yaml's default since these five seeds of each task: the flag is the default's value)
    "hopper_1m_official_tk": ("paper_on_policy.yaml", None, 488, ["--model.schedule_steps", "4882"]),
    # what may hold MDPO back on HalfCheetah, one change at a time (ours alone, against halfcheetah_1m's MDPO,
    # so with the run's own K = 488 but for the official t_k's tasks): the official t_k, and the policy network
    # rl-zoo's PPO uses there (256×256 ReLU, log σ₀ = −2, default init)
    "halfcheetah_1m_official_tk": ("paper_on_policy.yaml", None, 488,
                                   ["--model.env", "HalfCheetah-v5", "--model.schedule_steps", "4882"]),
    "halfcheetah_1m_zoo_net": ("paper_on_policy.yaml", None, 488,
                               ["--model.env", "HalfCheetah-v5", "--model.schedule_steps", "488",
                                "--model.hidden_sizes", "[256, 256]",
                                "--model.activation", "relu", "--model.log_std_init", "-2.0",
                                "--model.orthogonal_init", "false"]),
    # rl-zoo's network on top of the official K (the default since)
    "halfcheetah_1m_zoo_net_official_tk": ("paper_on_policy.yaml", None, 488,
                                           ["--model.env", "HalfCheetah-v5", "--model.hidden_sizes", "[256, 256]",
                                            "--model.activation", "relu", "--model.log_std_init", "-2.0",
                                            "--model.orthogonal_init", "false"]),
    # the official code's reward scaling (VecNormalize) with its clipped value loss, on both tasks
    "halfcheetah_1m_official_norm": ("paper_on_policy.yaml", None, 488,
                                     ["--model.env", "HalfCheetah-v5", "--model.schedule_steps", "488",
                                      "--model.normalize_reward", "true",
                                      "--model.value_clip", "0.2"]),
    "hopper_1m_official_norm": ("paper_on_policy.yaml", None, 488,
                                ["--model.schedule_steps", "488", "--model.normalize_reward", "true",
                                 "--model.value_clip", "0.2"]),
    # all three of the official code's settings above at once (t_k, reward scaling, value clip)
    "halfcheetah_1m_official": ("paper_on_policy.yaml", None, 488,
                                ["--model.env", "HalfCheetah-v5", "--model.schedule_steps", "4882",
                                 "--model.normalize_reward", "true", "--model.value_clip", "0.2"]),
    "hopper_1m_official": ("paper_on_policy.yaml", None, 488,
                           ["--model.schedule_steps", "4882", "--model.normalize_reward", "true", "--model.value_clip", "0.2"]),
    # the same on Hopper-v4, to tell whether rl-zoo's PPO settings (tuned on v3; v4 has the same model) fare
    # differently on v5: run with --sides reference
    "hopper_v4_1m": ("paper_on_policy.yaml", "ppo_zoo", 488, ["--model.env", "Hopper-v4"]),
}


def model_hparams(config: str, extra: list[str] = ()) -> dict:
    """The config's model arguments with the ``--model.*`` of ``extra`` over them, and its trainer.max_steps."""
    import yaml

    spec = yaml.safe_load((CONFIGS / config).read_text())
    hp = {**spec["model"].get("init_args", {})}
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag.startswith("--model."):
            hp[flag.removeprefix("--model.")] = yaml.safe_load(value)
    return hp, spec["trainer"]["max_steps"]


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "lightning", "gymnasium", "mujoco", "stable_baselines3", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str:
    import subprocess

    run = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    return run("rev-parse", "--short", "HEAD") + ("+dirty" if run("status", "--porcelain", "--", "zoo", "recipes", "scripts") else "")


def thinned(curve: list, bins: int = 100) -> list:
    """Training-episode returns as (last env step, mean return) over ``bins`` equal spans of episodes' ends."""
    if not curve:
        return []
    steps, returns = (np.array(x, dtype=float) for x in zip(*curve))
    edges = np.linspace(0, steps.max(), bins + 1)
    which = np.clip(np.digitize(steps, edges[1:-1]), 0, bins - 1)
    return [(int(steps[which == b].max()), round(float(returns[which == b].mean()), 2))
            for b in range(bins) if (which == b).any()]


def read_jsonl(path: str) -> list[dict]:
    p = Path(path)
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []


def past(clock: str | None) -> bool:
    """Whether the local time is past HH:MM today."""
    if not clock:
        return False
    h, m = (int(x) for x in clock.split(":"))
    now = time.localtime()
    return (now.tm_hour, now.tm_min) >= (h, m)


def clock_seconds(clock: str) -> float:
    """Seconds from now to HH:MM today (local time); negative once past."""
    h, m = (int(x) for x in clock.split(":"))
    now = time.localtime()
    return (h * 60 + m) * 60 - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)


def run_jsonl(tasks: list[str], seeds: list[int], path: str, eval_every: int, not_after: str | None,
              max_runs: int | None = None, end_by: str | None = None,
              sides: tuple[str, ...] = ("mdpo", "reference")) -> int:
    """Every (task, seed, side) not yet in ``path``, ours then the reference for each seed, one line each;
    no run starts past ``not_after``, nor after ``max_runs`` runs, nor when the longest earlier run of the
    same task and side in ``path`` would not end by ``end_by``. Returns the number of runs made."""
    made = 0
    for seed in seeds:  # seed-major, so that the two sides advance together
        for task in tasks:
            config, algo, iterations, extra = TASKS[task]
            hp, max_steps = model_hparams(config, extra)
            hp = {**hp, "iterations": iterations or max_steps}
            methods = (["mdpo"] if "mdpo" in sides else []) + ([f"sb3_{algo}"] if algo and "reference" in sides else [])
            for method in methods:
                if any(r["task"] == task and r["seed"] == seed and r["method"] == method for r in read_jsonl(path)):
                    continue
                if past(not_after) or (max_runs is not None and made >= max_runs):
                    if past(not_after):
                        print(f"past {not_after}: no new run starts; the same command continues", flush=True)
                    return made
                took = [r["seconds"] for r in read_jsonl(path) if r["task"] == task and r["method"] == method]
                if end_by and took and max(took) * 1.1 > clock_seconds(end_by):
                    print(f"{task} {method} seed {seed} would take about {max(took) / 60:.0f} min and not end by "
                          f"{end_by}: no new run starts; the same command continues", flush=True)
                    return made
                result = {}
                started, commit = time.strftime("%Y-%m-%dT%H:%M:%S%z"), git_commit()  # the code the run starts with
                if method == "mdpo":
                    seconds, r, n, c = ours(config, seed, ["--trainer.max_steps", str(hp["iterations"]), *extra],
                                            eval_every=eval_every, result=result)
                else:
                    seconds, r, n, c = sb3(algo, hp, seed, eval_every=eval_every, result=result)
                row = {"method": method, "task": task, "env": hp["env"], "seed": seed, "env_steps": n,
                       "return_mean": r, "return_std": float(np.std(result["returns"])), "returns": result["returns"],
                       "eval_episodes": EVAL_EPISODES, "eval_seed": EVAL_SEED,
                       "curve": result["greedy_curve"], "curve_episodes": EVAL_EPISODES_CURVE,
                       "train_curve": thinned(c), "seconds": round(seconds, 1), "started": started,
                       "config": config if method == "mdpo" else None, "args": extra if method == "mdpo" else [],
                       "hparams": result.get("hparams"), "commit": commit, "versions": versions()}
                with open(path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                made += 1
                print(f"{task} {method} seed {seed}: {n} steps in {seconds:.0f} s, greedy return {r:.1f} ± "
                      f"{row['return_std']:.1f}; curve " + " ".join(f"{v:.0f}" for _, v in row["curve"]), flush=True)
    return made


METHOD_NAMES = {"mdpo": "MDPO (ours)", "sb3_ppo_zoo": "SB3 PPO (rl-zoo)", "sb3_ppo": "SB3 PPO", "sb3_sac": "SB3 SAC"}


def jsonl_table(rows: list[dict]) -> str:
    """Per task and method: seeds, final greedy return mean ± std over seeds, and every seed's."""
    lines = ["| task | env | env steps | method | seeds | greedy return, mean ± std over seeds | per seed (mean ± std of 20 episodes) |",
             "|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows if r["task"] == task):
            runs = sorted((r for r in rows if r["task"] == task and r["method"] == method), key=lambda r: r["seed"])
            m = np.array([r["return_mean"] for r in runs])
            per = "; ".join(f"{r['seed']}: {r['return_mean']:.0f} ± {r['return_std']:.0f}" for r in runs)
            lines.append(f"| {task} | {runs[0]['env']} | {runs[0]['env_steps']} | {METHOD_NAMES.get(method, method)} | "
                         f"{len(runs)} | {m.mean():.0f} ± {m.std():.0f} | {per} |")
    return "\n".join(lines)


def jsonl_plot(rows: list[dict], path: str) -> None:
    """Greedy-evaluation curves, one panel per environment, one colour per (task, method): every seed thin,
    the mean over seeds thick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(r["env"] for r in rows))
    fig, axes = plt.subplots(1, len(envs), figsize=(5.4 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs):
        mine = [r for r in rows if r["env"] == env]
        several = len({r["task"] for r in mine}) > 1
        for i, (task, method) in enumerate(dict.fromkeys((r["task"], r["method"]) for r in mine)):
            runs = [r for r in mine if r["task"] == task and r["method"] == method]
            colour = f"C{i}"
            curves = []
            for r in runs:
                xs, ys = zip(*([*map(tuple, r["curve"]), (r["env_steps"], r["return_mean"])]))
                ax.plot(xs, ys, color=colour, alpha=0.3, lw=0.8)
                curves.append(dict(zip(xs, ys)))
            common = sorted(set.intersection(*(set(c) for c in curves)))
            name = METHOD_NAMES.get(method, method) + (f" [{task}]" if several else "")
            ax.plot(common, [np.mean([c[x] for c in curves]) for x in common], color=colour, lw=2,
                    label=f"{name}, {len(runs)} seed{'s' if len(runs) > 1 else ''}")
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("greedy return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def speed(task: str, iterations: int, rounds: int) -> list[float]:
    """Steps/s ratios (ours / SB3) of short runs, alternating the two ``rounds`` times (and which goes first),
    so that a load that changes over minutes (a shared machine) weighs on both alike."""
    config, algo, _, extra = TASKS[task]
    hp = {**model_hparams(config, extra)[0], "iterations": iterations}
    ratios = []
    for r in range(rounds):
        run_ours = lambda: ours(config, r, ["--trainer.max_steps", str(iterations), *extra], score=False)  # noqa: E731
        run_sb3 = lambda: sb3(algo, hp, r, score=False)  # noqa: E731
        if r % 2 == 0:
            (t_o, _, n_o, _), (t_b, _, n_b, _) = run_ours(), run_sb3()
        else:
            (t_b, _, n_b, _), (t_o, _, n_o, _) = run_sb3(), run_ours()
        ratios.append((n_o / t_o) / (n_b / t_b))
        print(f"{task:13s} round {r}  {n_o} steps   MDPO {n_o / t_o:7.0f} steps/s  SB3 {algo.upper()} {n_b / t_b:7.0f} "
              f"steps/s  ratio {ratios[-1]:.2f}x", flush=True)
    return ratios


def binned(curve: list, edges: np.ndarray) -> np.ndarray:
    """Mean return of the training episodes that ended in each bin of environment steps."""
    steps, returns = (np.array(x, dtype=float) for x in zip(*curve)) if curve else (np.zeros(0), np.zeros(0))
    which = np.digitize(steps, edges[1:-1])
    return np.array([returns[which == b].mean() if (which == b).any() else np.nan for b in range(len(edges) - 1)])


def plot(rows: list[dict], path: str, bins: int = 20) -> None:
    """Learning curves (training-episode return against environment steps, mean ± std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        runs = [r for r in rows if r["task"] == task]
        edges = np.linspace(0, runs[0]["env_steps"], bins + 1)
        mid = (edges[1:] + edges[:-1]) / 2
        algo = (TASKS[task][1] or "").upper().replace("_ZOO", " (rl-zoo)")
        for key, label in (("mdpo_curve", "MDPO (ours)"), ("sb3_curve", f"SB3 {algo}")):
            if key not in runs[0]:
                continue
            ys = np.stack([binned(r[key], edges) for r in runs])
            mean, std = np.nanmean(ys, 0), np.nanstd(ys, 0)
            ax.plot(mid, mean, label=label)
            ax.fill_between(mid, mean - std, mean + std, alpha=0.2)
        ax.set_title(f"{task} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("training episode return")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    """A Markdown table: per task, greedy return mean ± std over seeds and the speed ratio's range."""
    lines = ["| task | env steps | seeds | MDPO return | reference | reference return | steps/s ratio (MDPO / SB3), median [min, max] |",
             "|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        runs = [r for r in rows if r["task"] == task]
        algo = TASKS[task][1]
        ours_r = np.array([r["mdpo_return"] for r in runs])
        if algo is None:
            lines.append(f"| {task} | {runs[0]['env_steps']} | {len(runs)} | {ours_r.mean():.1f} ± {ours_r.std():.1f} "
                         "| — | — | — |")
            continue
        ref_r = np.array([r[f"sb3_{algo}_return"] for r in runs])
        ratio = np.array([r["speed_ratio"] for r in runs])
        name = "SB3 PPO (rl-zoo)" if algo == "ppo_zoo" else f"SB3 {algo.upper()}"
        lines.append(f"| {task} | {runs[0]['env_steps']} | {len(runs)} | {ours_r.mean():.1f} ± {ours_r.std():.1f} | "
                     f"{name} | {ref_r.mean():.1f} ± {ref_r.std():.1f} | "
                     f"{np.median(ratio):.2f}× [{ratio.min():.2f}, {ratio.max():.2f}] |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["cartpole", "pendulum_off"], choices=sorted(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", help="write every measurement as JSON here")
    parser.add_argument("--plot", help="draw the learning curves into this PNG")
    parser.add_argument("--speed", type=int, metavar="ITERATIONS",
                        help="only measure speed: this many iterations of each task, alternating ours and SB3")
    parser.add_argument("--rounds", type=int, default=5, help="alternations for --speed")
    parser.add_argument("--replot", nargs="+", help="only print the table (and draw --plot) from this saved --out "
                        "JSON, or from these --jsonl files together")
    parser.add_argument("--append", action="store_true", help="add to the rows already in --out")
    parser.add_argument("--jsonl", help="one line per run (each side, each seed) here; runs already in it are skipped")
    parser.add_argument("--eval-every", type=int, default=25,
                        help="with --jsonl: greedy episodes every this many of our iterations (the same env steps for SB3)")
    parser.add_argument("--not-after", metavar="HH:MM", help="with --jsonl: start no run past this local time")
    parser.add_argument("--max-runs", type=int, help="with --jsonl: stop after this many runs (exit status 3 if none)")
    parser.add_argument("--sides", nargs="+", choices=["mdpo", "reference"], default=["mdpo", "reference"],
                        help="with --jsonl: which sides to run (ours, SB3's)")
    parser.add_argument("--end-by", metavar="HH:MM",
                        help="with --jsonl: start no run that would not end by this local time (judged by the longest "
                             "earlier run of the same task and side)")
    args = parser.parse_args()
    if args.replot and args.replot[0].endswith(".jsonl"):
        rows = [r for f in args.replot for r in read_jsonl(f)]
        print(jsonl_table(rows))
        if args.plot:
            jsonl_plot(rows, args.plot)
        return
    if args.replot:
        rows = json.loads(Path(args.replot[0]).read_text())
        print(table(rows))
        if args.plot:
            plot(rows, args.plot)
        return
    torch.set_num_threads(1)
    if args.speed:
        for task in args.tasks:
            ratios = speed(task, args.speed, args.rounds)
            print(f"{task}: steps/s ratio MDPO / SB3 median {np.median(ratios):.2f}x over {len(ratios)} rounds "
                  f"[{min(ratios):.2f}, {max(ratios):.2f}]", flush=True)
        return
    if args.jsonl:
        made = run_jsonl(args.tasks, args.seeds, args.jsonl, args.eval_every, args.not_after, args.max_runs,
                         args.end_by, tuple(args.sides))
        rows = read_jsonl(args.jsonl)
        print(jsonl_table(rows))
        if args.plot and rows:
            jsonl_plot(rows, args.plot)
        sys.exit(0 if made else 3)
    rows = json.loads(Path(args.out).read_text()) if args.out and args.append and Path(args.out).exists() else []
    for task in args.tasks:
        config, algo, iterations, extra = TASKS[task]
        hp, max_steps = model_hparams(config, extra)
        iterations = iterations or max_steps
        hp = {**hp, "iterations": iterations}
        for seed in args.seeds:
            t_o, r_o, n_o, c_o = ours(config, seed, ["--trainer.max_steps", str(iterations), *extra])
            row = {"task": task, "seed": seed, "env_steps": n_o, "mdpo_steps_per_s": n_o / t_o, "mdpo_return": r_o,
                   "mdpo_curve": c_o, "mdpo_args": extra}
            line = f"{task:13s} seed {seed}  {n_o} steps   MDPO {n_o / t_o:7.0f} steps/s"
            if algo is not None:
                t_b, r_b, n_b, c_b = sb3(algo, hp, seed)
                assert n_o == n_b, (n_o, n_b)
                row.update({f"sb3_{algo}_steps_per_s": n_b / t_b, "speed_ratio": (n_o / t_o) / (n_b / t_b),
                            f"sb3_{algo}_return": r_b, "sb3_curve": c_b})
                line += (f"  SB3 {algo.upper()} {n_b / t_b:7.0f} steps/s  ratio {row['speed_ratio']:.2f}x   "
                         f"return MDPO {r_o:8.1f}  SB3 {algo.upper()} {r_b:8.1f}")
            else:
                line += f"   return MDPO {r_o:8.1f}"
            rows.append(row)
            print(line, flush=True)
            if args.out:  # after every run, so that an interrupted one keeps what it measured
                Path(args.out).write_text(json.dumps(rows) + "\n")
    print(table(rows))
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
