"""A rollout that keeps the autograd graph through a differentiable env, partial resets included."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDictBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import step_mdp

__all__ = ["differentiable_rollout"]


def differentiable_rollout(
    env: EnvBase,
    policy: Callable[[TensorDictBase], TensorDictBase],
    start: TensorDictBase,
    steps: int,
) -> tuple[TensorDictBase, TensorDictBase]:
    """``steps`` transitions of ``policy`` in ``env`` from ``start``, gradients kept throughout.

    What ``env.rollout(steps, policy, tensordict=start, auto_reset=False,
    break_when_any_done=False)`` returns, plus the root TensorDict the next step would start
    from, for envs whose steps are differentiable (e.g. ``CartPoleEnv(differentiable=True)``,
    which carries its state in the TensorDict). The difference is the partial reset: TorchRL
    merges the reset rows into the running TensorDict in place, which autograd refuses for
    tensors that carry a graph; here the env resets a detached copy and the fresh rows are
    selected out of place, so the worlds that go on keep their graph and the reset ones start
    a new one (a reset cuts the gradient, as a new episode should).

    Args:
        env: a batched env (its steps may or may not be differentiable).
        policy: writes ``"action"`` into a TensorDict holding the observation.
        start: the root TensorDict of the first step (e.g. ``env.reset()``, or the second
            output of a previous call).
        steps: number of transitions (>= 1).

    Returns:
        ``(trajectory [*B, steps], next_start [*B])``: the stacked transitions (with
        ``"next"``; the observation of a step that ends an episode is its final one) and the
        root of the following step, reset where an episode ended.

    Examples:
        >>> from torchrl_flowmbpo.envs.locomotion import CartPoleEnv
        >>> env = CartPoleEnv(4, seed=0, differentiable=True, episode_length=3)
        >>> def push(td):
        ...     return td.set("action", force.expand(4, 1))
        >>> force = torch.ones(1, requires_grad=True)
        >>> traj, nxt = differentiable_rollout(env, push, env.reset(), 5)
        >>> traj["next", "reward"].sum().backward()
        >>> traj.shape, bool(force.grad.abs() > 0), nxt["joint_q"].requires_grad
        (torch.Size([4, 5]), True, True)
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    keys = {
        "reward_keys": env.reward_keys,
        "done_keys": env.done_keys,
        "action_keys": env.action_keys,
    }
    td = start
    frames = []
    for _ in range(steps):
        td = env.step(policy(td))
        frames.append(td)
        td = step_mdp(td, keep_other=True, exclude_action=True, **keys)
        done = td.get("done").reshape(env.batch_size)
        if done.any():
            fresh = env.reset(td.detach().set("_reset", done.unsqueeze(-1)))
            td = fresh.where(done, td)
    trajectory = torch.stack(frames, dim=start.ndim)
    return trajectory, td
