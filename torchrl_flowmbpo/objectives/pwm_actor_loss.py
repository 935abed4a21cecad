"""PWM's first-order actor loss: the negative imagined return, backpropagated through the model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import hold_out_net

from torchrl_flowmbpo.envs.imagined import ImaginedLatentEnv
from torchrl_flowmbpo.modules.models.world_model import LatentWorldModel
from torchrl_flowmbpo.objectives.common import check_finite, discount_weights
from torchrl_flowmbpo.objectives.pathwise_actor_loss import PathwiseActorLoss, Rollout
from torchrl_flowmbpo.objectives.pwm_value_loss import PWMValueLoss

__all__ = ["PWMActorLoss"]


class PWMActorLoss(PathwiseActorLoss):
    """First-order actor loss of PWM through H-step rollouts (docs/algorithm.md, "Actor loss").

    From real start observations ``o_0``: ``z_0 = E(o_0)``, then the actor (sampled, RANDOM
    exploration) is rolled out for ``horizon`` steps in an :class:`ImaginedLatentEnv`. With
    continue probabilities ``c_t = 1 − σ(T(z_t, a_t))`` and survival ``Γ_0 = 1``,
    ``Γ_{t+1} = Γ_t c_t``, the imagined return of each start state is

    ``J = Σ_t γ^t Γ_t r̂_t + γ^H Γ_H min_k V_k(z_H)``

    and the loss, its normalisation and the entropy bonus are those of
    :class:`~torchrl_flowmbpo.objectives.PathwiseActorLoss`. The world model and the critic
    are held out (``hold_out_net``): gradients flow *through* them to the actor's actions, never
    *into* their parameters.

    :meth:`return_parts` gives the two terms of ``J`` separately (the model's rewards and the
    critic's bootstrap), differentiable, from the same rollout ``forward`` uses.

    ``forward`` returns ``(losses, trajectory)``: the detached imagined trajectory ``[B, H]``
    carries ``latent``, ``("next", "latent")``, ``("next", "reward")``, ``("next",
    "continue")`` and the survival weight ``"survival"`` (``Γ_t``), ready for
    :class:`~torchrl_flowmbpo.objectives.PWMValueLoss`.

    Args:
        actor_network: a probabilistic actor reading ``"latent"`` and writing ``"action"``.
        critic_network: a critic writing the ensemble minimum under ``"state_value"``.
        world_model: the latent world model.

    Keyword Args:
        horizon: imagination horizon H.
        gamma: discount γ.
        ret_rms: normalise the loss by a running std of the per-start loss (PWM).
        detach_continue: stop gradients through ``c_t`` (Dreamer-style weights).
        use_continue: weight by the predicted continue probability when the model has a
            termination head.
        bootstrap_extra_gamma: PWM's ``γ^{H+1}`` horizon bootstrap (parity only; default γ^H).
        bootstrap_params: parameters swapped into the critic for the horizon bootstrap, e.g. a
            target critic's; the critic's own parameters when ``None``.
        value_loss: the :class:`~torchrl_flowmbpo.objectives.PWMValueLoss` that trains the
            critic: the bootstrap then uses the parameters its targets use
            (``value_loss.bootstrap_params``: the target critic's when it has one), read at every
            call, so the loss can be built before TorchRL's ``SoftUpdate`` (no "No target
            network updater" warning). Give it or ``bootstrap_params``, not both.
        entropy_coef: weight of the entropy bonus: 0.1 by default, as ``configs/algo/pwm.yaml``
            (0: none, PWM). Needs an actor whose distribution gives the log-density of a
            reparameterised sample (:class:`~torchrl_flowmbpo.modules.GaussianActor`,
            :class:`~torchrl_flowmbpo.modules.FlowActor`) or a module writing the pre-tanh
            ``"loc"`` and ``"scale"``; see :class:`~torchrl_flowmbpo.objectives.PathwiseActorLoss`.

    Raises:
        ValueError: if ``value_loss`` and ``bootstrap_params`` are both given, or if
            ``value_loss`` trains another critic than ``critic_network``.

    Examples:
        >>> from torchrl_flowmbpo.modules import FlowActor, VCritic
        >>> from torchrl_flowmbpo.modules.models import FlowWorldModel
        >>> wm = FlowWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> actor, critic = FlowActor(16, 2, hidden=(32,)), VCritic(16, hidden=(32,))
        >>> loss = PWMActorLoss(actor, critic, wm, horizon=5)
        >>> losses, traj = loss(TensorDict(observation=torch.randn(6, 4), batch_size=[6]))
        >>> losses["loss_actor"].backward()
        >>> traj.shape
        torch.Size([6, 5])

        With a target critic, hand the actor loss the value loss: it bootstraps from the target
        critic, as the value targets do.

        >>> from torchrl.objectives import SoftUpdate
        >>> from torchrl_flowmbpo.objectives import PWMValueLoss
        >>> value_loss = PWMValueLoss(critic, target_critic=True)
        >>> loss = PWMActorLoss(actor, critic, wm, horizon=5, value_loss=value_loss)
        >>> target_updater = SoftUpdate(value_loss, tau=0.005)
        >>> loss.bootstrap_params is value_loss.target_critic_network_params
        True
    """

    @dataclass
    class _AcceptedKeys(PathwiseActorLoss._AcceptedKeys):
        """Keys read and written by the loss, besides the shared ones (``value``, ``reward``,
        ``continue_prob``, ``survival``, ``loc``, ``scale``: see
        :class:`~torchrl_flowmbpo.objectives.PathwiseActorLoss`).

        Attributes:
            observation: start observations. Defaults to ``"observation"``.
            latent: latent key of the imagined env and the actor. Defaults to ``"latent"``.
            termination_logit: imagined termination logit, under ``"next"``.
                Defaults to ``"termination_logit"``.
        """

        observation: NestedKey = "observation"
        latent: NestedKey = "latent"
        termination_logit: NestedKey = "termination_logit"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys

    def __init__(
        self,
        actor_network: TensorDictModule,
        critic_network: TensorDictModule,
        world_model: LatentWorldModel,
        *,
        horizon: int = 16,
        gamma: float = 0.99,
        ret_rms: bool = True,
        detach_continue: bool = False,
        use_continue: bool = True,
        bootstrap_extra_gamma: bool = False,
        bootstrap_params: TensorDictBase | None = None,
        value_loss: PWMValueLoss | None = None,
        entropy_coef: float = 0.1,
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
        self.__dict__["world_model"] = world_model
        self.detach_continue = detach_continue
        self.use_continue = use_continue and world_model.has_termination
        self.bootstrap_extra_gamma = bootstrap_extra_gamma
        self._build_imagined_env()

    def _build_imagined_env(self) -> None:
        keys = self.tensor_keys
        self.__dict__["imagined_env"] = ImaginedLatentEnv(
            self.world_model,
            latent_key=keys.latent,
            reward_key=keys.reward,
            termination_key=keys.termination_logit,
        )

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """Rebuilds the imagined env with the new keys (TD(λ) lives in the value loss)."""
        if "world_model" in self.__dict__:
            self._build_imagined_env()

    @property
    def state_key(self) -> NestedKey:
        """The latent key: what the actor and the critic read in imagination."""
        return self.tensor_keys.latent

    def return_parts(
        self, tensordict: TensorDictBase
    ) -> tuple[torch.Tensor, torch.Tensor, TensorDictBase]:
        """The two parts of the imagined return ``J = reward_part + bootstrap_part``, per start.

        One imagined rollout from the start observations (RANDOM exploration, world model and
        critic held out), as :meth:`forward` computes it:

        - ``reward_part = Σ_{t<H} γ^t Γ_t r̂_t``: what the world model's rewards contribute;
        - ``bootstrap_part = γ^P Γ_H min_k V_k(z_H)`` (``P = H``, or ``H + 1`` with
          ``bootstrap_extra_gamma``): what the critic contributes.

        Both are differentiable w.r.t. the actor's parameters (through the sampled actions), so
        their gradients can be compared
        (:func:`~torchrl_flowmbpo.diagnostics.actor_gradient_split`). The running return
        statistics (``ret_rms``) are not updated.

        Args:
            tensordict: start observations ``[*B]``.

        Returns:
            ``(reward_part [*B], bootstrap_part [*B], trajectory [*B, H])``; the trajectory is not
            detached and carries ``("next", "continue")`` (``c_t``) and ``"survival"`` (``Γ_t``).

        Examples:
            >>> from torchrl_flowmbpo.modules import GaussianActor, VCritic
            >>> from torchrl_flowmbpo.modules.models import PWMWorldModel
            >>> wm = PWMWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
            >>> actor, critic = GaussianActor(16, 2, hidden=(32,)), VCritic(16, hidden=(32,))
            >>> loss = PWMActorLoss(actor, critic, wm, horizon=5)
            >>> reward, bootstrap, traj = loss.return_parts(
            ...     TensorDict(observation=torch.randn(6, 4), batch_size=[6]))
            >>> reward.shape, bootstrap.shape, traj.shape
            (torch.Size([6]), torch.Size([6]), torch.Size([6, 5]))
        """
        return super().return_parts(tensordict)

    def _rollout(self, tensordict: TensorDictBase) -> Rollout:
        """Rolls the actor out in the model and splits its return (see :meth:`return_parts`)."""
        keys = self.tensor_keys
        check_finite(tensordict, [keys.observation], type(self).__name__)
        obs = tensordict.get(keys.observation)
        wm, critic = self.world_model, self.critic_network
        with hold_out_net(wm), hold_out_net(critic):
            start = TensorDict({keys.latent: wm.encode(obs)}, batch_size=obs.shape[:-1])
            with set_exploration_type(ExplorationType.RANDOM):
                traj = self.imagined_env.imagine(self.actor_network, start, self.horizon)
            bootstrap = self._bootstrap_value(traj.get(("next", keys.latent))[..., -1, :])
        reward = traj.get(("next", keys.reward))
        if self.use_continue:
            cont = 1.0 - torch.sigmoid(traj.get(("next", keys.termination_logit)))
            if self.detach_continue:
                cont = cont.detach()
        else:
            cont = torch.ones_like(reward)
        # Γ_t = Π_{s<t} c_s, over the time dim (-2); Γ_H multiplies the bootstrap.
        survival_all = torch.cat([torch.ones_like(cont[..., :1, :]), cont], -2).cumprod(-2)
        survival, survival_h = survival_all[..., :-1, :], survival_all[..., -1, :]
        discount = discount_weights(self.gamma, self.horizon, device=reward.device).unsqueeze(-1)
        boot_power = self.horizon + 1 if self.bootstrap_extra_gamma else self.horizon
        traj.set(("next", keys.continue_prob), cont)
        traj.set(keys.survival, survival)
        return Rollout(
            reward_part=(discount * survival * reward).sum(-2).squeeze(-1),
            bootstrap_part=(self.gamma**boot_power * survival_h * bootstrap).squeeze(-1),
            trajectory=traj,
            survival_horizon=survival_h,
            bootstrap_value=bootstrap,
        )
