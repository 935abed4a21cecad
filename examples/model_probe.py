"""Does a checkpoint's world model rank simple behaviours as the simulator does?

    python examples/model_probe.py run/checkpoints/checkpoint-000000000083.torchrl
    python examples/model_probe.py RUN_DIR --envs 64 --horizons 16 64 --seed 7
    python examples/model_probe.py EXTRACTION_RUN --sac SAC_RUN   # adds the SAC policy

From the task's own start states (``envs`` fresh resets), each reference behaviour acts in the
real task; its actions are replayed open loop in the world model from the encoded first
observation, and the sums of raw rewards over the first ``h`` steps are compared. Behaviours:
``zero`` (a = 0), ``random`` (uniform in [-1, 1]), ``policy`` (the checkpoint's deterministic
actor, closed loop on real observations), the task's scripted reference controllers
(``torchrl_flowmbpo.diagnostics.controllers``: the cartpole's PD balancer ``pd``, the Ant's
open-loop ``trot``) and, with ``--sac RUN``, a SAC run's deterministic actor ``sac`` (e.g. the
policy that recorded a pretraining dataset: does the model rate its gait as the simulator
does?). A model whose ranking of these differs from the simulator's misleads the
actor however well it fits the replay data on average (e.g. a scalar reward head that rated a
falling policy above the PD balancer).

Real sums stop at an episode's first ``terminated`` step; model sums weight each reward by the
model's survival probability. Errors exit with status 1 and a one-line message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from torchrl_flowmbpo.diagnostics.behaviours import (
    Behaviour,
    deterministic_behaviour,
    reference_probe,
)
from torchrl_flowmbpo.trainers import CheckpointError, load_policy
from torchrl_flowmbpo.trainers.checkpoint import load_run_checkpoint
from torchrl_flowmbpo.trainers.console import interrupted, quiet_console
from torchrl_flowmbpo.trainers.evaluation_csv import REQUIRED
from torchrl_flowmbpo.trainers.factories import make_task_env, reward_units
from torchrl_flowmbpo.trainers.sac_factories import make_actor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="World-model vs real returns of behaviours.")
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="a checkpoint-<step>.torchrl file, or a run directory (its newest)",
    )
    parser.add_argument("--envs", type=int, default=64, help="start states (64)")
    parser.add_argument("--horizons", type=int, nargs="+", default=[16, 64], help="(16 64)")
    parser.add_argument("--seed", type=int, default=7, help="env and behaviour seed (7)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--sac", type=Path, default=None, help="a SAC checkpoint or run dir: adds behaviour sac"
    )
    args = parser.parse_args(argv)
    if args.envs < 2 or min(args.horizons) < 1:
        parser.error(f"need --envs >= 2 and --horizons >= 1, got {args.envs}, {args.horizons}")
    return args


def sac_behaviour(path: Path, env) -> Behaviour:
    """The deterministic actor of a SAC checkpoint, acting on real observations.

    Raises:
        CheckpointError: for a checkpoint that is not a SAC run's, or of another task.
    """
    _, state = load_run_checkpoint(path, ("modules", "specs"))
    if "sac" not in state["specs"]:
        raise CheckpointError(f"--sac {path} is not a SAC run (its checkpoint has no SAC spec).")
    action_spec = env.action_spec_unbatched
    obs_dim = env.observation_spec["observation"].shape[-1]
    actor = make_actor(obs_dim, action_spec, hidden_sizes=state["specs"]["sac"]["hidden_sizes"])
    try:
        actor.load_state_dict(state["modules"]["actor"])
    except RuntimeError as err:
        raise CheckpointError(f"--sac {path} does not fit this task: {err}") from None
    return deterministic_behaviour(actor)


def probe(
    state, env, policy, horizons: list[int], seed: int, extra: dict[str, Behaviour] | None = None
) -> list[dict]:
    """One row per (behaviour, horizon): mean real and model sums and their correlation."""
    world_model = policy[0].module  # load_policy's first module is encoder_operator(world_model)
    scale, loc = reward_units(state)
    task = state["specs"]["env"]["name"]
    result = reference_probe(
        world_model,
        env,
        policy,
        task,
        horizons=horizons,
        seed=seed,
        reward_scale=scale,
        reward_loc=loc,
        extra=extra,
    )
    return result["rows"]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_console(args.device)
    try:
        path, state = load_run_checkpoint(args.checkpoint, (*REQUIRED, "config"))
    except CheckpointError as err:
        sys.exit(f"model_probe.py: error: {err}")
    torch.manual_seed(args.seed)
    try:
        env = make_task_env(
            state["specs"]["env"], num_envs=args.envs, device=args.device, seed=args.seed
        )
        policy = load_policy(state, env, args.device)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        sys.exit(f"model_probe.py: error: {path} cannot be rebuilt: {type(err).__name__}: {err}")
    try:
        extra = {} if args.sac is None else {"sac": sac_behaviour(args.sac, env)}
    except CheckpointError as err:
        sys.exit(f"model_probe.py: error: {err}")
    rows = probe(state, env, policy, sorted(set(args.horizons)), args.seed, extra)
    print(
        f"Model probe of {state['variant']} on {state['specs']['env']['name']} "
        f"({state['counters']['frames']} frames): sums of raw rewards from {args.envs} start "
        "states, real vs the model's open-loop replay of the same actions"
    )
    print(f"{'behaviour':>10s} {'steps':>6s} {'real':>10s} {'model':>10s} {'corr':>7s}")
    for row in rows:
        print(
            f"{row['behaviour']:>10s} {row['horizon']:6d} {row['real']:10.3f} "
            f"{row['model']:10.3f} {row['corr']:7.3f}"
        )


if __name__ == "__main__":
    with interrupted("model_probe.py"):
        main()
