"""Add rollouts of a finished SAC run's final policy, with Gaussian action noise, to a dataset.

    python examples/sac_baseline.py env=anymal sac.utd_ratio=0.125 collector.total_frames=500000 \\
        threads=1 hydra.run.dir=runs/sac_anymal dataset.record=runs/datasets/anymal_sac
    python examples/build_dataset.py runs/sac_anymal runs/datasets/anymal_sac --frames 100000

The first command records the whole history of a SAC run (random actions to walking) into the
dataset's ``history`` part; this script adds a part (default ``final_noisy``) of ``--frames``
frames from the run's latest checkpoint: the deterministic SAC action ``tanh(mu)`` plus
``N(0, noise^2)`` per dimension, clipped to the action bounds, on the task and env count of the
dataset. The part commits after every batch; rerunning the command continues an interrupted part
and does nothing once it holds ``--frames``. Errors exit with status 1 and a one-line message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from torchrl_flowmbpo.data import DatasetError, DatasetRecorder, read_manifest
from torchrl_flowmbpo.data.noisy_rollouts import noisy_policy, record_rollouts
from torchrl_flowmbpo.trainers import CheckpointError, find_latest_checkpoint, load_checkpoint
from torchrl_flowmbpo.trainers.console import interrupted, quiet_console
from torchrl_flowmbpo.trainers.factories import make_task_env
from torchrl_flowmbpo.trainers.sac_factories import make_actor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a SAC run directory (its latest checkpoint)")
    parser.add_argument("dataset", type=Path, help="the dataset directory (created if needed)")
    parser.add_argument("--frames", type=int, default=100_000, help="frames to add (100000)")
    parser.add_argument("--noise", type=float, default=0.3, help="action noise std (0.3)")
    parser.add_argument("--part", default="final_noisy", help="the part's name (final_noisy)")
    parser.add_argument(
        "--num-envs", type=int, default=None, help="parallel envs (default: the dataset's, or 32)"
    )
    parser.add_argument("--steps", type=int, default=8, help="env steps per batch (8)")
    parser.add_argument("--seed", type=int, default=0, help="env and noise seed (0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.noise < 0 or args.steps < 1:
        parser.error(
            f"--frames={args.frames} and --steps={args.steps} must be >= 1 and "
            f"--noise={args.noise} >= 0"
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_console("cpu")
    torch.set_num_threads(args.threads)
    try:
        checkpoint = find_latest_checkpoint(args.run) if args.run.is_dir() else args.run
        state = load_checkpoint(checkpoint or args.run, required=("modules", "specs"))
        if "sac" not in state["specs"]:
            raise CheckpointError(f"{args.run} is not a SAC run (its checkpoint has no SAC spec).")
        num_envs = args.num_envs
        if num_envs is None:
            has_manifest = (args.dataset / "manifest.json").is_file()
            num_envs = read_manifest(args.dataset)["num_envs"] if has_manifest else 32
        env_spec = state["specs"]["env"]
        env = make_task_env(env_spec, num_envs=num_envs, device="cpu", seed=args.seed)
        obs_dim = env.observation_spec["observation"].shape[-1]
        action_spec = env.action_spec_unbatched
        frames_per_batch = num_envs * args.steps
        recorder = DatasetRecorder(
            args.dataset,
            args.part,
            task=env_spec["name"],
            env_kwargs=env_spec["kwargs"],
            obs_dim=obs_dim,
            action_dim=action_spec.shape[-1],
            num_envs=num_envs,
            capacity=args.frames + frames_per_batch,
            source={
                "policy": "sac_final",
                "action_noise_std": args.noise,
                "checkpoint": str(Path(checkpoint).resolve()),
                "iteration": state["counters"]["iteration"],
            },
            seed=args.seed,
        )
    except (CheckpointError, DatasetError, ValueError) as err:
        sys.exit(f"build_dataset: {err}")
    remaining = args.frames - recorder.frames
    if remaining <= 0:
        print(f"Part {args.part!r} already holds {recorder.frames} frames.")
        return
    # A continued part gets new start states and noise.
    torch.manual_seed(args.seed + recorder.frames)
    env.set_seed(args.seed + recorder.frames)
    actor = make_actor(obs_dim, action_spec, hidden_sizes=state["specs"]["sac"]["hidden_sizes"])
    actor.load_state_dict(state["modules"]["actor"])
    policy = noisy_policy(actor, args.noise, action_spec)
    finished = record_rollouts(
        env, policy, recorder, frames=remaining, frames_per_batch=frames_per_batch
    )
    if finished.numel():
        print(f"{finished.numel()} finished episodes, mean return {float(finished.mean()):.1f}.")
    print(f"Part {args.part!r} of {args.dataset}: {recorder.frames} frames.")


if __name__ == "__main__":
    with interrupted("build_dataset.py"):
        main()
