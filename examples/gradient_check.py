"""Are a checkpoint's world-model gradients right? d(return)/d(actions), model vs simulator.

    python examples/gradient_check.py run/checkpoints/checkpoint-000000000083.torchrl
    python examples/gradient_check.py RUN_DIR --horizon 16 --states 256 --seed 0
    python examples/gradient_check.py RUN_DIR --start trot    # from the Ant trot's states
    python examples/gradient_check.py RUN_DIR --smooth 0.3    # slopes of the noise-smoothed return

PWM's actor follows the gradient of the imagined return through the world model, so a model with
accurate values but wrong slopes still misleads it. This script (a thin CLI over
:func:`torchrl_flowmbpo.diagnostics.checkpoint_gradients.policy_gradient_accuracy`) rebuilds the
world model, the
actor and the reward normaliser from the checkpoint alone (as ``examples/evaluate.py`` does),
collects real start states with the stochastic policy (one per env, spread over a whole episode;
``--start NAME`` collects them with one of the task's scripted reference controllers instead,
e.g. the Ant's ``trot``, to test the slope where a gait is rather than where the policy is),
draws uniform random open-loop action sequences in [-0.5, 0.5] and runs
:func:`torchrl_flowmbpo.diagnostics.action_gradient_accuracy`: the model's gradient by autograd
against central finite differences in the simulator restarted at each state (``--smooth SIGMA``:
the slopes of the return smoothed by Gaussian action noise of that std on both sides, the slope
a stochastic policy follows on a rugged return; ``--smooth-samples`` antithetic pairs). Where the
task has a differentiable simulator (the cartpole), the real gradient is exact instead: autograd
through ``differentiable=True`` steps of the same task (``--finite-differences`` forces the
differences; ``--reference-eps`` then compares the exact gradient with differences of that
step). Returns are in raw reward units, with the checkpoint's γ. Metric definitions:
``docs/metrics.md`` (Diagnostics).

The simulator must be restartable from an observation (``set_state_from_observation``): every
built-in task is (the locomotion tasks restart at the observed state with the torso's horizontal
position at the origin, which nothing depends on). Errors exit with status 1 and a one-line message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from torchrl_flowmbpo.diagnostics.checkpoint_gradients import (
    ACTION_RANGE,
    format_report,
    policy_gradient_accuracy,
    start_controller,
)
from torchrl_flowmbpo.envs import TASKS
from torchrl_flowmbpo.trainers import CheckpointError, load_policy
from torchrl_flowmbpo.trainers.checkpoint import load_run_checkpoint
from torchrl_flowmbpo.trainers.console import interrupted, quiet_console
from torchrl_flowmbpo.trainers.evaluation_csv import REQUIRED
from torchrl_flowmbpo.trainers.factories import make_task_env, reward_units


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="World-model vs real gradient of the return w.r.t. an action sequence."
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="a checkpoint-<step>.torchrl file, or a run directory (its newest)",
    )
    parser.add_argument("--horizon", type=int, default=16, help="actions per sequence (16)")
    parser.add_argument("--states", type=int, default=256, help="real start states (256)")
    parser.add_argument("--seed", type=int, default=0, help="env, policy and action seed (0)")
    parser.add_argument("--eps", type=float, default=0.05, help="finite-difference step (0.05)")
    parser.add_argument(
        "--reference-eps",
        type=float,
        default=None,
        help="also difference the real return with this step and report how much the real "
        "gradient depends on the step (rugged contact dynamics; doubles the simulator time)",
    )
    parser.add_argument(
        "--smooth",
        type=float,
        default=None,
        help="compare the slopes of the return smoothed by Gaussian action noise of this std "
        "(e.g. the policy's, ~0.3) instead of the finite-difference slopes",
    )
    parser.add_argument(
        "--smooth-samples",
        type=int,
        default=128,
        help="antithetic noise pairs of --smooth (128; 2 x this + 1 simulator rollouts)",
    )
    parser.add_argument(
        "--start",
        default="policy",
        help="who visits the start states: the checkpoint's stochastic 'policy' (default) or a "
        "reference controller of the task (e.g. 'trot' on ant)",
    )
    parser.add_argument(
        "--finite-differences",
        action="store_true",
        help="difference the real return even where the simulator gives exact gradients",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    args = parser.parse_args(argv)
    if args.horizon < 1 or args.states < 2 or args.eps <= 0:
        parser.error("need --horizon >= 1, --states >= 2 and --eps > 0")
    if args.reference_eps is not None and args.reference_eps <= 0:
        parser.error(f"need --reference-eps > 0, got {args.reference_eps}")
    if args.smooth is not None and (args.smooth <= 0 or args.smooth_samples < 2):
        parser.error(
            f"need --smooth > 0 and --smooth-samples >= 2, got {args.smooth} and "
            f"{args.smooth_samples}"
        )
    if args.smooth is not None and args.reference_eps is not None:
        parser.error("--reference-eps applies to finite differences, not to --smooth")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_console(args.device)
    try:
        path, state = load_run_checkpoint(args.checkpoint, (*REQUIRED, "config"))
    except CheckpointError as err:
        sys.exit(f"gradient_check.py: error: {err}")
    task = state["specs"]["env"]["name"]
    # Checked on the class, before the simulator is built and compiled.
    if not hasattr(TASKS.get(task), "set_state_from_observation"):
        sys.exit(
            f"gradient_check.py: error: task {task!r} cannot be restarted from an observation "
            "(its env class has no set_state_from_observation)."
        )
    try:
        controller = start_controller(args.start, task)
    except ValueError as err:
        sys.exit(f"gradient_check.py: error: {err}")
    torch.manual_seed(args.seed)
    try:
        env = make_task_env(
            state["specs"]["env"], num_envs=args.states, device=args.device, seed=args.seed
        )
        policy = load_policy(state, env, args.device)
        scale, loc = reward_units(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        sys.exit(f"gradient_check.py: error: {path} cannot be rebuilt: {type(err).__name__}: {err}")
    world_model = policy[0].module  # load_policy's first module is encoder_operator(world_model)
    gamma = float(state["config"]["algo"]["gamma"])
    result, exact = policy_gradient_accuracy(
        world_model,
        env,
        policy,
        state["specs"]["env"],
        gamma=gamma,
        reward_scale=scale,
        reward_loc=loc,
        horizon=args.horizon,
        seed=args.seed,
        controller=controller,
        eps=args.eps,
        reference_eps=args.reference_eps,
        smooth=args.smooth,
        smooth_samples=args.smooth_samples,
        finite_differences=args.finite_differences,
    )
    counters = state["counters"]
    if exact:
        slope = "exact real gradient (differentiable simulator)"
    elif args.smooth is None:
        slope = f"eps = {args.eps}"
    else:
        slope = f"slopes smoothed by σ = {args.smooth} ({args.smooth_samples} antithetic pairs)"
    print(
        f"Gradient check of {state['variant']} on {task} (seed {state['seed']}, iteration "
        f"{counters['iteration']}, {counters['frames']} frames; WM "
        f"{state['specs']['world_model']['type']}): {args.states} start states of the "
        f"{'stochastic policy' if controller is None else args.start + ' controller'}, "
        f"H = {args.horizon} actions U[-{ACTION_RANGE}, {ACTION_RANGE}], "
        f"γ = {gamma}, {slope}, raw rewards (model reward × {scale:.4g} {loc:+.4g})"
    )
    print(format_report(result, smoothed=args.smooth is not None, exact=exact))


if __name__ == "__main__":
    with interrupted("gradient_check.py"):
        main()
