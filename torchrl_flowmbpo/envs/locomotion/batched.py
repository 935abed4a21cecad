"""TorchRL plumbing shared by the batched Newton tasks: reset masks, outputs, divergence, and
the state a checkpoint needs to continue the episodes in progress."""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torchrl.envs import EnvBase

from torchrl_flowmbpo.envs.locomotion.simulator import copy_state

__all__ = [
    "SimStateMixin",
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


class SimStateMixin:
    """:meth:`sim_state` and :meth:`load_sim_state` of a batched task env: the episodes in
    progress, saved and put back.

    The env provides ``num_envs``, ``sim`` (a :class:`~torchrl_flowmbpo.envs.locomotion.
    simulator.NewtonSimulator`), ``_rng`` (its reset-noise generator) and
    :meth:`_state_buffers`, the per-world tensors it keeps between steps.
    """

    def _state_buffers(self) -> dict[str, Tensor]:
        """The env's own per-world tensors the next step reads or updates, by name (updated in
        place by the env, so :meth:`load_sim_state` can write them back)."""
        raise NotImplementedError

    def _keeps_sim_state(self) -> bool:
        """Whether the simulator's state lives in the env (``"sim"`` of :meth:`sim_state`);
        an env that carries it in the TensorDict instead (a differentiable one) says False."""
        return True

    def sim_state(self) -> TensorDict:
        """A copy of everything this env's next steps depend on.

        ``"sim"``: the simulator's state (joint coordinates, velocities, applied forces and the
        solver's warm-start buffers, see ``NewtonSimulator.state``); the env's per-world
        buffers (the episode step counters ``"step_count"``, the cached pre-step
        ``"observation"`` the next reward reads, and for the locomotion tasks the previous
        action ``"prev_action"``); ``"generator"``: the state of the reset-noise generator, for
        the worlds that reset later. Transforms around the env keep their state elsewhere (the
        carried TensorDict, their own state dicts).

        Returns:
            A TensorDict of tensors only (``batch_size=[]``), fit for weights-only
            checkpoints.

        Examples:
            >>> import torch
            >>> from torchrl_flowmbpo.envs.locomotion import make_env
            >>> env = make_env("cartpole", num_envs=2, seed=0)
            >>> _ = env.rollout(5, break_when_any_done=False)
            >>> state = env.sim_state()
            >>> twin = make_env("cartpole", num_envs=2, seed=1)
            >>> twin.load_sim_state(state)
            >>> action = env.full_action_spec.zero()
            >>> torch.equal(env.step(action.clone())["next", "observation"],
            ...             twin.step(action.clone())["next", "observation"])
            True
        """
        state = {name: buffer.clone() for name, buffer in self._state_buffers().items()}
        state["generator"] = self._rng.get_state()
        if self._keeps_sim_state():
            state["sim"] = self.sim.state()
        return TensorDict(state, batch_size=[])

    def load_sim_state(self, state: TensorDictBase) -> None:
        """Puts a :meth:`sim_state` of an env of the same task, ``num_envs`` and settings into
        this one (in place): its next steps are bit-identical to those of the env it came from.

        Args:
            state: what :meth:`sim_state` returned (possibly read back from a checkpoint).

        Raises:
            ValueError: a tensor of ``state`` does not have this env's shape.
        """
        copy_state(self._state_buffers(), state, type(self).__name__)
        if self._keeps_sim_state():
            self.sim.load_state(state.get("sim"))
        self._rng.set_state(state.get("generator").cpu())
