"""Ant: four legs, eight hinges, on Newton's ``nv_ant.xml`` (after dflex's ``AntEnv``)."""

from __future__ import annotations

from typing import Any

import torch

from torchrl_flowmbpo.envs.locomotion.base import LocomotionEnv
from torchrl_flowmbpo.envs.locomotion.simulator import newton_asset

__all__ = ["AntEnv"]


class AntEnv(LocomotionEnv):
    """Ant locomotion task: observation 37, action 8.

    Reward (dflex): ``v_x + 0.1 * up + heading + (h - termination_height)``, no action cost.
    Torque = ``action_scale * 15 * a`` (15 is the ``gear`` of the file's motors; dflex's 200
    was tuned for its 180 kg ant and makes the 0.9 kg ``nv_ant`` diverge).

    Args:
        num_envs: number of parallel worlds.

    Keyword Args:
        device: device of the simulator and of every tensor.
        seed: generator seed (reset noise).
        episode_length: steps before truncation (dflex: 1000).
        termination_height: terminate when the torso is lower (dflex: 0.27).
        action_scale: multiplier of the file gear 15.
        reset_noise: multiplier of dflex's reset noise; 0 disables it.
        start_height: initial torso height (dflex: 0.75; the feet touch at 0.556).
        action_penalty: weight of ``-||a||^2`` in the reward (dflex: 0).
        **kwargs: simulator settings (``sim_dt``, ``sim_substeps``, ``capture``).
    """

    gear = (15.0,) * 8
    # The file's init_qpos: hips at 0, ankles at ±1 rad (0 lies outside the ankle ranges).
    default_joint_q = (0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0)

    def __init__(
        self,
        num_envs: int,
        *,
        termination_height: float = 0.27,
        start_height: float = 0.75,
        action_penalty: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.action_penalty = float(action_penalty)
        super().__init__(
            num_envs,
            termination_height=termination_height,
            start_height=start_height,
            **kwargs,
        )

    def _add_robot(self, builder: Any) -> None:
        import warp as wp

        builder.add_mjcf(
            newton_asset("nv_ant.xml"),
            ignore_names=["floor", "ground"],
            # Without the override, xform is composed with the torso's own z=0.75 in the file.
            override_root_xform=True,
            xform=wp.transform((0.0, 0.0, self.start_height), wp.quat_identity()),
        )
        builder.joint_q[7:] = list(self.default_joint_q)

    def _reward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        progress = obs[:, self.forward_velocity_index]
        up = 0.1 * obs[:, 27]
        heading = obs[:, 28]
        height = obs[:, 0] - self.termination_height
        return progress + up + heading + height - self.action_penalty * action.pow(2).sum(-1)
