"""Cartpole swing-up on Newton (after dflex/SHAC's ``CartPoleSwingUpEnv``).

A small fixed-base task for quick CPU runs: a cart on a rail, a pole on a hinge, the pole
starting down. Robot: ``cartpole.urdf`` from the ``newton`` wheel with its second pole removed
(the file is a double pendulum; the task is the single one). Cart: prismatic joint along the
world y axis, 1 kg, rail limits ±4 m (the URDF's). Pole: revolute joint about the world x axis,
0.25 kg, centre of mass 0.47 m from the hinge, ``θ = 0`` upright.

=======  =================================================
index    observation
=======  =================================================
``0``    cart position ``x`` (m)
``1``    ``sin θ``
``2``    ``cos θ`` (1 = upright, -1 = hanging down)
``3``    cart velocity ``ẋ`` (m/s)
``4``    pole angular velocity ``θ̇`` (rad/s)
=======  =================================================
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
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
from torchrl_flowmbpo.envs.locomotion.differentiable import DifferentiableSimulator
from torchrl_flowmbpo.envs.locomotion.simulator import (
    NewtonSimulator,
    newton_asset,
    out_of_range,
)

__all__ = ["REWARD_TYPES", "CartPoleEnv"]

#: The cartpole's reward functions (see :class:`CartPoleEnv`).
REWARD_TYPES = ("bounded", "shac")


def _near_zero(value: torch.Tensor, margin: float) -> torch.Tensor:
    """DMC's gaussian tolerance around 0: 1 at 0, 0.1 at ``|value| = margin``."""
    return torch.exp(-math.log(10.0) * (value / margin).square())


# The URDF's second pole (a double pendulum), left out of the single-pole task.
_SECOND_POLE = ("pole2", "pole1_to_pole2")


def single_pole_urdf() -> str:
    """``cartpole.urdf`` from the ``newton`` wheel, without its second pole, as XML text."""
    robot = ET.parse(newton_asset("cartpole.urdf")).getroot()
    for element in list(robot):
        if element.get("name") in _SECOND_POLE:
            robot.remove(element)
    return ET.tostring(robot, encoding="unicode")


class CartPoleEnv(SimStateMixin, EnvBase):
    """Cartpole swing-up: observation 5, action 1, ``num_envs`` Newton worlds.

    Each step clips the action to [-1, 1], pushes the cart with a force of
    ``action_scale * a`` newtons, advances the physics by ``sim_substeps * sim_dt`` (1/60 s) and
    returns the new observation, the reward and the done flags. Episodes are truncated after
    ``episode_length`` steps (SHAC: 240, i.e. 4 s) and never terminate, except when the state
    of a world becomes non-finite or exceeds 1e6 in magnitude: it then terminates, is put back
    into its initial state within the step, and returns its last finite observation.

    Reward, from the **pre-step** observation and the clipped action. ``reward_type="shac"``
    (SHAC's penalties, unbounded below)::

        r = -(θ² + 0.1 θ̇² + 0.05 x² + 0.1 ẋ²) - action_penalty * a²,   θ wrapped to [-π, π)

    ``reward_type="bounded"`` (DeepMind Control's smooth swing-up reward, in [0, 1])::

        r = (1 + cos θ)/2 · (1 + g(x, 2))/2 · (4 + 1 - a²)/5 · (1 + g(θ̇, 5))/2,
        g(v, m) = exp(-ln(10) (v/m)²)   (1 at 0, 0.1 at |v| = m)

    A learned model with bounded (SimNorm) latents cannot follow a cost that grows without bound
    beyond the states it has seen, and an energy-pumping policy exploits the flattened cost; the
    bounded reward keeps that error bounded too (docs/tasks.md, "Cartpole").

    Differentiable mode (``differentiable=True``): the physics runs on Newton's
    ``SolverFeatherstone`` under a Warp tape (:class:`DifferentiableSimulator`), and the state
    ``(joint_q, joint_qd)`` travels in the TensorDict (``"joint_q"``, ``"joint_qd"`` next to the
    observation), so a step is differentiable w.r.t. the action and the incoming state and torch
    chains the steps of a rollout: the observation, the reward and the next state carry exact
    gradients (what SHAC's actor loss follows). Same specs, resets, rewards, termination and
    seeding; the dynamics match the MuJoCo solver's to ~1e-6 over 16 steps away from the rail
    ends (Featherstone enforces the ±4 m rail limits with a stiff spring, MuJoCo with a
    constraint). A partial reset inside a differentiable rollout needs
    :func:`~torchrl_flowmbpo.envs.differentiable_rollout` (TorchRL's ``rollout`` merges reset
    rows in place, which autograd refuses).

    :meth:`sim_state` and :meth:`load_sim_state` save and put back the episodes in progress
    (the simulator's and the env's state, see :class:`SimStateMixin`; MuJoCo mode only: in
    differentiable mode the state travels in the TensorDict).

    Start: pole at ``θ = start_angle`` (default π: hanging down; 0 turns the task into
    balancing), cart at 0, at rest, plus uniform noise times ``reset_noise``: ±0.1 on ``x`` and
    ``θ``, ±0.25 on both velocities.

    Args:
        num_envs: number of parallel worlds (the env's batch size).

    Keyword Args:
        device: device of the simulator and of every tensor.
        seed: seed of the env's generator (reset noise). ``None`` draws a random seed.
        episode_length: steps before truncation (SHAC: 240).
        action_scale: cart force in newtons at ``|a| = 1``. The default 30 N lets a
            full-throttle energy-pumping controller swing the pole up in about 1 s without
            reaching the rail ends (SHAC's 1000 N was for its dflex model).
        action_penalty: weight of ``-a²`` in the ``"shac"`` reward (SHAC: 0).
        reward_type: ``"shac"`` (quadratic penalties) or ``"bounded"`` (DMC-style, in [0, 1]).
        reset_noise: multiplier of the uniform reset noise; 0 starts exactly at ``start_angle``.
        start_angle: pole angle at reset in radians from upright (π: swing-up, 0: balance).
        sim_dt: physics time step in seconds.
        sim_substeps: physics steps per env step (even; see :class:`NewtonSimulator`).
        capture: replay a captured Warp graph (faster; results are bit-identical; MuJoCo only).
        differentiable: simulate with ``SolverFeatherstone`` and carry the state in the
            TensorDict, so steps are differentiable (see above).
    """

    #: Reward weights of θ², θ̇², x², ẋ² (SHAC's pole angle / velocity and cart position /
    #: velocity penalties).
    penalties: tuple[float, float, float, float] = (1.0, 0.1, 0.05, 0.1)
    obs_dim = 5
    action_dim = 1
    #: No forward velocity (the locomotion tasks' ``forward_velocity_index``): the cart only
    #: moves along its rail.
    forward_velocity_index: int | None = None
    #: The state the differentiable mode carries in the TensorDict.
    _STATE_KEYS = ("joint_q", "joint_qd")

    def __init__(
        self,
        num_envs: int,
        *,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        episode_length: int = 240,
        action_scale: float = 30.0,
        action_penalty: float = 0.0,
        reset_noise: float = 1.0,
        start_angle: float = math.pi,
        reward_type: str = "shac",
        sim_dt: float = 1.0 / 240.0,
        sim_substeps: int = 4,
        capture: bool = True,
        differentiable: bool = False,
    ) -> None:
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type={reward_type!r} is not one of {sorted(REWARD_TYPES)}.")
        device = torch.device(device)
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        self.reward_type = reward_type
        self.num_envs = int(num_envs)
        self.episode_length = int(episode_length)
        self.action_scale = float(action_scale)
        self.action_penalty = float(action_penalty)
        self.reset_noise = float(reset_noise)
        self.start_angle = float(start_angle)
        self.dt = float(sim_dt) * int(sim_substeps)
        self.differentiable = bool(differentiable)
        if self.differentiable:
            self.sim = DifferentiableSimulator(
                self._add_robot,
                self.num_envs,
                device=device,
                sim_dt=sim_dt,
                sim_substeps=sim_substeps,
            )
        else:
            self.sim = NewtonSimulator(
                self._add_robot,
                self.num_envs,
                device=device,
                sim_dt=sim_dt,
                sim_substeps=sim_substeps,
                # No contacts (collisions off, no ground): only the rail limit needs rows.
                njmax=8,
                nconmax=8,
                capture=capture,
                ground_plane=False,
            )
        if (self.sim.nq, self.sim.nqd) != (2, 2):
            raise RuntimeError(f"cartpole: expected 2 joint DoFs, got {self.sim.nqd}.")
        self._rng = torch.Generator(device=device)
        self._set_seed(seed)
        self._step_count = torch.zeros(self.num_envs, dtype=torch.long, device=device)
        self._obs = self._observe()
        self._make_specs()

    # ----------------------------------------------------------------- model
    @staticmethod
    def _add_robot(builder: Any) -> None:
        import newton

        # URDF default: the rail (root link) is fixed to the world.
        builder.add_urdf(single_pole_urdf(), floating=False, enable_self_collisions=False)
        # The cart and pole never touch anything: no collision shapes, no contact rows.
        for shape in range(builder.shape_count):
            builder.shape_flags[shape] &= ~newton.ShapeFlags.COLLIDE_SHAPES
        builder.joint_q[-2:] = [0.0, math.pi]  # cart centred, pole hanging down

    def _reward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Reward ``[N]`` of the pre-step observation ``[N, 5]`` and clipped action ``[N, 1]``."""
        if self.reward_type == "bounded":
            upright = (1.0 + obs[:, 2]) / 2.0
            centered = (1.0 + _near_zero(obs[:, 0], 2.0)) / 2.0
            small_control = (5.0 - action.square().sum(-1)) / 5.0
            small_velocity = (1.0 + _near_zero(obs[:, 4], 5.0)) / 2.0
            return upright * centered * small_control * small_velocity
        theta = torch.atan2(obs[:, 1], obs[:, 2])  # the pole angle wrapped to [-π, π]
        w_theta, w_theta_dot, w_x, w_x_dot = self.penalties
        cost = (
            w_theta * theta.square()
            + w_theta_dot * obs[:, 4].square()
            + w_x * obs[:, 0].square()
            + w_x_dot * obs[:, 3].square()
        )
        return -cost - self.action_penalty * action.square().sum(-1)

    def _state_buffers(self) -> dict[str, torch.Tensor]:
        if self.differentiable:  # the simulator's state and observation are in the TensorDict
            return {"step_count": self._step_count}
        return {"step_count": self._step_count, "observation": self._obs}

    def _keeps_sim_state(self) -> bool:
        return not self.differentiable

    # ----------------------------------------------------------------- specs
    def _make_specs(self) -> None:
        n, d = self.num_envs, self.device
        self.observation_spec = Composite(
            observation=Unbounded((n, self.obs_dim), dtype=torch.float32, device=d),
            shape=(n,),
            device=d,
        )
        if self.differentiable:
            for key in self._STATE_KEYS:
                self.observation_spec[key] = Unbounded((n, 2), dtype=torch.float32, device=d)
        self.action_spec = Bounded(-1.0, 1.0, (n, self.action_dim), dtype=torch.float32, device=d)
        self.reward_spec = Unbounded((n, 1), dtype=torch.float32, device=d)
        flag = Categorical(2, (n, 1), dtype=torch.bool, device=d)
        self.done_spec = Composite(
            done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=(n,), device=d
        )

    # ----------------------------------------------------------------- observation
    def _observe(
        self, joint_q: torch.Tensor | None = None, joint_qd: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The observation of a state (the simulator's current one by default)."""
        q = self.sim.joint_q if joint_q is None else joint_q
        qd = self.sim.joint_qd if joint_qd is None else joint_qd
        theta = q[:, 1:2]
        return torch.cat((q[:, 0:1], torch.sin(theta), torch.cos(theta), qd), dim=-1)

    def _with_state(
        self,
        out: TensorDictBase,
        joint_q: torch.Tensor | None = None,
        joint_qd: torch.Tensor | None = None,
    ) -> TensorDictBase:
        """Adds the state keys of the differentiable mode (the current state by default)."""
        if self.differentiable:
            out.set("joint_q", self.sim.joint_q.clone() if joint_q is None else joint_q)
            out.set("joint_qd", self.sim.joint_qd.clone() if joint_qd is None else joint_qd)
        return out

    # ----------------------------------------------------------------- TorchRL API
    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").clamp(-1.0, 1.0)
        if self.differentiable:
            return self._differentiable_step(tensordict, action)
        obs_prev = self._obs.clone()
        reward = self._reward(obs_prev, action)
        self.sim.joint_f[:, 0:1].copy_(action * self.action_scale)
        self.sim.simulate()
        self._step_count.add_(1)

        invalid = self.sim.invalid_worlds()
        obs = recover_diverged(self.sim, self._observe(), obs_prev, invalid)
        truncated = self._step_count >= self.episode_length
        self._obs.copy_(obs)
        return step_output(obs, reward, invalid, truncated, self)

    def _differentiable_step(
        self, tensordict: TensorDictBase, action: torch.Tensor
    ) -> TensorDictBase:
        """One step from the TensorDict's state, differentiable w.r.t. it and the action."""
        q_in = tensordict.get("joint_q", self.sim.joint_q)
        qd_in = tensordict.get("joint_qd", self.sim.joint_qd)
        obs_prev = self._observe(q_in, qd_in)
        reward = self._reward(obs_prev, action)
        force = torch.cat((action * self.action_scale, torch.zeros_like(action)), dim=-1)
        q, qd = self.sim.step(q_in, qd_in, force)
        self._step_count.add_(1)
        invalid = out_of_range(q, qd)
        # A diverged world keeps its last finite state and terminates (then resets).
        keep = invalid.unsqueeze(-1)
        q, qd = torch.where(keep, q_in, q), torch.where(keep, qd_in, qd)
        obs = self._observe(q, qd)
        with torch.no_grad():
            self.sim.joint_q.copy_(q)
            self.sim.joint_qd.copy_(qd)
            self._obs.copy_(obs)
        truncated = self._step_count >= self.episode_length
        return self._with_state(step_output(obs, reward, invalid, truncated, self), q, qd)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any) -> TensorDictBase:
        mask = reset_mask(tensordict, self.num_envs, self.device)
        q, qd = self._noisy_initial_state()
        self.sim.reset_worlds(mask, q, qd)
        self._step_count.masked_fill_(mask, 0)
        obs = self._observe()
        self._obs.copy_(torch.where(mask.unsqueeze(-1), obs, self._obs))
        return self._with_state(reset_output(self._obs.clone(), self))

    def set_state_from_observation(self, observation: torch.Tensor) -> TensorDictBase:
        """Puts every world into the state of ``observation`` ``[num_envs, 5]``, as a reset would.

        The observation is the cartpole's full state: ``q = (x, atan2(sin θ, cos θ))`` and
        ``q̇ = (ẋ, θ̇)`` (θ comes back wrapped to [-π, π]; the dynamics and the rewards only see
        sin and cos). Like :meth:`reset`, the solver state and the applied force are cleared
        and the episode step counters restart at 0, so ``episode_length`` steps follow before
        truncation. Used to restart the simulator from recorded states, e.g. for finite
        differences of the real return
        (:func:`~torchrl_flowmbpo.diagnostics.make_real_return`). It acts on this env only: the
        transforms of a ``TransformedEnv`` around it (step counter, episode return) are not told.

        Args:
            observation: ``[num_envs, 5]`` observations (``sin² θ + cos² θ = 1``).

        Returns:
            The TensorDict :meth:`reset` returns: the new observation, all flags False.

        Examples:
            >>> env = CartPoleEnv(2, seed=0)
            >>> obs = torch.tensor([[0.5, 0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.3, -1.0]])
            >>> td = env.set_state_from_observation(obs)
            >>> torch.allclose(td["observation"], obs, atol=1e-6)
            True
        """
        obs = state_observation(self, observation)
        q = torch.stack((obs[:, 0], torch.atan2(obs[:, 1], obs[:, 2])), dim=-1)
        restart_all_worlds(self, q, obs[:, 3:5])
        # The reward of the next step reads this cached pre-step observation.
        self._obs.copy_(self._observe())
        return self._with_state(reset_output(self._obs.clone(), self))

    def _noisy_initial_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``start_angle`` start plus uniform noise, drawn for every world (masked later)."""
        q = self.sim.default_q.clone()
        q[:, 1] = self.start_angle
        qd = self.sim.default_qd.clone()
        s = self.reset_noise
        if s == 0.0:
            return q, qd
        u = torch.rand(self.num_envs, 4, generator=self._rng, device=self.device)
        noise = s * (2.0 * u - 1.0)
        q += 0.1 * noise[:, 0:2]
        qd += 0.25 * noise[:, 2:4]
        return q, qd

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self._rng.seed()
        else:
            self._rng.manual_seed(int(seed))
