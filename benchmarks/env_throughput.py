"""Env-steps/s of the locomotion envs, through TorchRL and through the raw Newton model.

For each task and number of worlds N, the same Newton model is stepped two ways, with uniform
random actions in [-1, 1]:

* ``env``: our TorchRL env, driven like a collector drives it
  (``env.step_and_maybe_reset``, auto-resets included);
* ``raw``: a second ``SolverMuJoCo`` on the same model, its substeps captured in a Warp
  graph, random torques written into ``control.joint_f``, fallen worlds put back to the
  initial state with ``solver.reset``; no observation, reward or reset noise.

One env-step is 1/60 s of simulated time; N worlds stepped once count as N env-steps. Each
figure is the best of ``--repeats`` timed runs, raw and env alternating. The two runs visit
different states (different random actions and resets), and the contact load changes the
physics cost, so ``env / raw`` is noisy. The last column is measured on the env's own states:
the share of the env's wall time spent replaying the physics graph; the rest is our (and
TorchRL's) overhead.

Usage:
    python benchmarks/env_throughput.py                        # all tasks, N = 1, 16, 64, 256
    python benchmarks/env_throughput.py --tasks ant --num-envs 64 --steps 100 --repeats 1
"""

from __future__ import annotations

import argparse
import time

import torch

from torchrl_flowmbpo.envs.locomotion import TASKS, LocomotionEnv, make_env


class RawNewton:
    """The env's Newton model stepped directly: captured substeps, no TorchRL, no env code."""

    def __init__(self, env: LocomotionEnv) -> None:
        import newton
        import warp as wp

        model = env.sim.model
        self.n, self.num_joints = env.num_envs, env.num_joints
        self.termination_height = env.termination_height
        self.gear = env.action_scale * torch.tensor(env.gear)
        self.solver = newton.solvers.SolverMuJoCo(model, njmax=200, nconmax=100)
        self.s0, self.s1, self.control = model.state(), model.state(), model.control()
        self.joint_q = wp.to_torch(self.s0.joint_q).view(self.n, -1)
        self.joint_f = wp.to_torch(self.control.joint_f).view(self.n, -1)
        self.fallen = torch.zeros(self.n + 1, dtype=torch.bool)
        self.fallen_wp = wp.from_torch(self.fallen, dtype=wp.bool)

        def substeps() -> None:
            a, b = self.s0, self.s1
            for _ in range(env.sim.sim_substeps):
                a.clear_forces()
                self.solver.step(a, b, self.control, None, env.sim.sim_dt)
                a, b = b, a

        substeps()
        with wp.ScopedCapture() as cap:
            substeps()
        self.graph = cap.graph
        self.solver.reset(self.s0)

    def steps_per_s(self, steps: int, warmup: int) -> float:
        import warp as wp

        for i in range(warmup + steps):
            if i == warmup:
                start = time.perf_counter()
            self.joint_f[:, 6:] = (2.0 * torch.rand(self.n, self.num_joints) - 1.0) * self.gear
            wp.capture_launch(self.graph)
            self.fallen[: self.n] = ~(self.joint_q[:, 2] >= self.termination_height)
            if self.fallen.any():
                self.solver.reset(self.s0, self.fallen_wp)
        return self.n * steps / (time.perf_counter() - start)


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
    # RawNewton assumes a floating base and a height termination: locomotion tasks only.
    tasks = [name for name, cls in TASKS.items() if issubclass(cls, LocomotionEnv)]
    parser.add_argument("--tasks", nargs="+", default=tasks, choices=tasks)
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 16, 64, 256])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps before each run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per figure (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import warp as wp

    wp.config.log_level = wp.LOG_WARNING  # no kernel-cache lines between the table rows

    print("| task | N | env (steps/s) | raw Newton (steps/s) | env / raw | env time in physics |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        for n in args.num_envs:
            env = make_env(task, num_envs=n, seed=0)
            raw = RawNewton(env)
            raw_best, env_best, share = 0.0, 0.0, 0.0
            for _ in range(args.repeats):
                raw_best = max(raw_best, raw.steps_per_s(args.steps, args.warmup))
                rate, frac = env_steps_per_s(env, args.steps, args.warmup)
                if rate > env_best:
                    env_best, share = rate, frac
            figures = f"{env_best:,.0f} | {raw_best:,.0f} | {env_best / raw_best:.0%} | {share:.0%}"
            print(f"| {task} | {n} | {figures} |", flush=True)
            env.close()


if __name__ == "__main__":
    main()
