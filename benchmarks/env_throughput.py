"""Env-steps/s of the locomotion envs, through TorchRL and through the raw Newton model.

For each task and number of worlds N, the same Newton model is stepped two ways, with uniform
random actions in [-1, 1]:

* ``env``: our TorchRL env, driven like a collector drives it
  (``env.step_and_maybe_reset``, auto-resets included);
* ``raw``: a fresh ``SolverMuJoCo`` on the same model, its substeps captured in a Warp graph,
  random torques written into ``control.joint_f``, fallen worlds put back to the initial
  state with ``solver.reset``; no observation, reward or reset noise.

The two runs visit different states (different random actions and resets), and the contact
load changes the physics cost, so ``env / raw`` is noisy. The last column is measured on the
env's own states: the share of the env's wall time spent replaying the physics graph; the
rest is our (and TorchRL's) overhead.

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
    """Step the env's Newton model directly with a captured graph, no TorchRL.

    Worlds whose torso falls below the task's termination height go back to the model's
    initial state through Newton's own ``solver.reset``, so that the raw worlds see a contact
    load like the env's auto-reset worlds (fallen robots are cheaper or dearer to simulate).
    """
    import newton
    import warp as wp

    sim = env.sim
    model = sim.model
    solver = newton.solvers.SolverMuJoCo(model, njmax=200, nconmax=100)
    s0, s1, control = model.state(), model.state(), model.control()
    n = env.num_envs
    joint_q = wp.to_torch(s0.joint_q).view(n, -1)
    joint_f = wp.to_torch(control.joint_f).view(n, -1)
    fallen = torch.zeros(n + 1, dtype=torch.bool)
    fallen_wp = wp.from_torch(fallen, dtype=wp.bool)
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
    solver.reset(s0)
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        joint_f[:, 6:] = (2.0 * torch.rand(n, env.num_joints) - 1.0) * gear
        wp.capture_launch(cap.graph)
        fallen[:n] = ~(joint_q[:, 2] >= env.termination_height)
        if fallen.any():
            solver.reset(s0, fallen_wp)
    return n * steps / (time.perf_counter() - start)


def env_steps_per_s(env: LocomotionEnv, steps: int, warmup: int) -> tuple[float, float]:
    """Step the TorchRL env as a collector does: step_and_maybe_reset with random actions.

    Returns:
        env-steps/s, and the fraction of the wall time spent inside the physics graph.
    """
    physics = 0.0
    simulate = env.sim.simulate

    def timed_simulate() -> None:
        nonlocal physics
        t = time.perf_counter()
        simulate()
        physics += time.perf_counter() - t

    env.sim.simulate = timed_simulate
    td = env.reset()
    for i in range(warmup + steps):
        if i == warmup:
            start, physics = time.perf_counter(), 0.0
        td["action"] = env.action_spec.rand()
        _, td = env.step_and_maybe_reset(td)
    wall = time.perf_counter() - start
    env.sim.simulate = simulate
    return env.num_envs * steps / wall, physics / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 16, 64, 256])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps before timing")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import warp as wp

    wp.config.quiet = True  # no kernel-cache lines between the table rows

    print("| task | N | env (steps/s) | raw Newton (steps/s) | env / raw | env time in physics |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        for n in args.num_envs:
            env = make_env(task, num_envs=n, seed=0)
            raw = raw_steps_per_s(env, args.steps, args.warmup)
            ours, share = env_steps_per_s(env, args.steps, args.warmup)
            row = f"| {task} | {n} | {ours:,.0f} | {raw:,.0f} | {ours / raw:.0%} | {share:.0%} |"
            print(row, flush=True)
            env.close()


if __name__ == "__main__":
    main()
