"""Deep GA side by side: one generation against the pure rollouts it needs, and against EvoTorch's GA.

    python scripts/bench/deep_ga.py [--generations 3] [--population 150] [--episode-steps 200]

1. One generation of ``DeepGA`` (LunarLander-v3, the 8-64-64-4 tanh MLP, N = 150, T = 20, σ = 0.02,
   elitism 10 × 5 episodes) timed, then the very episodes it played (same weights, same seeds)
   replayed by the same vectorised evaluator with the weights already built: the limit a GA can
   reach. Goal: generation time ≤ 1.2 × rollout time.
2. EvoTorch's ``GeneticAlgorithm`` (Gaussian mutation σ = 0.02 on every weight, elitist, no
   re-evaluation) on ``GymNE`` with the same environment, network and population. EvoTorch needs
   ray (and asks for numpy 2), which would change the zoo's environment, so the script makes its own virtual
   environment (``--venv``, default /tmp/dga-bench-venv: EvoTorch, ray, torch, gymnasium, Box2D) and runs EvoTorch
   there; the zoo never imports it. Goal: ≥ 1.0 × EvoTorch's generations per second.
   Episodes are cut at ``--episode-steps`` in both, so that a generation is the same work.
Also: the two ways to draw ε for a mutation (a generator seeded per mutation, as the zoo does, and
the official shared noise table), for the 1 M-weight DQN network.
"""
from __future__ import annotations

import argparse
import json
import os
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


def evotorch_venv(path: Path) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        print(f"making {path} for EvoTorch…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(path)], check=True)
        # --no-deps: EvoTorch's own list (pandas, mlflow hooks, …) is more than its GA on GymNE needs
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "evotorch", "cma"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "ray", "torch", "gymnasium", "box2d==2.3.10", "pygame-ce"], check=True)
    return python


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--population", type=int, default=150)
    parser.add_argument("--episode-steps", type=int, default=200)
    parser.add_argument("--venv", type=Path, default=Path("/tmp/dga-bench-venv"))
    parser.add_argument("--skip-evotorch", action="store_true")
    args = parser.parse_args()

    zoo_ = bench_zoo(args.generations, args.population, args.episode_steps)
    print(f"zoo Deep GA: {zoo_['seconds_per_generation']:.2f} s/generation, pure rollouts "
          f"{zoo_['rollout_seconds_per_generation']:.2f} s: ratio "
          f"{zoo_['seconds_per_generation'] / zoo_['rollout_seconds_per_generation']:.3f} (goal ≤ 1.2); "
          f"{zoo_['env_steps_per_second']:.0f} env steps/s", flush=True)
    noise = bench_noise()
    print(f"ε for {noise['weights']} weights: seeded generator {noise['ms_seeded_generator']:.1f} ms, "
          f"noise table {noise['ms_noise_table']:.1f} ms", flush=True)
    result = {"zoo": zoo_, "noise": noise, "args": vars(args) | {"venv": str(args.venv)}}
    if not args.skip_evotorch:
        python = evotorch_venv(args.venv)
        out = subprocess.run([str(python), "-c", EVOTORCH, str(args.population), str(args.generations),
                              str(args.episode_steps)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
        if out.returncode != 0:
            raise SystemExit(f"EvoTorch failed:\n{out.stderr[-3000:]}")
        evo = json.loads(out.stdout.strip().splitlines()[-1])
        result["evotorch"] = evo
        print(f"EvoTorch GA: {evo['seconds_per_generation']:.2f} s/generation, {evo['env_steps_per_second']:.0f} env steps/s; "
              f"zoo generations/s ÷ EvoTorch's: {evo['seconds_per_generation'] / zoo_['seconds_per_generation']:.2f} "
              f"(goal ≥ 1.0); env steps/s ratio {zoo_['env_steps_per_second'] / evo['env_steps_per_second']:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
