"""Evaluate a training checkpoint on the real task and append one row to a CSV.

    python examples/evaluate.py outputs/2025-01-01/12-00-00                 # latest checkpoint
    python examples/evaluate.py run/ --episodes 100 --csv results.csv   # or a checkpoint file

Everything is rebuilt from the checkpoint alone (loaded with ``weights_only=True``): the world
model and actor from their stored constructor specs (types included, never guessed from parameter
names) and the env from the stored task name and kwargs, so the eval env matches training. The
policy acts closed loop (z_t = E(o_t) on every real observation) and deterministically (tanh(mu),
or the FlowActor's ODE from a_0 = 0); returns are sums of the raw real env reward.

The summary goes to stdout; the row goes to ``--csv`` (default: ``<run dir>/evaluation.csv``),
with a header when the file is new. A missing or unreadable checkpoint, or a CSV of other columns
(checked before any episode runs), exits with status 2 and a one-line message naming the path.
The locomotion tasks also get ``forward_velocity``, the mean forward torso velocity v_x (m/s) over
every step of the evaluated episodes, and the ``stands_still`` / ``falls`` flags; all three are
empty for the cartpole. ``task`` is the task as configured (``cartpole_balance`` for the cartpole
started upright). The printed line gives the mean return with its standard error and the episode
count; a progress bar on stderr counts the episodes.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import NoReturn

import torch
from tqdm import tqdm

from torchrl_flowmbpo.trainers import (
    CheckpointError,
    evaluate_policy,
    find_forward_velocity_index,
    format_return,
    load_checkpoint,
    load_policy,
    resolve_checkpoint,
)
from torchrl_flowmbpo.trainers.console import (
    init_warp_quietly,
    interrupted,
    plain_torchrl_console,
)
from torchrl_flowmbpo.trainers.evaluation_csv import (
    EVAL_SEED_OFFSET,
    REQUIRED,
    append_row,
    check_csv,
    make_row,
)
from torchrl_flowmbpo.trainers.factories import make_task_env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Deterministic closed-loop evaluation of a checkpoint on the real task."
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="a checkpoint-<step>.torchrl file, or a run directory (its newest)",
    )
    parser.add_argument(
        "--episodes", type=int, default=100, help="episodes to evaluate (default: 100)"
    )
    parser.add_argument(
        "--num-envs",
        type=int,
        default=10,
        help="parallel eval envs (capped at --episodes); each runs ceil(episodes/n) episodes",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="eval env seed (default: checkpoint seed + 1000)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--csv",
        type=Path,
        default=None,
        help="CSV to append to (default: <run dir>/evaluation.csv)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.num_envs < 1:
        parser.error("--episodes and --num-envs must be >= 1")
    return args


def fail(message: str) -> NoReturn:
    """Exits with status 2 and the first line of ``message``."""
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    print(f"evaluate.py: error: {first_line}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    plain_torchrl_console()
    try:
        path, run_dir = resolve_checkpoint(args.checkpoint)
    except CheckpointError as err:
        fail(str(err))
    csv_path = args.csv if args.csv is not None else run_dir / "evaluation.csv"
    try:
        check_csv(csv_path)  # before the episodes, which take minutes on the locomotion tasks
    except ValueError as err:
        fail(str(err))
    print(f"Loading {path} ({path.stat().st_size / 2**20:.1f} MB) ...", file=sys.stderr)
    try:
        state = load_checkpoint(path, required=REQUIRED)
    except CheckpointError as err:
        fail(str(err))
    print(
        "Building the task (the first run on this machine compiles Warp kernels, ~1 min) ...",
        file=sys.stderr,
    )
    init_warp_quietly(args.device)
    seed = state["seed"] + EVAL_SEED_OFFSET if args.seed is None else args.seed
    torch.manual_seed(seed)
    try:
        env = make_task_env(
            state["specs"]["env"],
            num_envs=min(args.num_envs, args.episodes),
            device=args.device,
            seed=seed,
        )
        policy = load_policy(state, env, args.device)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        fail(f"Checkpoint {path} cannot be rebuilt: {type(err).__name__}: {err}")
    num_envs = env.batch_size.numel()
    with tqdm(total=math.ceil(args.episodes / num_envs) * num_envs, unit="episodes") as bar:
        stats = evaluate_policy(
            env,
            policy,
            episodes=args.episodes,
            max_steps_per_episode=env.base_env.episode_length,
            forward_velocity_index=find_forward_velocity_index(env),
            on_episode=bar.update,
        )
    row = make_row(state, stats, path)
    append_row(csv_path, row)
    flags = [name for name in ("stands_still", "falls") if row[name] not in ("", 0)]
    wm = row["world_model_type"]
    if row["integrator"]:
        wm += f" ({row['integrator']}, K={row['flow_steps']})"
    velocity = row["forward_velocity"]
    velocity_text = f"forward velocity {velocity:.2f} m/s, " if velocity != "" else ""
    print(
        f"Evaluation of {row['variant']} on {row['task']} (seed {row['seed']}, iteration "
        f"{row['iteration']}, {row['frames']} frames; actor {row['actor_type']}, WM {wm}; "
        f"eval seed {seed}): {row['episodes']} episodes, {format_return(stats)}, std "
        f"{row['return_std']:.1f}, length {row['length_mean']:.0f} ± {row['length_std']:.0f}, "
        f"return/step {row['return_per_step']:.2f}, {velocity_text}time limit "
        f"{row['time_limit_fraction']:.0%}" + (f" [{', '.join(flags)}]" if flags else "")
    )
    print(f"Row appended to {csv_path}")


if __name__ == "__main__":
    with interrupted("evaluate.py"):
        main()
