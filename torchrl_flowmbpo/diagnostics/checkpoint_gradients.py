"""Are a checkpoint's world-model gradients right? The model's d(return)/d(actions) at real
start states against the simulator's (``examples/gradient_check.py``).

The start states are visited by the checkpoint's stochastic policy or by one of the task's
scripted reference controllers; the actions are uniform random open-loop sequences in
``[-ACTION_RANGE, ACTION_RANGE]``; the real gradient is exact where the task has a differentiable
simulator, else central finite differences (or the slopes of the noise-smoothed return).
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict.nn import TensorDictModule, TensorDictModuleBase

from torchrl_flowmbpo.diagnostics.controllers import REFERENCE_CONTROLLERS, Controller
from torchrl_flowmbpo.diagnostics.gradients import (
    action_gradient_accuracy,
    make_exact_real_gradient,
    make_real_return,
)
from torchrl_flowmbpo.diagnostics.returns import collect_rollouts
from torchrl_flowmbpo.envs import make_env
from torchrl_flowmbpo.envs.locomotion import task_kwargs

__all__ = [
    "ACTION_RANGE",
    "format_report",
    "policy_gradient_accuracy",
    "start_controller",
    "start_observations",
]

#: Half-width of the uniform random action sequences (inside the [-1, 1] bounds, so the
#: central differences stay two-sided).
ACTION_RANGE = 0.5


def start_controller(start: str, task: str) -> Controller | None:
    """A fresh reference controller of the task named ``start`` (observation -> action), or
    None for ``"policy"`` (the checkpoint's own).

    Raises:
        ValueError: naming the allowed values when the task has no such controller.
    """
    if start == "policy":
        return None
    controllers = REFERENCE_CONTROLLERS.get(task, {})
    if start not in controllers:
        allowed = ", ".join(["policy", *controllers])
        raise ValueError(f"--start {start!r} is not one of: {allowed} ({task}).")
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


def policy_gradient_accuracy(
    world_model,
    env,
    policy: TensorDictModuleBase,
    env_spec: dict[str, Any],
    *,
    gamma: float,
    reward_scale: float,
    reward_loc: float,
    horizon: int,
    seed: int,
    controller: Controller | None = None,
    eps: float = 0.05,
    reference_eps: float | None = None,
    smooth: float | None = None,
    smooth_samples: int = 128,
    finite_differences: bool = False,
) -> tuple[dict[str, Any], bool]:
    """:func:`~torchrl_flowmbpo.diagnostics.action_gradient_accuracy` at one start state per env
    of ``env``, visited by ``policy`` (or ``controller``), on random open-loop actions.

    Args:
        world_model: the model whose gradient is checked.
        env: the task with its trackers, one env per start state (restartable from an
            observation).
        policy: the closed-loop policy that visits the start states.
        env_spec: the task's name and keyword arguments (for a differentiable twin).

    Keyword Args:
        gamma: discount of the return.
        reward_scale: raw reward = model reward x scale + loc.
        reward_loc: see ``reward_scale``.
        horizon: actions per sequence.
        seed: seed of the actions (and of a differentiable twin env).
        controller: a reference controller that visits the start states instead of the policy.
        eps: finite-difference step.
        reference_eps: a second step whose differences the first's are compared with.
        smooth: compare the slopes of the return smoothed by Gaussian action noise of this std.
        smooth_samples: antithetic noise pairs of ``smooth``.
        finite_differences: difference the real return even where exact gradients exist.

    Returns:
        The result and whether the real gradient was exact.
    """
    device = env.device
    starter = policy
    if controller is not None:
        starter = TensorDictModule(controller, in_keys=["observation"], out_keys=["action"])
    observations = start_observations(env, starter, env.base_env.episode_length)
    states = observations.shape[0]
    generator = torch.Generator(device=device).manual_seed(seed)
    shape = (states, horizon, env.action_spec.shape[-1])
    actions = (2 * torch.rand(shape, generator=generator, device=device) - 1) * ACTION_RANGE
    exact = None
    task = env_spec["name"]
    if smooth is None and not finite_differences and "differentiable" in task_kwargs(task):
        differentiable_env = make_env(
            task,
            num_envs=states,
            device=device,
            seed=seed,
            **{**env_spec["kwargs"], "differentiable": True},
        )
        exact = make_exact_real_gradient(differentiable_env, gamma=gamma)
    result = action_gradient_accuracy(
        world_model,
        observations,
        actions,
        # The base env: the step counter and return trackers must not see the restarts.
        make_real_return(env.base_env, gamma=gamma),
        gamma=gamma,
        reward_scale=reward_scale,
        reward_loc=reward_loc,
        eps=eps,
        reference_eps=reference_eps,
        smoothing=smooth,
        smoothing_samples=smooth_samples,
        # The actions' stream, continued: a second generator with the same seed would draw the
        # noise from the same uniforms as the actions.
        generator=generator,
        real_gradient=exact,
    )
    return result, exact is not None
