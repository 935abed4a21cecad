"""Are a checkpoint's world-model gradients right? d(return)/d(actions), model vs simulator.

    python examples/gradient_check.py run/checkpoints/checkpoint_83.pt
    python examples/gradient_check.py RUN_DIR --horizon 16 --states 256 --seed 0
    python examples/gradient_check.py RUN_DIR --start trot    # from the Ant trot's states
    python examples/gradient_check.py RUN_DIR --smooth 0.3    # slopes of the noise-smoothed return

PWM's actor follows the gradient of the imagined return through the world model, so a model with
accurate values but wrong slopes still misleads it. This script rebuilds the world model, the
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
from typing import Any

import torch
from omegaconf import OmegaConf
from tensordict.nn import TensorDictModule

from torchrl_flowmbpo.diagnostics import (
    action_gradient_accuracy,
    collect_rollouts,
    make_exact_real_gradient,
    make_real_return,
)
from torchrl_flowmbpo.envs import TASKS, make_env
from torchrl_flowmbpo.envs.controllers import REFERENCE_CONTROLLERS, Controller
from torchrl_flowmbpo.envs.locomotion import task_kwargs
from torchrl_flowmbpo.recipes import CheckpointError, load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import REQUIRED, load_policy, resolve_checkpoint
from utils import make_reward_normalization, make_task_env

#: Half-width of the uniform random action sequences (inside the [-1, 1] bounds, so the
#: central differences stay two-sided).
ACTION_RANGE = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="World-model vs real gradient of the return w.r.t. an action sequence."
    )
    parser.add_argument(
        "checkpoint", type=Path, help="a checkpoint_<iteration>.pt file, or a run directory"
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


def load_run(checkpoint: Path, script: str) -> tuple[Path, dict[str, Any]]:
    """``(checkpoint file, state)`` of a checkpoint file or run directory; exits with a one-line
    message naming ``script`` when nothing loadable is there."""
    try:
        path, _ = resolve_checkpoint(checkpoint)
        return path, load_checkpoint(path, required=(*REQUIRED, "config"))
    except CheckpointError as err:
        sys.exit(f"{script}: error: {err}")


def reward_units(state: dict[str, Any]) -> tuple[float, float]:
    """``(scale, loc)`` of the checkpoint's reward normaliser: raw = model reward · scale + loc."""
    norm = make_reward_normalization(OmegaConf.create(state["config"]))
    norm.load_state_dict(state["modules"]["reward_norm"])
    return float(norm.scale), float(norm.loc)


def start_controller(start: str, task: str) -> Controller | None:
    """A fresh reference controller of the task named ``start`` (observation -> action), or
    None for ``"policy"`` (the checkpoint's own); exits with a one-line message naming the
    allowed values when the task has no such controller."""
    if start == "policy":
        return None
    controllers = REFERENCE_CONTROLLERS.get(task, {})
    if start not in controllers:
        allowed = ", ".join(["policy", *controllers])
        sys.exit(f"gradient_check.py: error: --start {start!r} is not one of: {allowed} ({task}).")
    return controllers[start]()


def start_observations(env, policy, steps: int) -> torch.Tensor:
    """One observation per env ``[N, obs_dim]``, env i's at step ``i * steps // N`` of a
    closed-loop rollout of ``policy``: the states it visits, early and late."""
    obs = collect_rollouts(env, policy, steps).get("observation")
    n = obs.shape[0]
    times = torch.arange(n, device=obs.device) * steps // n
    return obs[torch.arange(n, device=obs.device), times]


def format_report(result: dict[str, Any], *, smoothed: bool = False, exact: bool = False) -> str:
    """The scalars on three lines, then the per-step cosine as a table (``smoothed``: the real
    line compares the two halves of the noise pairs, not two finite-difference steps, and a
    fourth line scores the model's zeroth-order slope, from its returns alone; ``exact``: the real
    line compares the exact gradient with differences at the reference step)."""
    lines = [
        f"values:    corr(model, real) {result['value_corr']:.3f}; mean return model "
        f"{result['model_return_mean']:.3f}, real {result['real_return_mean']:.3f}",
        f"gradients: cos per state mean {result['grad_cos_mean']:.3f}, median "
        f"{result['grad_cos_median']:.3f}; first-action sign agreement "
        f"{result['first_action_sign_agreement']:.3f}; |model| / |real| "
        f"{result['grad_norm_ratio']:.3f}",
    ]
    if "real_self_cos_mean" in result:
        if smoothed:
            pair = "half the pairs, the other half"
        else:
            pair = "exact, real differenced" if exact else "at eps, real"
            pair += " at reference eps"
        lines.append(
            f"real:      cos(real {pair}) per state mean "
            f"{result['real_self_cos_mean']:.3f}, median {result['real_self_cos_median']:.3f}"
        )
    if "model_zeroth_cos_mean" in result:
        lines.append(
            "zeroth:    cos(model from its returns at half the pairs, real at the other half) "
            f"per state mean {result['model_zeroth_cos_mean']:.3f}, median "
            f"{result['model_zeroth_cos_median']:.3f}; |model| / |real| "
            f"{result['model_zeroth_norm_ratio']:.3f}"
        )
    lines.append("   t  cos(dR/da_t)  |model| / |real|")
    steps = zip(result["grad_cos_per_step"], result["grad_norm_ratio_per_step"], strict=True)
    lines += [f"{t:4d}  {cos:12.3f}  {ratio:15.3f}" for t, (cos, ratio) in enumerate(steps)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    path, state = load_run(args.checkpoint, "gradient_check.py")
    task = state["specs"]["env"]["name"]
    # Checked on the class, before the simulator is built and compiled.
    if not hasattr(TASKS.get(task), "set_state_from_observation"):
        sys.exit(
            f"gradient_check.py: error: task {task!r} cannot be restarted from an observation "
            "(its env class has no set_state_from_observation)."
        )
    controller = start_controller(args.start, task)
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
    starter = policy
    if controller is not None:
        starter = TensorDictModule(controller, in_keys=["observation"], out_keys=["action"])
    observations = start_observations(env, starter, env.base_env.episode_length)
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    shape = (args.states, args.horizon, env.action_spec.shape[-1])
    actions = (2 * torch.rand(shape, generator=generator, device=args.device) - 1) * ACTION_RANGE
    exact = None
    if (
        args.smooth is None
        and not args.finite_differences
        and "differentiable" in task_kwargs(task)
    ):
        spec = state["specs"]["env"]
        differentiable_env = make_env(
            task,
            num_envs=args.states,
            device=args.device,
            seed=args.seed,
            **{**spec["kwargs"], "differentiable": True},
        )
        exact = make_exact_real_gradient(differentiable_env, gamma=gamma)
    result = action_gradient_accuracy(
        world_model,
        observations,
        actions,
        # The base env: the step counter and return trackers must not see the restarts.
        make_real_return(env.base_env, gamma=gamma),
        gamma=gamma,
        reward_scale=scale,
        reward_loc=loc,
        eps=args.eps,
        reference_eps=args.reference_eps,
        smoothing=args.smooth,
        smoothing_samples=args.smooth_samples,
        # The actions' stream, continued: a second generator with the same seed would draw the
        # noise from the same uniforms as the actions.
        generator=generator,
        real_gradient=exact,
    )
    counters = state["counters"]
    if exact is not None:
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
    print(format_report(result, smoothed=args.smooth is not None, exact=exact is not None))


if __name__ == "__main__":
    main()
