"""Anymal: a 12-DoF quadruped on Newton's ``quadruped.urdf`` (after dflex's ``AnymalEnv``)."""

from __future__ import annotations

from typing import Any

import torch

from torchrl_flowmbpo.envs.locomotion.base import LocomotionEnv
from torchrl_flowmbpo.envs.locomotion.simulator import newton_asset

__all__ = ["AnymalEnv"]


class AnymalEnv(LocomotionEnv):
    """ANYmal-like quadruped locomotion task: observation 49, action 12.

    The real ANYmal model is not shipped with ``newton`` (it is downloaded at run time), so
    the task uses the wheel's ANYmal-like ``quadruped.urdf``: legs LF, RF, LH, RH, each with
    HAA, HFE and KFE joints.

    Reward (dflex): ``v_x + 0.1 * up + heading + height_reward_scale * (h - termination_height)
    - action_penalty * ||a||^2``. Torque = ``action_scale * 80 * a`` (80 N·m is the URDF effort
    limit; dflex used 200). Like dflex, each joint has a passive spring (``joint_stiffness``)
    towards the default pose and ``joint_damping``; without damping, the light links spin up
    and the simulation diverges.

    Args:
        num_envs: number of parallel worlds.

    Keyword Args:
        device: device of the simulator and of every tensor.
        seed: generator seed (reset noise).
        episode_length: steps before truncation (dflex: 1000).
        termination_height: terminate when the base is lower (dflex: 0.25).
        height_reward_scale: weight of the height term (dflex ``heigh_rew_scale``: 1).
        action_penalty: weight of ``-||a||^2`` (dflex: 0.005).
        joint_stiffness: passive spring towards the default pose, N·m/rad (dflex: 85).
        joint_damping: passive damping, N·m·s/rad (dflex: 2).
        action_scale: multiplier of the 80 N·m torque scale.
        reset_noise: multiplier of dflex's reset noise; 0 disables it.
        start_height: initial base height (the feet touch at 0.461).
        **kwargs: simulator settings (``sim_dt``, ``sim_substeps``, ``capture``).
    """

    gear = (80.0,) * 12
    # LF, RF, LH, RH x (HAA, HFE, KFE): a crouched stance with the knees pointing inwards.
    default_joint_q = (0.2, 0.4, -0.6, -0.2, -0.4, 0.6, -0.2, 0.4, -0.6, 0.2, -0.4, 0.6)

    def __init__(
        self,
        num_envs: int,
        *,
        termination_height: float = 0.25,
        height_reward_scale: float = 1.0,
        action_penalty: float = 0.005,
        joint_stiffness: float = 85.0,
        joint_damping: float = 2.0,
        start_height: float = 0.56,
        **kwargs: Any,
    ) -> None:
        self.height_reward_scale = float(height_reward_scale)
        self.action_penalty = float(action_penalty)
        self.joint_stiffness = float(joint_stiffness)
        self.joint_damping = float(joint_damping)
        super().__init__(
            num_envs,
            termination_height=termination_height,
            start_height=start_height,
            **kwargs,
        )

    def _add_robot(self, builder: Any) -> None:
        import warp as wp

        builder.default_joint_cfg.armature = 0.01
        builder.add_urdf(
            newton_asset("quadruped.urdf"),
            xform=wp.transform((0.0, 0.0, self.start_height), wp.quat_identity()),
            floating=True,
            enable_self_collisions=False,
            ignore_inertial_definitions=True,
        )
        builder.joint_q[7:] = list(self.default_joint_q)
        for i, q0 in enumerate(self.default_joint_q):
            builder.joint_stiffness[6 + i] = self.joint_stiffness
            builder.joint_damping[6 + i] = self.joint_damping
            builder.joint_rest_q[7 + i] = q0

    def _reward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        progress = obs[:, self.forward_velocity_index]
        up = 0.1 * obs[:, 35]
        heading = obs[:, 36]
        height = self.height_reward_scale * (obs[:, 0] - self.termination_height)
        return progress + up + heading + height - self.action_penalty * action.pow(2).sum(-1)
