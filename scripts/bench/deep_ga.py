"""Deep GA side by side: one generation against the pure rollouts it needs, and against EvoTorch's GA.

    python scripts/bench/deep_ga.py --setup        # once: EvoTorch's pinned environment in .bench/evotorch
    python scripts/bench/deep_ga.py [--generations 3] [--population 150] [--episode-steps 200] [--rounds 5]

1. One generation of ``DeepGA`` (LunarLander-v3, the 8-64-64-4 tanh MLP, N = 150, T = 20, σ = 0.02,
   elitism 10 × 5 episodes) timed, then the very episodes it played (same weights, same seeds)
   replayed by the same vectorised evaluator with the weights already built: the limit a GA can
   reach. Goal: generation time ≤ 1.2 × rollout time.
2. EvoTorch's ``GeneticAlgorithm`` (Gaussian mutation σ = 0.02 on every weight, elitist, no
   re-evaluation) on ``GymNE`` with the same environment, network and population. EvoTorch needs
   ray, which the zoo does not, so it runs in a virtual environment of its own, private to this
   checkout (``--venv``, default .bench/evotorch, ignored by git) with every package pinned: the CPU
   wheel of torch the zoo uses (EVOTORCH_PINS); ``--setup`` makes it, and the bench refuses an
   environment whose versions differ. Episodes are cut at ``--episode-steps`` in both. A generation
   is not the same work on both sides (the zoo's elite re-evaluation plays 10 × 5 more episodes:
   199 episodes a generation at N = 150 against EvoTorch's 150), so the headline is environment
   steps per second; generations per second is printed beside it. The two sides alternate round by
   round (the zoo in this process, EvoTorch in a subprocess started each round); each round's ratio
   and their minimum, median and maximum are printed. Goal: ≥ 1.0 × EvoTorch.
Also: the two ways to draw ε for a mutation (a generator seeded per mutation, as the zoo does, and
the official shared noise table), for the 1 M-weight DQN network.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

EVOTORCH = textwrap.dedent("""
    import json, sys, time, torch
    torch.set_num_threads(1)
    from evotorch.algorithms import GeneticAlgorithm
    from evotorch.neuroevolution import GymNE
    from evotorch.operators import GaussianMutation
    pop, gens, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    problem = GymNE(env="LunarLander-v3",
                    network="Linear(obs_length, 64) >> Tanh() >> Linear(64, 64) >> Tanh() >> Linear(64, act_length)",
                    episode_length=steps, num_episodes=1)
    ga = GeneticAlgorithm(problem, popsize=pop, operators=[GaussianMutation(problem, stdev=0.02)],
                          elitist=True, re_evaluate=False)
    ga.step()  # the first generation evaluates the initial population too: not timed
    t0, steps0 = time.perf_counter(), problem.status.get("total_interaction_count", 0)
    for _ in range(gens):
        ga.step()
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds_per_generation": dt / gens,
                      "env_steps_per_second": (problem.status.get("total_interaction_count", 0) - steps0) / dt}))
""")


# EvoTorch's environment, every package pinned; torch is the CPU wheel the zoo's set-up installs
EVOTORCH_PINS = ("torch==2.13.0", "evotorch==0.6.1", "cma==4.5.0", "ray==2.60.0", "gymnasium==1.4.0",
                 "box2d==2.3.10", "pygame-ce==2.5.8", "numpy==2.4.6")
CHECK_PINS = ("import importlib.metadata as m, sys; "
              "bad = [p for p in sys.argv[1:] if m.version(p.split('==')[0]).split('+')[0] != p.split('==')[1]]; "
              "print(' '.join(bad)); sys.exit(1 if bad else 0)")


def setup_evotorch(path: Path) -> None:
    """Make EvoTorch's pinned environment at ``path``: torch's CPU wheel first, so that nothing pulls a CUDA build."""
    print(f"making {path} for EvoTorch…", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = str(path / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
    # --no-deps for EvoTorch: its own list (pandas, mlflow hooks, …) is more than its GA on GymNE needs
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "evotorch==0.6.1", "cma==4.5.0"], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *EVOTORCH_PINS], check=True)


def evotorch_python(path: Path) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no EvoTorch environment at {path}: make it with python scripts/bench/deep_ga.py --setup")
    check = subprocess.run([str(python), "-c", CHECK_PINS, *EVOTORCH_PINS], capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit(f"{path}: {check.stdout.strip() or check.stderr[-300:]} not at the pinned versions "
                         f"({' '.join(EVOTORCH_PINS)}); remove it and run --setup again")
    return python


def bench_evotorch(python: Path, population: int, generations: int, episode_steps: int) -> dict[str, float]:
    out = subprocess.run([str(python), "-c", EVOTORCH, str(population), str(generations), str(episode_steps)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    if out.returncode != 0:
        raise SystemExit(f"EvoTorch failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_zoo(generations: int, population: int, episode_steps: int) -> dict[str, float]:
    from zoo.deep_ga import DeepGA
    from zoo.deep_ga.objective import theta_from_chain

    model = DeepGA(env="LunarLander-v3", policy="mlp", hidden_sizes=(64, 64), population_size=population, truncation=20,
                   sigma=0.02, elite_candidates=10, elite_episodes=5, n_envs=16, max_episode_steps=episode_steps)
    played: list = []
    play = model.play

    def recording_play(jobs):
        played.extend(jobs)
        return play(jobs)

    model.play = recording_play
    model.next_generation()  # the first generation: random networks, not timed
    gen_time, rollout_time, steps = 0.0, 0.0, 0
    for _ in range(generations):
        played.clear()
        before = model.env_steps
        t0 = time.perf_counter()
        model.next_generation()
        gen_time += time.perf_counter() - t0
        steps += model.env_steps - before
        # the same episodes with the weights built beforehand: the pure rollouts
        thetas = {c: theta_from_chain(c, model.init_scale, model.hparams.sigma) for c, _ in played}
        t0 = time.perf_counter()
        model.evaluator_for_actions().run(played, thetas.__getitem__)
        rollout_time += time.perf_counter() - t0
    return {"seconds_per_generation": gen_time / generations, "rollout_seconds_per_generation": rollout_time / generations,
            "env_steps_per_second": steps / gen_time}


def bench_noise(repeats: int = 10) -> dict[str, float]:
    from zoo.deep_ga.nets import AtariNet
    from zoo.deep_ga.objective import mutate

    n = AtariNet((4, 84, 84), 18, "dqn").num_params
    theta = torch.zeros(n)
    t0 = time.perf_counter()
    for s in range(repeats):
        mutate(theta, s, 0.002)
    seeded = (time.perf_counter() - t0) / repeats
    table = torch.randn(2**25)  # the official table is 250 M floats (1 GB); 128 MB here
    t0 = time.perf_counter()
    for s in range(repeats):
        theta + 0.002 * table[s * 997: s * 997 + n]
    return {"weights": n, "ms_seeded_generator": 1e3 * seeded, "ms_noise_table": 1e3 * (time.perf_counter() - t0) / repeats}


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=3, help="timed generations per side and round")
    parser.add_argument("--population", type=int, default=150)
    parser.add_argument("--episode-steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--venv", type=Path, default=ROOT / ".bench" / "evotorch")
    parser.add_argument("--setup", action="store_true", help="make EvoTorch's pinned environment at --venv, then stop")
    parser.add_argument("--skip-evotorch", action="store_true")
    parser.add_argument("--json", type=Path, help="append this run's figures here, one JSON line")
    args = parser.parse_args()
    if args.setup:
        setup_evotorch(args.venv)
        return
    python = None if args.skip_evotorch else evotorch_python(args.venv)

    rounds = []
    for r in range(args.rounds):
        sides = [("zoo", lambda: bench_zoo(args.generations, args.population, args.episode_steps))]
        if python is not None:
            sides.append(("evotorch", lambda: bench_evotorch(python, args.population, args.generations, args.episode_steps)))
        got = {name: fn() for name, fn in (sides if r % 2 == 0 else sides[::-1])}
        z = got["zoo"]
        line = (f"round {r}: zoo {z['env_steps_per_second']:.0f} env steps/s, {z['seconds_per_generation']:.2f} s/generation "
                f"(pure rollouts {z['rollout_seconds_per_generation']:.2f} s: "
                f"{z['seconds_per_generation'] / z['rollout_seconds_per_generation']:.3f})")
        if "evotorch" in got:
            e = got["evotorch"]
            got["steps_ratio"] = z["env_steps_per_second"] / e["env_steps_per_second"]
            got["generations_ratio"] = e["seconds_per_generation"] / z["seconds_per_generation"]
            line += (f"; EvoTorch {e['env_steps_per_second']:.0f} env steps/s, {e['seconds_per_generation']:.2f} s/generation;"
                     f" zoo ÷ EvoTorch: env steps/s {got['steps_ratio']:.2f}, generations/s {got['generations_ratio']:.2f}")
        print(line, flush=True)
        rounds.append(got)
    overhead = [g["zoo"]["seconds_per_generation"] / g["zoo"]["rollout_seconds_per_generation"] for g in rounds]
    print(f"zoo generation ÷ its pure rollouts: {spread(overhead)} (goal ≤ 1.2)")
    if python is not None:
        print(f"zoo ÷ EvoTorch, env steps/s (the headline): {spread([g['steps_ratio'] for g in rounds])} (goal ≥ 1.0); "
              f"generations/s: {spread([g['generations_ratio'] for g in rounds])}")
    noise = bench_noise()
    print(f"ε for {noise['weights']} weights: seeded generator {noise['ms_seeded_generator']:.1f} ms, "
          f"noise table {noise['ms_noise_table']:.1f} ms", flush=True)
    if args.json:
        record = {"rounds": rounds, "noise": noise, "pins": list(EVOTORCH_PINS),
                  "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
        with open(args.json, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
