"""TorchRL plumbing shared by the batched Newton tasks: reset masks, outputs, divergence."""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torchrl.envs import EnvBase

__all__ = [
    "recover_diverged",
    "reset_mask",
    "reset_output",
    "restart_all_worlds",
    "state_observation",
    "step_output",
]


def reset_mask(tensordict: TensorDictBase | None, num_envs: int, device: torch.device) -> Tensor:
    """The worlds a ``_reset`` call restarts: the ``"_reset"`` entry, or all of them."""
    mask = None if tensordict is None else tensordict.get("_reset", None)
    if mask is None:
        return torch.ones(num_envs, dtype=torch.bool, device=device)
    return mask.reshape(num_envs)


def recover_diverged(sim: Any, obs: Tensor, obs_prev: Tensor, invalid: Tensor) -> Tensor:
    """Never hands out a diverged state: keeps the last finite observation of the invalid
    worlds and puts them back into their initial pose now, so NaN cannot survive."""
    if invalid.any():
        obs = torch.where(invalid.unsqueeze(-1), obs_prev, obs)
        sim.reset_worlds(invalid)
    return obs


def step_output(
    obs: Tensor, reward: Tensor, terminated: Tensor, truncated: Tensor, env: EnvBase
) -> TensorDict:
    """The TensorDict a batched task's ``_step`` returns (flags and reward as ``[N, 1]``)."""
    return TensorDict(
        {
            "observation": obs,
            "reward": reward.unsqueeze(-1),
            "done": (terminated | truncated).unsqueeze(-1),
            "terminated": terminated.unsqueeze(-1),
            "truncated": truncated.unsqueeze(-1),
        },
        batch_size=env.batch_size,
        device=env.device,
    )


def reset_output(obs: Tensor, env: EnvBase) -> TensorDict:
    """The TensorDict a batched task's ``_reset`` returns: observations, all flags False."""
    false = torch.zeros(*env.batch_size, 1, dtype=torch.bool, device=env.device)
    return TensorDict(
        {
            "observation": obs,
            "done": false.clone(),
            "terminated": false.clone(),
            "truncated": false,
        },
        batch_size=env.batch_size,
        device=env.device,
    )


def state_observation(env: Any, observation: Tensor) -> Tensor:
    """``observation`` checked to be ``[num_envs, obs_dim]``, on the simulator's device and dtype
    (the input of ``set_state_from_observation``).

    Raises:
        ValueError: when the shape is not ``[num_envs, obs_dim]``.
    """
    if observation.shape != (env.num_envs, env.obs_dim):
        raise ValueError(
            f"Expected observations of shape {(env.num_envs, env.obs_dim)}, "
            f"got {tuple(observation.shape)}."
        )
    return observation.to(device=env.device, dtype=env.sim.joint_q.dtype)


def restart_all_worlds(env: Any, joint_q: Tensor, joint_qd: Tensor) -> None:
    """Puts every world into ``(joint_q, joint_qd)`` with cleared solver state and restarts the
    episode step counters, as a reset of all worlds would."""
    everyone = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
    env.sim.reset_worlds(everyone, joint_q, joint_qd)
    env._step_count.zero_()
