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


def ours(config: str, seed: int, extra: list[str], score: bool = True) -> tuple[float, float, int, list]:
    """(seconds, mean greedy return, env steps, [(env step, training episode return)]) of a recipe fit,
    validation off while timed."""
    import lightning as L

    curve = []

    class Curve(L.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            r = trainer.callback_metrics.get("train/episode_return")
            if r is not None and module.env_steps > (curve[-1][0] if curve else 0):
                curve.append((int(module.env_steps), float(r)))

    recipe = load_recipe("mdpo")
    with tempfile.TemporaryDirectory() as tmp:
        cli = recipe.main(["--config", str(CONFIGS / config), "--seed_everything", str(seed),
                           "--trainer.default_root_dir", tmp, "--trainer.enable_progress_bar", "false",
                           "--trainer.enable_model_summary", "false", "--trainer.limit_val_batches", "0",
                           "--trainer.logger", "false", "--checkpoint.every_n_train_steps", "1000000", *extra],
                          run=False)
        cli.trainer.callbacks.append(Curve())
        start = time.perf_counter()
        cli.trainer.fit(cli.model)
        seconds = time.perf_counter() - start
    model = cli.model.eval()
    returns = evaluate(model.act, model.make_env, EVAL_EPISODES, seed=EVAL_SEED) if score else np.full(1, np.nan)
    return seconds, float(returns.mean()), int(model.env_steps), curve


# rl-baselines3-zoo's hyperparams/ppo.yml, Acrobot-v1 (normalize: true is VecNormalize of observations and rewards)
PPO_ZOO_ACROBOT = {"n_envs": 16, "n_steps": 256, "gae_lambda": 0.94, "gamma": 0.99, "n_epochs": 4, "ent_coef": 0.0}


def sb3(algo: str, hp: dict, seed: int, score: bool = True) -> tuple[float, float, int, list]:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env_id = hp["env"]
    normalize = None
    steps = hp["iterations"] * hp["n_envs"] * hp["n_steps"]
    if algo == "ppo_zoo":  # rl-zoo's tuned settings, everything else SB3's defaults
        zoo_hp = dict(PPO_ZOO_ACROBOT)
        env = normalize = VecNormalize(make_vec_env(env_id, n_envs=zoo_hp.pop("n_envs"), seed=seed))
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
    curve = []

    class Curve(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    curve.append((self.num_timesteps, float(info["episode"]["r"])))
            return True

    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=Curve())
    seconds = time.perf_counter() - start
    if normalize is not None:
        normalize.training = False
    act = lambda obs: model.predict(obs if normalize is None else normalize.normalize_obs(obs), deterministic=True)[0]  # noqa: E731
    returns = evaluate(act, lambda: make_env(env_id), EVAL_EPISODES, seed=EVAL_SEED) if score else np.full(1, np.nan)
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
}


def model_hparams(config: str) -> dict:
    import yaml

    spec = yaml.safe_load((CONFIGS / config).read_text())
    return {**spec["model"].get("init_args", {})}, spec["trainer"]["max_steps"]


def speed(task: str, iterations: int, rounds: int) -> list[float]:
    """Steps/s ratios (ours / SB3) of short runs, alternating the two ``rounds`` times, so that a load
    that changes over minutes (a shared machine) weighs on both alike."""
    config, algo, _, extra = TASKS[task]
    hp = {**model_hparams(config)[0], "iterations": iterations}
    ratios = []
    for r in range(rounds):
        t_o, _, n_o, _ = ours(config, r, ["--trainer.max_steps", str(iterations), *extra], score=False)
        t_b, _, n_b, _ = sb3(algo, hp, r, score=False)
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
    parser.add_argument("--replot", help="only print the table (and draw --plot) from this saved --out JSON")
    parser.add_argument("--append", action="store_true", help="add to the rows already in --out")
    args = parser.parse_args()
    if args.replot:
        rows = json.loads(Path(args.replot).read_text())
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
    rows = json.loads(Path(args.out).read_text()) if args.out and args.append and Path(args.out).exists() else []
    for task in args.tasks:
        config, algo, iterations, extra = TASKS[task]
        hp, max_steps = model_hparams(config)
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
