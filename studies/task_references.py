"""Reference returns of scripted behaviours on the tasks: zero action, uniform random actions
and the task's reference controllers (``torchrl_flowmbpo.diagnostics.controllers``, e.g. the Ant
trot).

Learning curves mean little without them: a motionless Ant already earns ~1,250 per episode.
For each task and behaviour, ``--num-envs`` worlds run one full episode each (the first episode
of every world: its return up to and including its first done step) and the mean and std of
the return and of the episode length are printed as a Markdown table.

Usage:
    python studies/task_references.py                       # ant, 64 worlds, seed 3
    python studies/task_references.py --tasks ant anymal humanoid --num-envs 16
    python studies/task_references.py --tasks cartpole --kwargs '{"start_angle": 0.0}' \
        --csv docs/data/task_references.csv                    # balance; rows appended to a CSV

``--csv`` appends one row per task and behaviour (``task``, ``kwargs`` as JSON, ``behaviour``,
``return_mean``, ``return_std``, ``length_mean``, ``episodes``, ``seed``): the training scripts
draw the reference lines of a learning curve from ``docs/data/task_references.csv`` for the run
whose task name and keyword arguments match a row's exactly.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase, RewardSum, TransformedEnv

from torchrl_flowmbpo.diagnostics.controllers import REFERENCE_CONTROLLERS
from torchrl_flowmbpo.envs import TASKS, make_env
from torchrl_flowmbpo.trainers.console import interrupted, quiet_console

BEHAVIOURS = ("zero", "random")
#: Columns of the ``--csv`` file, in order.
CSV_COLUMNS = (
    "task",
    "kwargs",
    "behaviour",
    "return_mean",
    "return_std",
    "length_mean",
    "episodes",
    "seed",
)


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
    parser.add_argument(
        "--kwargs", default="{}", help="task keyword arguments as JSON, e.g. '{\"start_angle\": 0}'"
    )
    parser.add_argument("--csv", type=Path, help="also append the rows to this CSV")
    args = parser.parse_args(argv)
    if args.num_envs < 1:
        parser.error(f"--num-envs {args.num_envs}: must be >= 1")
    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as err:
        parser.error(f"--kwargs {args.kwargs!r}: not JSON ({err})")
    if not isinstance(kwargs, dict):
        parser.error(f"--kwargs {args.kwargs!r}: must be a JSON object")
    torch.set_num_threads(1)
    quiet_console("cpu")
    torch.manual_seed(args.seed)  # the random behaviour draws from torch's global generator
    if args.episode_length is not None:
        kwargs["episode_length"] = args.episode_length
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
    if args.csv is not None:
        write_csv(args.csv, rows, kwargs, num_envs=args.num_envs, seed=args.seed)
    return rows


def write_csv(
    path: Path,
    rows: list[tuple[str, str, float, float, float]],
    kwargs: dict,
    *,
    num_envs: int,
    seed: int,
) -> None:
    """Appends ``rows`` to ``path`` (header first when the file is new)."""
    new = not path.is_file() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(CSV_COLUMNS)
        for task, behaviour, mean, std, length in rows:
            row = (task, json.dumps(kwargs, sort_keys=True), behaviour)
            writer.writerow((*row, f"{mean:.2f}", f"{std:.2f}", f"{length:.1f}", num_envs, seed))


if __name__ == "__main__":
    with interrupted("task_references.py"):
        main()
