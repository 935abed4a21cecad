"""Shared batched TorchRL env for the dflex-style locomotion tasks on Newton.

Every task has the same observation pattern (after dflex's Ant/Anymal/Humanoid):

=============  =====================================================================
slice          content
=============  =====================================================================
``[0]``        torso height (root origin z)
``[1:5]``      torso quaternion, xyzw, identity = upright facing +x
``[5:8]``      torso linear velocity, world frame (``[5]`` = forward velocity v_x)
``[8:11]``     torso angular velocity, world frame
``[11:11+J]``  joint angles
next ``J``     0.1 x joint velocities
next 1         up projection (z component of the torso up axis)
next 1         heading projection (torso forward axis . horizontal direction to a far +x target)
last ``J``     previous (clipped) action
=============  =====================================================================

Subclasses provide the robot (:meth:`LocomotionEnv._add_robot`), the per-DoF torque scale and
the reward (:meth:`LocomotionEnv._reward`, a function of the pre-step observation and the
clipped action).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from torchrl_flowmbpo.envs.locomotion.batched import (
    SimStateMixin,
    recover_diverged,
    reset_mask,
    reset_output,
    restart_all_worlds,
    state_observation,
    step_output,
)
from torchrl_flowmbpo.envs.locomotion.simulator import NewtonSimulator

__all__ = ["LocomotionEnv", "quat_mul"]

# dflex's target sits 10 km away along the forward axis.
_TARGET_X = 10000.0


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of xyzw quaternions, batched over leading dims."""
    ax, ay, az, aw = a.unbind(-1)
    bx, by, bz, bw = b.unbind(-1)
    return torch.stack(
        (
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ),
        dim=-1,
    )


class LocomotionEnv(SimStateMixin, EnvBase):
    """Batched locomotion env: ``num_envs`` Newton worlds behind one TorchRL ``EnvBase``.

    Each env step clips the action to [-1, 1], scales it into joint torques, advances the
    physics by ``sim_substeps * sim_dt`` (1/60 s by default), and returns the new observation,
    the reward of the pre-step observation and clipped action, and the done flags.
    A world is *terminated* when its torso drops below ``termination_height`` or its state is
    non-finite or exceeds 1e6 in magnitude (such a world is reset on the spot, and its
    returned observation is the last finite one); it is *truncated* after ``episode_length``
    steps.

    Args:
        num_envs: number of parallel worlds (the env's batch size).

    Keyword Args:
        device: device of the simulator and of every tensor.
        seed: seed of the env's generator (reset noise). ``None`` draws a random seed.
        episode_length: steps before truncation.
        termination_height: torso height under which an episode terminates.
        action_scale: multiplier applied to the task's per-joint torque scale (gear).
        reset_noise: multiplier of dflex's uniform reset noise (base position ±0.1 m, rotation
            up to 7.5° about a random axis, joint angles ±0.2 rad, velocities ±0.25); 0
            disables it.
        start_height: torso height of the initial pose, before noise.
        sim_dt: physics time step in seconds.
        sim_substeps: physics steps per env step (even; see :class:`NewtonSimulator`).
        capture: replay a captured Warp graph (faster; results are bit-identical).

    :meth:`sim_state` and :meth:`load_sim_state` save and put back the episodes in progress
    (the simulator's and the env's state, see :class:`SimStateMixin`).
    """

    #: Joint torque per unit action, per actuated DoF, before ``action_scale``.
    gear: tuple[float, ...] = ()
    #: Default (standing) joint angles.
    default_joint_q: tuple[float, ...] = ()
    #: Observation component holding the torso's forward velocity v_x (world frame, m/s; the
    #: layout above), the same for every task: the reward's progress term, and what
    #: :func:`~torchrl_flowmbpo.trainers.evaluate_policy` averages as ``forward_velocity``.
    forward_velocity_index: int = 5

    def __init__(
        self,
        num_envs: int,
        *,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        episode_length: int = 1000,
        termination_height: float,
        action_scale: float = 1.0,
        reset_noise: float = 1.0,
        start_height: float,
        sim_dt: float = 1.0 / 240.0,
        sim_substeps: int = 4,
        capture: bool = True,
    ) -> None:
        device = torch.device(device)
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.num_envs = int(num_envs)
        self.episode_length = int(episode_length)
        self.termination_height = float(termination_height)
        self.action_scale = float(action_scale)
        self.reset_noise = float(reset_noise)
        self.start_height = float(start_height)
        self.dt = float(sim_dt) * int(sim_substeps)

        self.sim = NewtonSimulator(
            self._add_robot,
            self.num_envs,
            device=device,
            sim_dt=sim_dt,
            sim_substeps=sim_substeps,
            capture=capture,
        )
        self.num_joints = len(self.default_joint_q)
        if self.sim.nqd != 6 + self.num_joints or len(self.gear) != self.num_joints:
            raise RuntimeError(
                f"{type(self).__name__}: the model has {self.sim.nqd - 6} joint DoFs, "
                f"expected {self.num_joints} with {len(self.gear)} gears."
            )
        self._torque_scale = self.action_scale * torch.tensor(
            self.gear, dtype=torch.float32, device=device
        )
        self.obs_dim = 13 + 3 * self.num_joints
        self._rng = torch.Generator(device=device)
        self._set_seed(seed)
        self._step_count = torch.zeros(self.num_envs, dtype=torch.long, device=device)
        self._prev_action = torch.zeros(self.num_envs, self.num_joints, device=device)
        self._obs = self._observe()
        self._make_specs()

    # ----------------------------------------------------------------- task hooks
    def _add_robot(self, builder: Any) -> None:
        """Add one robot, in its default pose at ``start_height``, to a ``newton.ModelBuilder``."""
        raise NotImplementedError

    def _reward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Reward ``[N]`` of the pre-step observation ``[N, obs]`` and clipped action ``[N, A]``."""
        raise NotImplementedError

    def _state_buffers(self) -> dict[str, torch.Tensor]:
        return {
            "step_count": self._step_count,
            "observation": self._obs,
            "prev_action": self._prev_action,
        }

    # ----------------------------------------------------------------- specs
    def _make_specs(self) -> None:
        n, d = self.num_envs, self.device
        self.observation_spec = Composite(
            observation=Unbounded((n, self.obs_dim), dtype=torch.float32, device=d),
            shape=(n,),
            device=d,
        )
        self.action_spec = Bounded(-1.0, 1.0, (n, self.num_joints), dtype=torch.float32, device=d)
        self.reward_spec = Unbounded((n, 1), dtype=torch.float32, device=d)
        flag = Categorical(2, (n, 1), dtype=torch.bool, device=d)
        self.done_spec = Composite(
            done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=(n,), device=d
        )

    # ----------------------------------------------------------------- observation
    def _observe(self) -> torch.Tensor:
        q, qd = self.sim.joint_q, self.sim.joint_qd
        quat = q[:, 3:7]
        x, y, z, w = quat.unbind(-1)
        # z component of the up axis and x/y components of the forward axis, R(q) e_z and
        # R(q) e_x in closed form (fewer small-tensor ops than a generic rotation).
        up = 1.0 - 2.0 * (x * x + y * y)
        fwd_x = 1.0 - 2.0 * (y * y + z * z)
        fwd_y = 2.0 * (x * y + w * z)
        # Horizontal direction to dflex's far target on the +x axis.
        dx = _TARGET_X - q[:, 0]
        dy = -q[:, 1]
        heading = (fwd_x * dx + fwd_y * dy) * torch.rsqrt(dx * dx + dy * dy)
        joints = (q[:, 7:], 0.1 * qd[:, 6:])
        up_heading = torch.stack((up, heading), dim=-1)
        return torch.cat((q[:, 2:3], quat, qd[:, 0:6], *joints, up_heading, self._prev_action), -1)

    # ----------------------------------------------------------------- TorchRL API
    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").clamp(-1.0, 1.0)
        obs_prev = self._obs.clone()
        reward = self._reward(obs_prev, action)
        self.sim.joint_f[:, 6:].copy_(action * self._torque_scale)
        self.sim.simulate()
        # In-place updates: plain attribute assignment goes through nn.Module.__setattr__.
        self._step_count.add_(1)
        self._prev_action.copy_(action)

        invalid = self.sim.invalid_worlds()
        obs = recover_diverged(self.sim, self._observe(), obs_prev, invalid)
        terminated = (obs[:, 0] < self.termination_height) | invalid
        truncated = self._step_count >= self.episode_length
        self._obs.copy_(obs)
        return step_output(obs, reward, terminated, truncated, self)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        mask = reset_mask(tensordict, self.num_envs, self.device)
        q, qd = self._noisy_initial_state()
        self.sim.reset_worlds(mask, q, qd)
        self._step_count.masked_fill_(mask, 0)
        self._prev_action.masked_fill_(mask.unsqueeze(-1), 0.0)
        obs = self._observe()
        self._obs.copy_(torch.where(mask.unsqueeze(-1), obs, self._obs))
        return reset_output(self._obs.clone(), self)

    def set_state_from_observation(self, observation: torch.Tensor) -> TensorDictBase:
        """Puts every world into the state of ``observation`` ``[num_envs, obs_dim]``.

        The observation holds the whole state except the torso's horizontal position, which
        no dynamics, contact or termination depends on: the worlds restart at ``x = y = 0``
        with the observed height, orientation (the quaternion is renormalised), joint angles,
        velocities (``10 ×`` the observed scaled joint velocities) and previous action. Only
        the heading projection can differ from the recorded one, by the angle under which
        the far target is seen from the old position (below 1e-3 within 10 m of the origin).
        Like :meth:`reset`, the solver state and the applied torques are cleared and the
        episode step counters restart at 0. Used to restart the simulator from recorded
        states, e.g. for finite differences of the real return
        (:func:`~torchrl_flowmbpo.diagnostics.make_real_return`). It acts on this env only:
        the transforms of a ``TransformedEnv`` around it are not told.

        Args:
            observation: ``[num_envs, obs_dim]`` observations of this task.

        Returns:
            The TensorDict :meth:`reset` returns: the new observation, all flags False.

        Raises:
            ValueError: when the shape is not ``[num_envs, obs_dim]``.

        Examples:
            >>> from torchrl_flowmbpo.envs.locomotion import AntEnv
            >>> env = AntEnv(2, seed=0)
            >>> obs = env.rollout(5)["next", "observation"][:, -1]
            >>> td = env.set_state_from_observation(obs)
            >>> torch.allclose(td["observation"][:, :28], obs[:, :28], atol=1e-5)
            True
        """
        obs, j = state_observation(self, observation), self.num_joints
        q = torch.zeros_like(self.sim.joint_q)
        q[:, 2] = obs[:, 0]
        q[:, 3:7] = torch.nn.functional.normalize(obs[:, 1:5], dim=-1)
        q[:, 7:] = obs[:, 11 : 11 + j]
        qd = torch.cat((obs[:, 5:11], 10.0 * obs[:, 11 + j : 11 + 2 * j]), dim=-1)
        restart_all_worlds(self, q, qd)
        self._prev_action.copy_(obs[:, -j:])
        # The reward of the next step reads this cached pre-step observation.
        self._obs.copy_(self._observe())
        return reset_output(self._obs.clone(), self)

    def _noisy_initial_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial pose plus dflex's uniform noise, drawn for every world (masked later)."""
        q = self.sim.default_q.clone()
        qd = self.sim.default_qd.clone()
        s = self.reset_noise
        if s == 0.0:
            return q, qd
        n, g, d = self.num_envs, self._rng, self.device

        def uniform(*shape: int) -> torch.Tensor:
            return 2.0 * torch.rand(*shape, generator=g, device=d) - 1.0

        q[:, 0:3] += s * 0.1 * uniform(n, 3)
        angle = s * (math.pi / 24.0) * uniform(n, 1)
        axis = torch.nn.functional.normalize(uniform(n, 3), dim=-1)
        dq = torch.cat((axis * torch.sin(0.5 * angle), torch.cos(0.5 * angle)), dim=-1)
        q[:, 3:7] = quat_mul(q[:, 3:7], dq)
        q[:, 7:] += s * 0.2 * uniform(n, self.sim.nq - 7)
        qd += s * 0.25 * uniform(n, self.sim.nqd)
        return q, qd

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self._rng.seed()
        else:
            self._rng.manual_seed(int(seed))
