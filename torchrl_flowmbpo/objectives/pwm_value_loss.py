"""PWM's critic loss: every ensemble member regresses one TD(λ) target of the imagined rollout."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule
from torchrl.objectives.value.functional import td0_return_estimate, td_lambda_return_estimate

from torchrl_flowmbpo.objectives.common import check_finite

__all__ = ["CRITIC_TARGETS", "PWMValueLoss"]

CRITIC_TARGETS = ("td_lambda", "one_step")
#: Set on a critic whose value loss keeps a target copy (``target_critic=True``).
TARGET_CRITIC_MARK = "_pwm_has_target_critic"


class PWMValueLoss(LossModule):
    """TD(λ) value loss on an imagined trajectory (docs/algorithm.md, "Critic").

    :meth:`compute_value_targets` is called once per imagined trajectory (the output of
    :class:`~torchrl_flowmbpo.objectives.PWMActorLoss`): it evaluates ``V_{t+1} = min_k
    V_k(z_{t+1})`` without gradient (target critic if enabled) and builds, with per-step discount
    ``γ c_t``, ``G_{H−1} = r̂_{H−1} + γ c_{H−1} V_H`` and ``G_t = r̂_t + γ c_t [(1−λ) V_{t+1} +
    λ G_{t+1}]`` through TorchRL's ``td_lambda_return_estimate`` (``critic_target="one_step"``:
    ``G_t = r̂_t + γ c_t V_{t+1}``). Where the trajectory has ``("next", "done")`` flags (a real
    rollout, e.g. SHAC's) the recursion restarts after each episode end, which bootstraps from
    the final observation's value, or from 0 where ``("next", "terminated")`` is set; imagined
    episodes never end. The targets stay frozen over the critic's minibatch steps.

    :meth:`forward` on any minibatch of that trajectory returns ``loss_value = mean_{k, samples}
    Γ_t (V_k(z_t) − G_t)²``, with the survival weight ``Γ_t`` (1 without termination head).

    Args:
        critic_network: a critic writing per-member values ``[..., M, 1]`` under
            ``"state_value_members"``.

    Keyword Args:
        gamma: discount γ.
        lmbda: TD(λ) λ.
        critic_target: ``"td_lambda"`` or ``"one_step"``.
        target_critic: keep a Polyak-averaged copy of the critic (update it with TorchRL's
            ``SoftUpdate(loss, tau=0.005)``) that supplies ``V_{t+1}``.
        functional: hold the critic's parameters in ``critic_network_params`` and swap them
            into the critic at every call, as TorchRL's losses do (``True``), or call the critic
            as a registered submodule (``False``, as ``functional`` of TorchRL's ``PPOLoss``):
            the same values and gradients without the swap, which costs about 1,000 Python
            function calls per critic step (docs/benchmarks.md). A target critic needs
            ``True``.

    Examples:
        >>> from torchrl_flowmbpo.modules import VCritic
        >>> loss = PWMValueLoss(VCritic(16, hidden=(32,)))
        >>> traj = TensorDict({
        ...     "latent": torch.rand(4, 5, 16), "survival": torch.ones(4, 5, 1),
        ...     ("next", "latent"): torch.rand(4, 5, 16), ("next", "reward"): torch.ones(4, 5, 1),
        ...     ("next", "continue"): torch.ones(4, 5, 1)}, batch_size=[4, 5])
        >>> traj = loss.compute_value_targets(traj)
        >>> loss(traj.reshape(-1))["loss_value"].backward()
    """

    @dataclass
    class _AcceptedKeys:
        """Keys read and written by the loss.

        Attributes:
            latent: latent z_t. Defaults to ``"latent"``.
            members: per-member values. Defaults to ``"state_value_members"``.
            value: ensemble-minimum value. Defaults to ``"state_value"``.
            reward: imagined reward, under ``"next"``. Defaults to ``"reward"``.
            continue_prob: continue probability c_t, under ``"next"``. Defaults to
                ``"continue"``.
            survival: survival weight Γ_t. Defaults to ``"survival"``.
            value_target: written TD target G_t. Defaults to ``"value_target"``.
            done: episode-end flag, under ``"next"`` (optional). Defaults to ``"done"``.
            terminated: termination flag, under ``"next"`` (optional). Defaults to
                ``"terminated"``.
        """

        latent: NestedKey = "latent"
        members: NestedKey = "state_value_members"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        continue_prob: NestedKey = "continue"
        survival: NestedKey = "survival"
        value_target: NestedKey = "value_target"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"

    tensor_keys: _AcceptedKeys
    default_keys = _AcceptedKeys

    critic_network: TensorDictModule
    critic_network_params: TensorDictParams | None
    target_critic_network_params: TensorDictParams | None

    def __init__(
        self,
        critic_network: TensorDictModule,
        *,
        gamma: float = 0.99,
        lmbda: float = 0.95,
        critic_target: str = "td_lambda",
        target_critic: bool = False,
        functional: bool = True,
    ) -> None:
        super().__init__()
        if critic_target not in CRITIC_TARGETS:
            raise ValueError(f"Unknown critic_target {critic_target!r}; allowed: {CRITIC_TARGETS}.")
        if target_critic and not functional:
            raise ValueError(
                "target_critic=True needs functional=True: the target critic's parameters are "
                "swapped into the critic."
            )
        self._functional = functional
        if functional:
            self.convert_to_functional(
                critic_network, "critic_network", create_target_params=target_critic
            )
        else:
            self.critic_network = critic_network
            self.critic_network_params = self.target_critic_network_params = None
        self.gamma, self.lmbda = gamma, lmbda
        self.critic_target, self.target_critic = critic_target, target_critic
        if target_critic:
            # Read by the actor losses: one that bootstraps from this critic without being
            # told of its target copy (value_loss= or bootstrap_params=) refuses to run.
            critic_network.__dict__[TARGET_CRITIC_MARK] = True

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        """Targets are built by :meth:`compute_value_targets`; no estimator keys to forward."""

    @property
    def functional(self) -> bool:
        """Whether the critic's parameters live in ``critic_network_params`` (swapped in)."""
        return self._functional

    @property
    def bootstrap_params(self) -> TensorDictBase | None:
        """Parameters that supply bootstrap values: the target critic's, or the critic's own.

        ``None`` when the loss is not functional: the critic's own parameters are in place.
        """
        if self.target_critic:
            return self.target_critic_network_params
        return self.critic_network_params

    def _critic_with(
        self, params: TensorDictBase | None, **kwargs
    ) -> contextlib.AbstractContextManager:
        """Swaps ``params`` into the critic for the block (nothing to swap when ``None``)."""
        if params is None:
            return contextlib.nullcontext()
        return params.to_module(self.critic_network, **kwargs)

    @property
    def minibatch_keys(self) -> list[NestedKey]:
        """Keys :meth:`forward` reads from a batch whose targets are already computed."""
        keys = self.tensor_keys
        return [keys.latent, keys.value_target, keys.survival]

    @torch.no_grad()
    def compute_value_targets(self, trajectory: TensorDictBase) -> TensorDictBase:
        """Writes the TD target ``G_t`` under ``value_target`` of a ``[..., H]`` trajectory."""
        keys = self.tensor_keys
        next_latent = trajectory.get(("next", keys.latent))
        td = TensorDict({keys.latent: next_latent}, batch_size=next_latent.shape[:-1])
        with self._critic_with(self.bootstrap_params, preserve_module_state=False):
            next_value = self.critic_network(td).get(keys.value)
        reward = trajectory.get(("next", keys.reward))
        gamma = self.gamma * trajectory.get(("next", keys.continue_prob))
        never = torch.zeros_like(reward, dtype=torch.bool)
        done = trajectory.get(("next", keys.done), never)
        terminated = trajectory.get(("next", keys.terminated), never)
        if self.critic_target == "td_lambda":
            target = td_lambda_return_estimate(
                gamma, self.lmbda, next_value, reward, done, terminated, rolling_gamma=True
            )
        else:
            target = td0_return_estimate(gamma, next_value, reward, terminated)
        trajectory.set(keys.value_target, target)
        return trajectory

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Weighted MSE of every member to the frozen target (computed first if missing)."""
        keys = self.tensor_keys
        if keys.value_target not in tensordict.keys(include_nested=True):
            tensordict = self.compute_value_targets(tensordict.copy())
        check_finite(tensordict, [keys.latent, keys.value_target], type(self).__name__)
        latent = tensordict.get(keys.latent).detach()
        td = TensorDict({keys.latent: latent}, batch_size=latent.shape[:-1])
        with self._critic_with(self.critic_network_params):
            members = self.critic_network(td).get(keys.members)
        target = tensordict.get(keys.value_target).detach().unsqueeze(-2)
        error = (members - target).pow(2)
        weight = tensordict.get(keys.survival, None)
        if weight is not None:
            error = error * weight.detach().unsqueeze(-2)
        return TensorDict(
            {
                "loss_value": error.mean(),
                "value_mean": members.detach().mean(),
                "value_target_mean": target.mean(),
            },
            batch_size=[],
        )
