"""SHAC's actor loss: PWM's first-order loss through a differentiable simulator, not a model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import LossModule, hold_out_net

from torchrl_flowmbpo.envs.rollout import differentiable_rollout
from torchrl_flowmbpo.objectives.pathwise_actor_loss import PathwiseActorLoss, Rollout

__all__ = ["SHACActorLoss", "segment_returns"]


def segment_returns(
    reward: torch.Tensor,
    next_value: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """The summed bootstrapped returns of the episode segments of ``[*B, H, 1]`` windows.

    A window of H steps holds one segment per episode it touches: each pays its discounted
    rewards from its own first step (``γ^0`` again after a reset), plus ``γ^k V(s')`` at its end:
    the value of the final observation where an episode was truncated or the window ends, 0
    where it terminated. SHAC's actor loss is minus this sum.

    Args:
        reward: ``[*B, H, 1]`` rewards ``r_t``.
        next_value: ``[*B, H, 1]`` values ``V(s_{t+1})`` of each step's next (final)
            observation; only those of episode ends and of the last step are used.
        done: ``[*B, H, 1]`` bool, the step ended its episode.
        terminated: ``[*B, H, 1]`` bool, the step ended it by termination.
        gamma: discount γ.

    Returns:
        ``[*B]`` the sum over the window's segments.

    Examples:
        >>> r = torch.ones(1, 3, 1)
        >>> v = torch.full((1, 3, 1), 10.0)
        >>> done = torch.tensor([False, True, False]).view(1, 3, 1)
        >>> # (1 + 0.5 (1 + 0.5 · 10)) + (1 + 0.5 · 10)
        >>> segment_returns(r, v, done, torch.zeros_like(done), 0.5)
        tensor([10.])
    """
    boot = torch.where(terminated, torch.zeros_like(next_value), next_value)
    horizon = reward.shape[-2]
    running = next_value[..., -1, :]
    total = torch.zeros_like(running)
    for t in reversed(range(horizon)):
        tail = torch.where(done[..., t, :], boot[..., t, :], running)
        running = reward[..., t, :] + gamma * tail
        if t > 0:
            # A segment starts at t when step t - 1 ended an episode.
            total = total + torch.where(done[..., t - 1, :], running, torch.zeros_like(running))
    return (total + running).squeeze(-1)


class SHACActorLoss(PathwiseActorLoss):
    """First-order actor loss of SHAC (Xu et al., ICLR 2022) through a differentiable env.

    The actor (sampled, RANDOM exploration) is rolled out for ``horizon`` steps in ``env`` from
    the states in the input TensorDict (:func:`~torchrl_flowmbpo.envs.differentiable_rollout`:
    gradients flow through every step, episodes that end are reset and cut the gradient). The
    return of each env is the sum of its segments' bootstrapped returns
    (:func:`segment_returns`): rewards discounted from each segment's start, plus
    ``γ^k min_k V_k(s')`` at a truncation or the window's end, nothing at a termination. The
    loss, its normalisation and the entropy bonus are those of
    :class:`~torchrl_flowmbpo.objectives.PathwiseActorLoss`; SHAC divides by ``H`` (``ret_rms=
    False``) and bootstraps from a target critic (``bootstrap_params``). The critic is held out:
    gradients flow through its value of the final state into the actions, never into its
    parameters.

    The same PWM machinery then applies: ``forward`` returns ``(losses, trajectory)`` with the
    detached rollout (observations, rewards, done flags, ``("next", "continue")`` =
    ``1 − terminated`` and ``"survival"`` = 1) for
    :class:`~torchrl_flowmbpo.objectives.PWMValueLoss` (its TD(λ) targets cut at the done
    flags), and :attr:`next_start` holds the detached root TensorDict the next call starts from:
    SHAC's episodes go on across updates.

    Args:
        actor_network: a probabilistic actor reading the observation and writing ``"action"``.
        critic_network: a critic on observations writing the ensemble minimum under
            ``"state_value"``.
        env: a batched env whose steps are differentiable (e.g. ``CartPoleEnv(...,
            differentiable=True)``).

    Keyword Args:
        horizon: rollout horizon H (SHAC: 32).
        gamma: discount γ.
        ret_rms: normalise the loss by a running std of the per-env loss (SHAC: off).
        bootstrap_params: parameters swapped into the critic for the bootstrap values (SHAC:
            its target critic's).
        value_loss: the value loss whose bootstrap parameters to use instead (read at every
            call; its target critic's when it has one). Give it or ``bootstrap_params``.
        entropy_coef: weight of the entropy bonus (SHAC: 0).

    Examples:
        >>> from torchrl_flowmbpo.envs.locomotion import CartPoleEnv
        >>> from torchrl_flowmbpo.modules import GaussianActor, VCritic
        >>> env = CartPoleEnv(4, seed=0, differentiable=True)
        >>> actor = GaussianActor(5, 1, hidden=(16,), latent_key="observation")
        >>> critic = VCritic(5, hidden=(16,), latent_key="observation")
        >>> loss = SHACActorLoss(actor, critic, env, horizon=8, ret_rms=False)
        >>> losses, traj = loss(env.reset())
        >>> losses["loss_actor"].backward()
        >>> traj.shape, loss.next_start.batch_size
        (torch.Size([4, 8]), torch.Size([4]))
    """

    @dataclass
    class _AcceptedKeys(PathwiseActorLoss._AcceptedKeys):
        """Keys read and written by the loss, besides the shared ones (``value``, ``reward``,
        ``continue_prob`` (written ``1 − terminated``), ``survival`` (written 1), ``loc``,
        ``scale``: see :class:`~torchrl_flowmbpo.objectives.PathwiseActorLoss`).

        Attributes:
            observation: the env's observation, read by the actor and the critic. Defaults to
                ``"observation"``.
            done: episode-end flag, under ``"next"``. Defaults to ``"done"``.
            terminated: termination flag, under ``"next"``. Defaults to ``"terminated"``.
        """

        observation: NestedKey = "observation"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys

    def __init__(
        self,
        actor_network: TensorDictModule,
        critic_network: TensorDictModule,
        env: EnvBase,
        *,
        horizon: int = 32,
        gamma: float = 0.99,
        ret_rms: bool = False,
        bootstrap_params: TensorDictBase | None = None,
        value_loss: LossModule | None = None,
        entropy_coef: float = 0.0,
    ) -> None:
        super().__init__(
            actor_network,
            critic_network,
            horizon=horizon,
            gamma=gamma,
            ret_rms=ret_rms,
            bootstrap_params=bootstrap_params,
            value_loss=value_loss,
            entropy_coef=entropy_coef,
        )
        self.__dict__["env"] = env
        self.next_start: TensorDictBase | None = None

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """TD(λ) lives in the value loss; no estimator keys to forward."""

    @property
    def state_key(self) -> NestedKey:
        """The observation key: what the actor and the critic read."""
        return self.tensor_keys.observation

    def _rollout(self, tensordict: TensorDictBase) -> Rollout:
        """Rolls the actor out in the env from ``tensordict`` and splits the window's return."""
        keys = self.tensor_keys
        with set_exploration_type(ExplorationType.RANDOM):
            traj, next_start = differentiable_rollout(
                self.env, self.actor_network, tensordict, self.horizon
            )
        self.next_start = next_start.detach()
        with hold_out_net(self.critic_network):
            next_value = self._bootstrap_value(traj.get(("next", keys.observation)))
        reward = traj.get(("next", keys.reward))
        done = traj.get(("next", keys.done))
        terminated = traj.get(("next", keys.terminated))
        total = segment_returns(reward, next_value, done, terminated, self.gamma)
        reward_part = segment_returns(
            reward, torch.zeros_like(next_value), done, terminated, self.gamma
        )
        traj.set(("next", keys.continue_prob), (~terminated).to(reward.dtype))
        traj.set(keys.survival, torch.ones_like(reward))
        return Rollout(
            reward_part=reward_part,
            bootstrap_part=total - reward_part,
            trajectory=traj,
            survival_horizon=torch.ones_like(next_value[..., -1, :]),
            bootstrap_value=next_value[..., -1, :],
        )
