"""First-order (pathwise) actor losses: the negative H-step return through a differentiable rollout.

The shared part of :class:`~torchrl_flowmbpo.objectives.PWMActorLoss` (the rollout runs in a
learned world model) and :class:`~torchrl_flowmbpo.objectives.SHACActorLoss` (it runs in a
differentiable simulator): the return's normalisation, the entropy bonus, the critic's bootstrap
and the logged statistics. A subclass only says how it rolls the actor out and splits the return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from tensordict.utils import NestedKey
from torch import distributions as D
from torchrl.objectives import LossModule

from torchrl_flowmbpo.modules.actors import TanhNormalActionDistribution
from torchrl_flowmbpo.objectives.common import module_device
from torchrl_flowmbpo.objectives.pwm_value_loss import TARGET_CRITIC_MARK
from torchrl_flowmbpo.transforms.running_stats import RunningMeanStd

__all__ = ["PathwiseActorLoss", "Rollout"]


class Rollout(NamedTuple):
    """One differentiable rollout and its return, split into the rewards' and the critic's parts."""

    reward_part: torch.Tensor  # what the rewards contribute to the return, [*B]
    bootstrap_part: torch.Tensor  # what the critic's bootstrap values contribute, [*B]
    trajectory: TensorDictBase  # [*B, H], not detached
    survival_horizon: torch.Tensor  # Γ_H (1 where nothing predicts termination), [*B, 1]
    bootstrap_value: torch.Tensor  # the critic's value at the horizon, [*B, 1]


class PathwiseActorLoss(LossModule):
    """Base of the first-order actor losses: ``loss = mean(−J)``, J an H-step return.

    Subclasses implement :meth:`_rollout`. The loss is ``mean(−J)`` divided by ``sqrt(var +
    1e-5)`` of a running estimate of ``−J`` (``ret_rms``) or by ``H`` without it. With
    ``entropy_coef > 0``, a second term ``loss_entropy = −entropy_coef · mean_{b,t} Ĥ(π(·|s_t))``
    rewards the entropy of the squashed action distribution, estimated with one fresh
    reparameterised action ``a`` per state: ``Ĥ = −log π(a|s_t)``, the same for both actors (for
    the tanh-Gaussian ``Σ_d [log σ_d + ½ log 2π + ½ ε_d² + log(1 − tanh²(u_d))]``; for the
    FlowActor the solve's log-determinant replaces ``log σ``). Its ``log(1 − tanh²)`` part keeps a
    gradient of about 2 per unit of pre-tanh action when the actions saturate, where the return's
    gradient is exactly zero in float32 (an actor there never recovers).

    ``forward`` returns ``(losses, trajectory)``: the detached rollout ``[B, H]``, ready for
    :class:`~torchrl_flowmbpo.objectives.PWMValueLoss`.

    Args:
        actor_network: a probabilistic actor reading the rollout's state and writing
            ``"action"``.
        critic_network: a critic writing the ensemble minimum under ``"state_value"``.

    Keyword Args:
        horizon: rollout horizon H.
        gamma: discount γ.
        ret_rms: normalise the loss by a running std of the per-start loss (PWM).
        bootstrap_params: parameters swapped into the critic for the bootstrap values, e.g. a
            target critic's; the critic's own parameters when ``None``.
        value_loss: the :class:`~torchrl_flowmbpo.objectives.PWMValueLoss` that trains the
            critic: the bootstrap then uses the parameters its targets use
            (``value_loss.bootstrap_params``: the target critic's when it has one), read at every
            call, so the loss can be built before TorchRL's ``SoftUpdate`` (no "No target
            network updater" warning). Give it or ``bootstrap_params``, not both.

    Raises:
        ValueError: if ``value_loss`` and ``bootstrap_params`` are both given, or if
            ``value_loss`` trains another critic than ``critic_network``.
        entropy_coef: weight of the entropy bonus (0: none). Needs an actor whose distribution
            has ``rsample_and_log_prob`` (or ``rsample`` and ``log_prob``) and whose parameters
            the rollout keeps (:class:`~torchrl_flowmbpo.modules.GaussianActor`,
            :class:`~torchrl_flowmbpo.modules.FlowActor`), or a module writing the pre-tanh
            ``"loc"`` and ``"scale"`` (then a tanh-Gaussian).
    """

    @dataclass
    class _AcceptedKeys:
        """Keys every first-order actor loss reads and writes (subclasses add their own).

        Attributes:
            value: the critic's (minimum) value. Defaults to ``"state_value"``.
            reward: the rollout's reward, under ``"next"``. Defaults to ``"reward"``.
            continue_prob: written continue probability, under ``"next"``.
                Defaults to ``"continue"``.
            survival: written survival weight Γ_t. Defaults to ``"survival"``.
            loc: pre-tanh mean of a non-probabilistic actor (entropy bonus only).
                Defaults to ``"loc"``.
            scale: pre-tanh std of a non-probabilistic actor (entropy bonus only).
                Defaults to ``"scale"``.
        """

        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        continue_prob: NestedKey = "continue"
        survival: NestedKey = "survival"
        loc: NestedKey = "loc"
        scale: NestedKey = "scale"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys

    def __init__(
        self,
        actor_network: TensorDictModule,
        critic_network: TensorDictModule,
        *,
        horizon: int = 16,
        gamma: float = 0.99,
        ret_rms: bool = True,
        bootstrap_params: TensorDictBase | None = None,
        value_loss: LossModule | None = None,
        entropy_coef: float = 0.0,
    ) -> None:
        super().__init__()
        if value_loss is not None and bootstrap_params is not None:
            raise ValueError(
                f"Give {type(self).__name__} value_loss= or bootstrap_params=, not both: with "
                "value_loss the bootstrap uses value_loss.bootstrap_params."
            )
        if value_loss is not None and value_loss.critic_network is not critic_network:
            raise ValueError(
                "value_loss trains another critic than critic_network: the actor would "
                "bootstrap from a critic the value loss does not fit."
            )
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}.")
        if entropy_coef < 0:
            raise ValueError(f"entropy_coef must be >= 0, got {entropy_coef}.")
        self.entropy_coef = float(entropy_coef)
        self.actor_network = actor_network
        # Not registered as submodules: this loss must not own (or optimise) them.
        self.__dict__["critic_network"] = critic_network
        self.__dict__["bootstrap_params"] = bootstrap_params
        self.__dict__["value_loss"] = value_loss  # not a submodule: it owns the critic
        self.horizon, self.gamma = horizon, gamma
        self.ret_rms = RunningMeanStd(device=module_device(actor_network)) if ret_rms else None

    @property
    def bootstrap_params(self) -> TensorDictBase | None:
        """The parameters of the bootstrap: ``value_loss.bootstrap_params`` when a value loss
        was given (read now, not at construction), else the ``bootstrap_params`` argument
        (``None``: the critic's own)."""
        value_loss = self.__dict__.get("value_loss")
        if value_loss is not None:
            return value_loss.bootstrap_params
        # The constructor stores the argument in the instance dict; this property shadows it.
        return self.__dict__.get("bootstrap_params")

    @property
    def state_key(self) -> NestedKey:
        """The key of the rollout's state: what the actor and the critic read."""
        raise NotImplementedError

    def _rollout(self, tensordict: TensorDictBase) -> Rollout:
        """Rolls the actor out from the starts in ``tensordict`` and splits its return."""
        raise NotImplementedError

    def return_parts(
        self, tensordict: TensorDictBase
    ) -> tuple[torch.Tensor, torch.Tensor, TensorDictBase]:
        """The two parts of the return ``J = reward_part + bootstrap_part``, per start.

        One rollout (RANDOM exploration) as :meth:`forward` computes it: ``reward_part`` is what
        the rewards contribute, ``bootstrap_part`` what the critic's values contribute. Both are
        differentiable w.r.t. the actor's parameters (through the sampled actions), so their
        gradients can be compared
        (:func:`~torchrl_flowmbpo.diagnostics.actor_gradient_split`). The running return
        statistics (``ret_rms``) are not updated.

        Args:
            tensordict: the starts ``[*B]``.

        Returns:
            ``(reward_part [*B], bootstrap_part [*B], trajectory [*B, H])``; the trajectory is not
            detached.
        """
        parts = self._rollout(tensordict)
        return parts.reward_part, parts.bootstrap_part, parts.trajectory

    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        """Rolls out from the starts and returns ``(losses, trajectory)``."""
        parts = self._rollout(tensordict)
        traj = parts.trajectory
        ret = parts.reward_part + parts.bootstrap_part
        per_start_loss = -ret
        if self.ret_rms is not None:
            self.ret_rms.update(per_start_loss.detach())
            loss = self.ret_rms.normalize(per_start_loss.mean(), center=False, eps=1e-5)
        else:
            loss = per_start_loss.mean() / self.horizon
        extra = {}
        if self.entropy_coef > 0:
            entropy = self._entropy(traj)
            extra = {"loss_entropy": -self.entropy_coef * entropy, "entropy": entropy.detach()}
        losses = TensorDict(
            {
                "loss_actor": loss,
                **extra,
                "imagined_return": ret.detach().mean(),
                "imagined_reward": traj.get(("next", self.tensor_keys.reward)).detach().mean(),
                "survival_horizon": parts.survival_horizon.detach().mean(),
                "bootstrap_value": parts.bootstrap_value.detach().mean(),
                "action_std": traj.get("action").detach().std(dim=tuple(range(traj.ndim))).mean(),
            },
            batch_size=[],
        )
        return losses, traj.detach()

    def _entropy(self, traj: TensorDictBase) -> torch.Tensor:
        """Mean one-sample estimate of the squashed action's entropy over the rollout's states.

        ``Ĥ = −log π(a|s)`` at one fresh reparameterised action per state, from the actor's
        distribution rebuilt from the parameters the rollout stored (the actor's networks are
        not run again): the same quantity for a tanh-Gaussian and a FlowActor.
        """
        dist = self._action_distribution(traj)
        if hasattr(dist, "rsample_and_log_prob"):
            _, log_prob = dist.rsample_and_log_prob()
        else:
            log_prob = dist.log_prob(dist.rsample())
        return -log_prob.mean()

    def _action_distribution(self, traj: TensorDictBase) -> D.Distribution:
        """The actor's action distribution at the rollout's states, from its stored parameters.

        A probabilistic actor's own distribution module (its ``in_keys``: ``"loc"``/``"scale"``
        for the Gaussian actor, ``"cond"``/``"scale"`` for the FlowActor); for a plain module
        writing ``"loc"`` and ``"scale"``, a tanh-Gaussian.
        """
        dist_module = None
        if isinstance(self.actor_network, ProbabilisticTensorDictSequential):
            modules = self.actor_network.modules()
            dist_module = next(m for m in modules if isinstance(m, ProbabilisticTensorDictModule))
            needed = list(dist_module.in_keys)
        else:
            needed = [self.tensor_keys.loc, self.tensor_keys.scale]
        missing = [key for key in needed if key not in traj.keys(True)]
        if missing:
            raise KeyError(
                f"entropy_coef={self.entropy_coef} needs the action distribution's parameters "
                f"{missing} in the rollout: use a probabilistic actor (GaussianActor, FlowActor) "
                "or a module writing the pre-tanh 'loc' and 'scale', or set entropy_coef=0."
            )
        if dist_module is not None:
            return dist_module.get_dist(traj)
        loc, scale = traj.get(self.tensor_keys.loc), traj.get(self.tensor_keys.scale)
        return TanhNormalActionDistribution(
            loc, scale, low=-1.0, high=1.0, tanh_loc=False, safe_tanh=False
        )

    def _bootstrap_value(self, states: torch.Tensor) -> torch.Tensor:
        """``min_k V_k(s)`` with the (held-out) critic or the bootstrap parameters."""
        td = TensorDict({self.state_key: states}, batch_size=states.shape[:-1])
        if self.bootstrap_params is None:
            if self.__dict__.get("value_loss") is None and self.critic_network.__dict__.get(
                TARGET_CRITIC_MARK, False
            ):
                raise ValueError(
                    "The critic has a target copy (PWMValueLoss(..., target_critic=True)) but "
                    f"{type(self).__name__} bootstraps from the online critic: build it with "
                    "value_loss=value_loss (or bootstrap_params="
                    "value_loss.target_critic_network_params)."
                )
            return self.critic_network(td).get(self.tensor_keys.value)
        with self.bootstrap_params.to_module(self.critic_network, preserve_module_state=False):
            return self.critic_network(td).get(self.tensor_keys.value)
