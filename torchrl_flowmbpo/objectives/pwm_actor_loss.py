"""PWM's first-order actor loss: the negative imagined return, backpropagated through the model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import LossModule, hold_out_net

from torchrl_flowmbpo.envs.imagined import ImaginedLatentEnv
from torchrl_flowmbpo.modules.models.world_model import LatentWorldModel
from torchrl_flowmbpo.objectives.common import check_finite, discount_weights, module_device
from torchrl_flowmbpo.transforms.running_stats import RunningMeanStd

__all__ = ["PWMActorLoss"]


class _Imagination(NamedTuple):
    """One imagined rollout and its return, split into the model's and the critic's parts."""

    reward_part: torch.Tensor  # Σ_t γ^t Γ_t r̂_t, [*B]
    bootstrap_part: torch.Tensor  # γ^P Γ_H min_k V_k(z_H), [*B]
    trajectory: TensorDictBase  # [*B, H], not detached
    survival_horizon: torch.Tensor  # Γ_H, [*B, 1]
    bootstrap_value: torch.Tensor  # min_k V_k(z_H), [*B, 1]


class PWMActorLoss(LossModule):
    """First-order actor loss of PWM through H-step imagined rollouts (algorithm.md §5, §9).

    From real start observations ``o_0``: ``z_0 = E(o_0)``, then the actor (sampled, RANDOM
    exploration) is rolled out for ``horizon`` steps in an :class:`ImaginedLatentEnv`. With
    continue probabilities ``c_t = 1 − σ(T(z_t, a_t))`` and survival ``Γ_0 = 1``,
    ``Γ_{t+1} = Γ_t c_t``, the imagined return of each start state is

    ``J = Σ_t γ^t Γ_t r̂_t + γ^H Γ_H min_k V_k(z_H)``

    and the loss is ``mean(−J)`` divided by ``sqrt(var + 1e-5)`` of a running estimate of ``−J``
    (``ret_rms``) or by ``H`` without it. With ``entropy_coef > 0`` (tanh-Gaussian actors), a
    second term ``loss_entropy = −entropy_coef · mean_{b,t} Ĥ(π(·|z_t))`` rewards the entropy of
    the squashed action distribution, estimated with one fresh reparameterised sample ``u`` per
    state: ``Ĥ = Σ_d [log σ_d + ½ log(2πe) + log(1 − tanh²(u_d))]``. Its ``log(1 − tanh²)``
    part keeps a gradient of about 2 per unit of pre-tanh mean when the actions saturate, where
    the return's gradient is exactly zero in float32 (an actor there never recovers). The world
    model and the critic are held out (``hold_out_net``): gradients flow *through* them to the
    actor's actions, never *into* their parameters.

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
        entropy_coef: weight of the entropy bonus (0: none, PWM). Needs an actor writing the
            pre-tanh ``"loc"`` and ``"scale"`` (:class:`~torchrl_flowmbpo.modules.GaussianActor`).

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
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read and written by the loss.

        Attributes:
            observation: start observations. Defaults to ``"observation"``.
            latent: latent key of the imagined env and the actor. Defaults to ``"latent"``.
            value: the critic's (minimum) value. Defaults to ``"state_value"``.
            reward: imagined reward, under ``"next"``. Defaults to ``"reward"``.
            termination_logit: imagined termination logit, under ``"next"``.
                Defaults to ``"termination_logit"``.
            continue_prob: written continue probability, under ``"next"``.
                Defaults to ``"continue"``.
            survival: written survival weight Γ_t. Defaults to ``"survival"``.
            loc: the actor's pre-tanh mean (entropy bonus only). Defaults to ``"loc"``.
            scale: the actor's pre-tanh std (entropy bonus only). Defaults to ``"scale"``.
        """

        observation: NestedKey = "observation"
        latent: NestedKey = "latent"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        termination_logit: NestedKey = "termination_logit"
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
        world_model: LatentWorldModel,
        *,
        horizon: int = 16,
        gamma: float = 0.99,
        ret_rms: bool = True,
        detach_continue: bool = False,
        use_continue: bool = True,
        bootstrap_extra_gamma: bool = False,
        bootstrap_params: TensorDictBase | None = None,
        entropy_coef: float = 0.0,
    ) -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}.")
        if entropy_coef < 0:
            raise ValueError(f"entropy_coef must be >= 0, got {entropy_coef}.")
        self.entropy_coef = float(entropy_coef)
        self.actor_network = actor_network
        # Not registered as submodules: this loss must not own (or optimise) them.
        self.__dict__["critic_network"] = critic_network
        self.__dict__["world_model"] = world_model
        self.__dict__["bootstrap_params"] = bootstrap_params
        self.horizon, self.gamma = horizon, gamma
        self.detach_continue = detach_continue
        self.use_continue = use_continue and world_model.has_termination
        self.bootstrap_extra_gamma = bootstrap_extra_gamma
        self.ret_rms = RunningMeanStd(device=module_device(actor_network)) if ret_rms else None
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
        parts = self._imagine(tensordict)
        return parts.reward_part, parts.bootstrap_part, parts.trajectory

    def _imagine(self, tensordict: TensorDictBase) -> _Imagination:
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
        return _Imagination(
            reward_part=(discount * survival * reward).sum(-2).squeeze(-1),
            bootstrap_part=(self.gamma**boot_power * survival_h * bootstrap).squeeze(-1),
            trajectory=traj,
            survival_horizon=survival_h,
            bootstrap_value=bootstrap,
        )

    def forward(self, tensordict: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        """Imagines from the start observations and returns ``(losses, trajectory)``."""
        parts = self._imagine(tensordict)
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
        """Mean one-sample estimate of the tanh-Gaussian entropy over the imagined states."""
        keys = self.tensor_keys
        missing = [key for key in (keys.loc, keys.scale) if key not in traj.keys(True)]
        if missing:
            raise KeyError(
                f"entropy_coef={self.entropy_coef} needs the actor's pre-tanh {missing} in the "
                "rollout (a GaussianActor writes them; a FlowActor has no density): set "
                "entropy_coef=0 or use a tanh-Gaussian actor."
            )
        loc, scale = traj.get(keys.loc), traj.get(keys.scale)
        pre_tanh = loc + scale * torch.randn_like(loc)
        # log(1 − tanh²(u)) = 2 (log 2 − u − softplus(−2u)), stable for large |u|.
        log_det = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        gaussian = scale.log() + 0.5 * math.log(2.0 * math.pi * math.e)
        return (gaussian + log_det).sum(-1).mean()

    def _bootstrap_value(self, latent: torch.Tensor) -> torch.Tensor:
        """``min_k V_k(z_H)`` with the (held-out) critic or the bootstrap parameters."""
        td = TensorDict({self.tensor_keys.latent: latent}, batch_size=latent.shape[:-1])
        if self.bootstrap_params is None:
            return self.critic_network(td).get(self.tensor_keys.value)
        with self.bootstrap_params.to_module(self.critic_network, preserve_module_state=False):
            return self.critic_network(td).get(self.tensor_keys.value)
