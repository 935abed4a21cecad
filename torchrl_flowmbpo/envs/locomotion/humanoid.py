"""Humanoid: 21 motors on Newton's ``nv_humanoid.xml`` (after dflex's ``HumanoidEnv``)."""

from __future__ import annotations

from typing import Any

import torch

from torchrl_flowmbpo.envs.locomotion.base import LocomotionEnv
from torchrl_flowmbpo.envs.locomotion.simulator import newton_asset

__all__ = ["HumanoidEnv"]


class HumanoidEnv(LocomotionEnv):
    """Humanoid locomotion task: observation 76, action 21.

    Reward (dflex): ``v_x + 0.1 * up + heading + h_rew - action_penalty * ||a||^2`` with
    ``x = clip(h - (termination_height + termination_tolerance), -1, termination_tolerance)``
    and ``h_rew = -200 x^2`` if ``x < 0`` else ``height_reward_scale * x``.
    Torque = ``action_scale * gear_j * a`` with the file's motor gears (22.5–135 N·m).

    Args:
        num_envs: number of parallel worlds.

    Keyword Args:
        device: device of the simulator and of every tensor.
        seed: generator seed (reset noise).
        episode_length: steps before truncation (dflex: 1000).
        termination_height: terminate when the torso is lower (dflex: 0.74).
        termination_tolerance: height margin above ``termination_height`` where the height
            reward turns positive (dflex: 0.1).
        height_reward_scale: slope of the positive height reward (dflex: 10).
        action_penalty: weight of ``-||a||^2`` (dflex: 0.002).
        action_scale: multiplier of the file gears (dflex's torques were ~1.56x these).
        reset_noise: multiplier of dflex's reset noise; 0 disables it.
        start_height: initial torso height (dflex: 1.35; the feet touch at 1.286).
        **kwargs: simulator settings (``sim_dt``, ``sim_substeps``, ``capture``).
    """

    # File gears in DoF (body-tree) order: abdomen z/y/x, right hip x/z/y, knee, ankle y/x,
    # the same for the left leg, then right shoulder 1/2, elbow and left shoulder 1/2, elbow.
    gear = (
        *(67.5, 67.5, 67.5),
        *(45.0, 45.0, 135.0, 90.0, 22.5, 22.5),
        *(45.0, 45.0, 135.0, 90.0, 22.5, 22.5),
        *(67.5, 67.5, 45.0),
        *(67.5, 67.5, 45.0),
    )
    default_joint_q = (0.0,) * 21

    def __init__(
        self,
        num_envs: int,
        *,
        termination_height: float = 0.74,
        termination_tolerance: float = 0.1,
        height_reward_scale: float = 10.0,
        action_penalty: float = 0.002,
        start_height: float = 1.35,
        **kwargs: Any,
    ) -> None:
        self.termination_tolerance = float(termination_tolerance)
        self.height_reward_scale = float(height_reward_scale)
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
            newton_asset("nv_humanoid.xml"),
            ignore_names=["floor", "ground"],
            override_root_xform=True,
            xform=wp.transform((0.0, 0.0, self.start_height), wp.quat_identity()),
            # The file's <sensor> block refers to sites that the importer does not need.
            parse_sites=False,
        )
        builder.joint_q[7:] = list(self.default_joint_q)

    def _reward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        progress = obs[:, self.forward_velocity_index]
        up = 0.1 * obs[:, 53]
        heading = obs[:, 54]
        tol = self.termination_tolerance
        x = (obs[:, 0] - (self.termination_height + tol)).clamp(-1.0, tol)
        height = torch.where(x < 0.0, -200.0 * x * x, self.height_reward_scale * x)
        return progress + up + heading + height - self.action_penalty * action.pow(2).sum(-1)
