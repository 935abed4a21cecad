"""Reference returns of scripted behaviours on the tasks: zero action, uniform random actions
and the task's reference controllers (``torchrl_flowmbpo.envs.controllers``, e.g. the Ant trot).

Learning curves mean little without them: a motionless Ant already earns ~1,250 per episode.
For each task and behaviour, ``--num-envs`` worlds run one full episode each (the first episode
of every world: its return up to and including its first done step) and the mean and std of
the return and of the episode length are printed as a Markdown table.

Usage:
    python benchmarks/task_references.py                       # ant, 64 worlds, seed 3
    python benchmarks/task_references.py --tasks ant anymal humanoid --num-envs 16
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, RewardSum, TransformedEnv

from torchrl_flowmbpo.envs import TASKS, make_env
from torchrl_flowmbpo.envs.controllers import REFERENCE_CONTROLLERS

BEHAVIOURS = ("zero", "random")


def first_episodes(
    env: EnvBase, task: str, behaviour: str, max_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns and lengths ``[num_envs]`` of every world's first episode under ``behaviour``:
    ``"zero"``, ``"random"`` or a reference controller of ``task``.

    Raises:
        ValueError: an unknown behaviour, or a world whose episode outlasts ``max_steps``.
    """
    controllers = REFERENCE_CONTROLLERS.get(task, {})
    if behaviour not in (*BEHAVIOURS, *controllers):
        raise ValueError(f"behaviour {behaviour!r}: allowed {(*BEHAVIOURS, *controllers)}")
    env = TransformedEnv(env, RewardSum())
    controller = controllers[behaviour]() if behaviour in controllers else None

    def act(td: TensorDictBase) -> TensorDictBase:
        if controller is None:
            return td.set("action", torch.zeros(env.action_spec.shape))
        return td.set("action", controller(td.get("observation")))

    rollout = env.rollout(
        max_steps, None if behaviour == "random" else act, break_when_any_done=False
    )
    done = rollout["next", "done"].squeeze(-1)  # [num_envs, T]
    if not done.any(-1).all():
        raise ValueError(f"{int((~done.any(-1)).sum())} worlds ran {max_steps} steps without done")
    last = done.float().argmax(-1)  # first done step of each world
    returns = rollout["next", "episode_reward"].squeeze(-1).gather(-1, last[:, None])
    return returns.squeeze(-1), (last + 1).float()


def main(argv: Sequence[str] | None = None) -> list[tuple[str, str, float, float, float]]:
    """Prints the table; returns its rows (task, behaviour, mean return, std, mean length)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["ant"], choices=sorted(TASKS))
    parser.add_argument("--num-envs", type=int, default=64, help="worlds, one episode each")
    parser.add_argument(
        "--seed", type=int, default=3, help="seed of reset noise and random actions"
    )
    parser.add_argument(
        "--episode-length", type=int, help="task episode_length (default: the task's)"
    )
    args = parser.parse_args(argv)
    if args.num_envs < 1:
        parser.error(f"--num-envs {args.num_envs}: must be >= 1")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)  # the random behaviour draws from torch's global generator
    kwargs = {} if args.episode_length is None else {"episode_length": args.episode_length}
    rows = []
    print("| task | behaviour | return (mean ± std) | episode length |\n|---|---|---|---|")
    for task in args.tasks:
        for behaviour in (*BEHAVIOURS, *REFERENCE_CONTROLLERS.get(task, {})):
            env = make_env(task, num_envs=args.num_envs, seed=args.seed, **kwargs)
            steps = env.episode_length
            returns, lengths = first_episodes(env, task, behaviour, max_steps=steps)
            row = (task, behaviour, float(returns.mean()), float(returns.std(correction=0)))
            rows.append((*row, float(lengths.mean())))
            print(
                f"| {task} | {behaviour} | {row[2]:,.0f} ± {row[3]:,.0f} | {lengths.mean():.0f} |"
            )
            sys.stdout.flush()
    return rows


if __name__ == "__main__":
    main()
