"""Env-steps/s of the locomotion envs, through TorchRL and through the raw Newton model.

For each task and number of worlds N, the same Newton model is stepped two ways, with uniform
random actions in [-1, 1]:

* ``env``: our TorchRL env, driven like a collector drives it
  (``env.step_and_maybe_reset``, auto-resets included);
* ``raw``: a fresh ``SolverMuJoCo`` on the same model, its substeps captured in a Warp graph,
  random torques written into ``control.joint_f``; nothing else (no observation, reward,
  termination or reset).

One env-step is 1/60 s of simulated time for all N worlds counted as N env-steps.

Usage:
    python benchmarks/env_throughput.py                        # all tasks, N = 1, 16, 64, 256
    python benchmarks/env_throughput.py --tasks ant --num-envs 64 --steps 100
"""

from __future__ import annotations

import argparse
import time

import torch

from torchrl_flowmbpo.envs.locomotion import TASKS, LocomotionEnv, make_env


def raw_steps_per_s(env: LocomotionEnv, steps: int, warmup: int) -> float:
    """Step the env's Newton model directly with a captured graph, no TorchRL."""
    import newton
    import warp as wp

    sim = env.sim
    model = sim.model
    solver = newton.solvers.SolverMuJoCo(model, njmax=200, nconmax=100)
    s0, s1, control = model.state(), model.state(), model.control()
    n = env.num_envs
    joint_f = wp.to_torch(control.joint_f).view(n, -1)
    gear = env.action_scale * torch.tensor(env.gear)

    def substeps() -> None:
        a, b = s0, s1
        for _ in range(sim.substeps):
            a.clear_forces()
            solver.step(a, b, control, None, sim.sim_dt)
            a, b = b, a

    substeps()
    with wp.ScopedCapture() as cap:
        substeps()
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        joint_f[:, 6:] = (2.0 * torch.rand(n, env.num_joints) - 1.0) * gear
        wp.capture_launch(cap.graph)
    return n * steps / (time.perf_counter() - start)


def env_steps_per_s(env: LocomotionEnv, steps: int, warmup: int) -> float:
    """Step the TorchRL env as a collector does: step_and_maybe_reset with random actions."""
    td = env.reset()
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        td["action"] = env.action_spec.rand()
        _, td = env.step_and_maybe_reset(td)
    return env.num_envs * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 16, 64, 256])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps before timing")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print("| task | N | env (steps/s) | raw Newton (steps/s) | env / raw |")
    print("|---|---|---|---|---|")
    for task in args.tasks:
        for n in args.num_envs:
            env = make_env(task, num_envs=n, seed=0)
            raw = raw_steps_per_s(env, args.steps, args.warmup)
            ours = env_steps_per_s(env, args.steps, args.warmup)
            print(f"| {task} | {n} | {ours:,.0f} | {raw:,.0f} | {ours / raw:.0%} |", flush=True)
            env.close()


if __name__ == "__main__":
    main()
