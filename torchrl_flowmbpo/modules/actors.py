"""TensorDict-level actors: PWM's Gaussian actor and the flow-matching FlowActor.

Both are :class:`~torchrl.modules.ProbabilisticActor` s that read ``"latent"`` and write an
``"action"`` in ``[-1, 1]``, with gradients reaching every actor parameter through a RANDOM sample
(``rsample``). PWM trains the actor with first-order (pathwise) gradients, so the actors do not
write a log-probability by default. Both distributions have ``rsample_and_log_prob``: a fresh
reparameterised action and its differentiable ``log π(a|z)``, which the actor loss's entropy
bonus uses. ``FlowActor(return_log_prob=True)`` also writes ``"action_log_prob"``.

**Exploration type.** Both default to ``InteractionType.RANDOM``: a plain call samples, as PWM's
``actor(z)`` does. Evaluation selects the deterministic action explicitly with
``set_exploration_type(ExplorationType.DETERMINISTIC)``. The default matters only outside such a
context: a ``LossModule`` forces DETERMINISTIC inside ``forward``, so the actor loss must wrap its
imagined rollout in ``set_exploration_type(ExplorationType.RANDOM)``, and the collector uses RANDOM.

**Deterministic action.** DETERMINISTIC, MODE and MEAN all give the evaluation action: ``tanh(μ)``
for the Gaussian actor and the ODE solved from ``a_0 = 0`` for the FlowActor. Neither is the mean
(nor, in general, the mode) of the squashed stochastic policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from tensordict import TensorDictBase
from tensordict.nn import InteractionType, TensorDictModule
from tensordict.utils import NestedKey
from torch import distributions as D
from torch import nn
from torchrl.data import TensorSpec
from torchrl.modules import ProbabilisticActor, TanhNormal

from torchrl_flowmbpo.modules.models.policy_nets import (
    FlowPolicyNet,
    GaussianPolicyNet,
    tanh_log_abs_det,
)

__all__ = [
    "FlowActionDistribution",
    "FlowActor",
    "GaussianActor",
    "TanhNormalActionDistribution",
    "empirical_action_std",
]


class TanhNormalActionDistribution(TanhNormal):
    """``TanhNormal`` whose ``mode`` and ``mean`` both return its deterministic action.

    In torchrl 0.14.1 ``TanhNormal.deterministic_sample`` is the transformed ``loc``, but ``mode``
    raises ``RuntimeError`` and ``mean`` raises ``NotImplementedError`` (so
    ``InteractionType.MEAN`` would average 1000 samples). Here both return
    ``deterministic_sample``, so every non-random interaction type gives the same action. Built with
    ``safe_tanh=False`` and ``low=-1, high=1`` that action is exactly ``torch.tanh(loc)``; the
    default ``safe_tanh=True`` clamps it to ``±(1 - 1e-6)``.

    Examples:
        >>> loc = torch.tensor([[0.0, 10.0]])
        >>> dist = TanhNormalActionDistribution(loc, torch.ones_like(loc), safe_tanh=False)
        >>> torch.equal(dist.mode, torch.tanh(loc)), torch.equal(dist.mean, torch.tanh(loc))
        (True, True)
    """

    @property
    def mode(self) -> torch.Tensor:
        return self.deterministic_sample

    @property
    def mean(self) -> torch.Tensor:
        return self.deterministic_sample

    def rsample_and_log_prob(
        self, sample_shape: Sequence[int] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action ``a = tanh(μ + σ ε)`` and ``log π(a)`` summed over the action.

        ``log π(a) = Σ_d [log N(ε_d) − log σ_d − log(1 − tanh²(u_d))]`` with ``u = μ + σ ε``,
        computed from ``ε`` and ``u`` (stable where ``tanh(u)`` rounds to ±1, which makes
        ``log_prob(a)`` ``nan``). Needs ``tanh_loc=False`` and bounds ``[-1, 1]``.

        Examples:
            >>> loc = torch.tensor([[0.0, 20.0]])
            >>> dist = TanhNormalActionDistribution(loc, torch.ones_like(loc), safe_tanh=False)
            >>> action, log_prob = dist.rsample_and_log_prob()
            >>> action.shape, log_prob.shape, bool(log_prob.isfinite())
            (torch.Size([1, 2]), torch.Size([1]), True)
        """
        loc, scale = self.loc, self.scale
        shape = torch.Size(sample_shape) + loc.shape
        noise = torch.randn(shape, dtype=loc.dtype, device=loc.device)
        pre_tanh = loc + scale * noise
        log_prob = _standard_normal_log_prob(noise) - scale.log() - tanh_log_abs_det(pre_tanh)
        return torch.tanh(pre_tanh), log_prob.sum(-1)


def _standard_normal_log_prob(noise: torch.Tensor) -> torch.Tensor:
    return -0.5 * noise.pow(2) - 0.5 * math.log(2.0 * math.pi)


class GaussianActor(ProbabilisticActor):
    """PWM's actor: ``a = tanh(μ(z) + σ ε)``, deterministic action ``tanh(μ(z))``.

    Wraps :class:`~torchrl_flowmbpo.modules.models.GaussianPolicyNet` (writing ``"loc"`` and
    ``"scale"``) in a :class:`TanhNormalActionDistribution` with ``tanh_loc=False``, bounds
    ``[-1, 1]`` and a plain ``tanh`` (``safe_tanh=False``, as PWM's ``torch.tanh``; the safe
    variant only protects ``log_prob`` of saturated actions, which no loss here uses).

    Args:
        latent_dim: latent width ``L``.
        action_dim: action width ``A``.

    Keyword Args:
        hidden: hidden widths of the μ network.
        init_log_std: initial ``log σ``.
        min_log_std: floor of ``log σ``, clamped in place before each use.
        detach_latent: stop the gradient into the latent (PWM's ``True``); off by default, as
            ``configs/actor/*.yaml`` (closed loop).
        input_norm: a module applied to the input first, e.g. an
            :class:`~torchrl_flowmbpo.modules.models.InputNormalizer` shared with the critic.
        latent_key: input key.
        action_key: output key.
        spec: optional action spec (bounds must be ``[-1, 1]``).
        default_interaction_type: used when no exploration type is set (see the module docstring).

    Examples:
        >>> from tensordict import TensorDict
        >>> actor = GaussianActor(32, 4, hidden=(64, 64))
        >>> td = actor(TensorDict({"latent": torch.randn(5, 32)}, batch_size=[5]))
        >>> td["action"].shape, bool(td["action"].abs().max() <= 1)
        (torch.Size([5, 4]), True)
        >>> from torchrl.envs.utils import ExplorationType, set_exploration_type
        >>> with set_exploration_type(ExplorationType.DETERMINISTIC):
        ...     action = actor(td)["action"]
        >>> torch.equal(action, torch.tanh(td["loc"]))
        True
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        *,
        hidden: Sequence[int] = (400, 200, 100),
        init_log_std: float = -1.0,
        min_log_std: float = -1.427,
        detach_latent: bool = False,
        input_norm: nn.Module | None = None,
        latent_key: NestedKey = "latent",
        action_key: NestedKey = "action",
        spec: TensorSpec | None = None,
        default_interaction_type: InteractionType = InteractionType.RANDOM,
    ) -> None:
        net = GaussianPolicyNet(
            latent_dim,
            action_dim,
            hidden=hidden,
            init_log_std=init_log_std,
            min_log_std=min_log_std,
            detach_latent=detach_latent,
            input_norm=input_norm,
        )
        super().__init__(
            TensorDictModule(net, in_keys=[latent_key], out_keys=["loc", "scale"]),
            in_keys=["loc", "scale"],
            out_keys=[action_key],
            spec=spec,
            distribution_class=TanhNormalActionDistribution,
            distribution_kwargs={"low": -1.0, "high": 1.0, "tanh_loc": False, "safe_tanh": False},
            default_interaction_type=default_interaction_type,
            return_log_prob=False,
        )

    @property
    def policy_net(self) -> GaussianPolicyNet:
        """The wrapped :class:`GaussianPolicyNet` (``policy_net.std`` is σ, for logging)."""
        return self.module[0].module


class FlowActionDistribution(D.Distribution):
    """Action distribution of the FlowActor: ``tanh(Φ_ψ(σ ⊙ ε; cond))`` with ``ε ~ N(0, I)``.

    ``Φ_ψ`` integrates the policy's velocity field over flow time from ``tau = 0`` (source) to
    ``tau = 1`` (target). Sampling is reparameterised: :meth:`rsample` is differentiable w.r.t.
    ``cond``, ``scale`` and the velocity net, which is all PWM's pathwise gradient needs.

    ``deterministic_sample``, ``mode`` and ``mean`` all integrate from ``a_0 = 0``: that is the
    evaluation action, not the mean of the stochastic policy (it has no closed form). Defining
    ``mean`` keeps ``InteractionType.MEAN`` from averaging 1000 ODE solves.

    **Density.** :meth:`rsample_and_log_prob` returns an action and its log-density
    ``log π(a) = log N(a_0; 0, σ²) − log|det ∂a/∂a_0|`` (the solve's log-determinant and the tanh
    term, :meth:`FlowPolicyNet.transport_with_log_det`), differentiable like the action.
    :meth:`log_prob` gives the same for the distribution's **own last sample** (the very tensor
    that :meth:`rsample`, :meth:`sample`, :meth:`rsample_and_log_prob` or
    ``deterministic_sample`` returned last), which is what ``ProbabilisticActor(...,
    return_log_prob=True)`` asks for; any other action raises ``NotImplementedError``: its density
    needs the inverse of the discrete solve, which is not implemented.

    Args:
        cond: conditioning latent ``[*batch, L]``.
        scale: source-noise σ ``[*batch, A]``.

    Keyword Args:
        policy: the :class:`FlowPolicyNet` whose velocity field is integrated.
        eager_log_prob: compute the log-density with every sample (one pass, for
            ``return_log_prob=True``) instead of on request (a second pass).

    Examples:
        >>> net = FlowPolicyNet(32, 4, hidden=(64, 64))
        >>> dist = FlowActionDistribution(*net(torch.randn(5, 32)), policy=net)
        >>> dist.rsample((3,)).shape
        torch.Size([3, 5, 4])
        >>> torch.equal(dist.mean, dist.deterministic_sample)
        True
        >>> action, log_prob = dist.rsample_and_log_prob()
        >>> log_prob.shape, torch.equal(dist.log_prob(action), log_prob)
        (torch.Size([5]), True)
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = True
    support = D.constraints.interval(-1.0, 1.0)

    def __init__(
        self,
        cond: torch.Tensor,
        scale: torch.Tensor,
        *,
        policy: FlowPolicyNet,
        eager_log_prob: bool = False,
    ) -> None:
        self.cond = cond
        self.scale = scale
        self.policy = policy
        self.eager_log_prob = eager_log_prob
        # (action, noise, log_prob or None) of the last sample, for log_prob(action).
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        super().__init__(scale.shape[:-1], scale.shape[-1:], validate_args=False)

    def _transport(self, noise: torch.Tensor) -> torch.Tensor:
        if self.eager_log_prob:
            return self._transport_and_log_prob(noise)[0]
        action = self.policy.transport(self.cond, self.scale * noise)
        self._last = (action, noise, None)
        return action

    def _transport_and_log_prob(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action, log_det = self.policy.transport_with_log_det(self.cond, self.scale * noise)
        base = (_standard_normal_log_prob(noise) - self.scale.log()).sum(-1)
        log_prob = base - log_det
        self._last = (action, noise, log_prob)
        return action, log_prob

    def rsample(self, sample_shape: Sequence[int] = ()) -> torch.Tensor:
        return self._transport(self._noise(sample_shape))

    def rsample_and_log_prob(
        self, sample_shape: Sequence[int] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action ``[*sample, *batch, A]`` and its log π ``[*sample, *batch]``."""
        return self._transport_and_log_prob(self._noise(sample_shape))

    def _noise(self, sample_shape: Sequence[int]) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        return torch.randn(shape, dtype=self.scale.dtype, device=self.scale.device)

    def sample(self, sample_shape: Sequence[int] = ()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self._transport(torch.zeros_like(self.scale))

    @property
    def mode(self) -> torch.Tensor:
        return self.deterministic_sample

    @property
    def mean(self) -> torch.Tensor:
        return self.deterministic_sample

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log π(value)`` of the distribution's own last sample only (see the class docstring)."""
        if self._last is None or value is not self._last[0]:
            raise NotImplementedError(
                "FlowActionDistribution.log_prob is the log-density of its own last sample only "
                "(the tensor rsample, sample, rsample_and_log_prob or deterministic_sample "
                "returned last): the density of any other action needs the inverse of the "
                "discrete ODE solve, which is not implemented. Use rsample_and_log_prob()."
            )
        _, noise, log_prob = self._last
        if log_prob is None:
            log_prob = self._transport_and_log_prob(noise)[1]
            self._last = (value, noise, log_prob)
        return log_prob


class FlowActor(ProbabilisticActor):
    """FlowActor: actions from an ODE policy, ``a = tanh(Φ_ψ(σ ⊙ ε; sg(z)))``.

    The :class:`~torchrl_flowmbpo.modules.models.FlowPolicyNet` writes ``"cond"`` (the detached
    latent) and ``"scale"`` (σ); :class:`FlowActionDistribution` integrates its velocity field.
    The net is both the ``TensorDictModule``'s module (so its parameters are in ``parameters()``,
    ``state_dict()`` and follow ``.to()``) and the distribution's ``policy`` kwarg; ``deepcopy``
    remaps the kwarg to the copied net.

    Args:
        latent_dim: latent width ``L``.
        action_dim: action width ``A``.

    Keyword Args:
        hidden: hidden widths of the velocity net.
        integrator: one of :data:`~torchrl_flowmbpo.flows.INTEGRATORS`.
        flow_steps: number of integration steps ``K``.
        time_embed_freqs: sinusoidal flow-time frequencies fed to the velocity net.
        log_det: how the density's log-determinant is computed, one of
            :data:`~torchrl_flowmbpo.flows.LOG_DET_METHODS` (``"exact"``: the solve's full
            Jacobian; ``"trace"``/``"hutchinson"``: the instantaneous change of variables).
        velocity_init: ``"zero"`` (default: a zeroed last velocity layer, the untrained action
            is ``tanh(σ ε)``, see :class:`FlowPolicyNet`) or ``"default"`` (PyTorch's init).
        return_log_prob: also write ``"action_log_prob"`` (the sampled action's ``log π``,
            differentiable) at every call, at the cost of the log-determinant.
        init_log_std: initial ``log σ`` of the source noise.
        min_log_std: floor of ``log σ``, clamped in place before each use.
        detach_latent: stop the gradient into the latent (PWM's ``True``); off by default, as
            ``configs/actor/*.yaml`` (closed loop).
        input_norm: a module applied to the input first, e.g. an
            :class:`~torchrl_flowmbpo.modules.models.InputNormalizer` shared with the critic.
        latent_key: input key.
        action_key: output key.
        spec: optional action spec (bounds must be ``[-1, 1]``).
        default_interaction_type: used when no exploration type is set (see the module docstring).

    Examples:
        >>> from tensordict import TensorDict
        >>> actor = FlowActor(32, 4, hidden=(64, 64))
        >>> td = actor(TensorDict({"latent": torch.randn(5, 32)}, batch_size=[5]))
        >>> td["action"].shape, bool(td["action"].abs().max() <= 1)
        (torch.Size([5, 4]), True)
        >>> with_density = FlowActor(32, 4, hidden=(64, 64), return_log_prob=True)
        >>> with_density(td)["action_log_prob"].shape
        torch.Size([5])
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        *,
        hidden: Sequence[int] = (400, 200, 100),
        integrator: str = "heun",
        flow_steps: int = 2,
        time_embed_freqs: int = 0,
        log_det: str = "exact",
        velocity_init: str = "zero",
        return_log_prob: bool = False,
        init_log_std: float = -1.0,
        min_log_std: float = -1.427,
        detach_latent: bool = False,
        input_norm: nn.Module | None = None,
        latent_key: NestedKey = "latent",
        action_key: NestedKey = "action",
        spec: TensorSpec | None = None,
        default_interaction_type: InteractionType = InteractionType.RANDOM,
    ) -> None:
        net = FlowPolicyNet(
            latent_dim,
            action_dim,
            hidden=hidden,
            integrator=integrator,
            flow_steps=flow_steps,
            init_log_std=init_log_std,
            min_log_std=min_log_std,
            time_embed_freqs=time_embed_freqs,
            detach_latent=detach_latent,
            log_det=log_det,
            velocity_init=velocity_init,
            input_norm=input_norm,
        )
        super().__init__(
            TensorDictModule(net, in_keys=[latent_key], out_keys=["cond", "scale"]),
            in_keys=["cond", "scale"],
            out_keys=[action_key],
            spec=spec,
            distribution_class=FlowActionDistribution,
            # A plain dict does not register the net: it is registered as the module above.
            distribution_kwargs={"policy": net, "eager_log_prob": return_log_prob},
            default_interaction_type=default_interaction_type,
            return_log_prob=return_log_prob,
        )

    @property
    def policy_net(self) -> FlowPolicyNet:
        """The wrapped :class:`FlowPolicyNet` (``policy_net.std`` is the source-noise σ)."""
        return self.module[0].module


@torch.no_grad()
def empirical_action_std(
    actor: GaussianActor | FlowActor, tensordict: TensorDictBase, num_samples: int = 16
) -> torch.Tensor:
    """Std of sampled actions per state, averaged over states and action dims (for logging).

    For the FlowActor σ only bounds the source noise, which the ODE can contract, so this is the
    quantity to watch for collapse.

    Args:
        actor: a :class:`GaussianActor` or :class:`FlowActor`.
        tensordict: holds the actor's latent; it is not modified.
        num_samples: actions drawn per state (>= 2).

    Returns:
        A scalar tensor.

    Examples:
        >>> from tensordict import TensorDict
        >>> actor = GaussianActor(32, 4, hidden=(64, 64))
        >>> td = TensorDict({"latent": torch.randn(5, 32)}, batch_size=[5])
        >>> bool(0 < empirical_action_std(actor, td) < 1)
        True
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2 to estimate a std, got {num_samples}.")
    dist = actor.get_dist(tensordict.copy())
    return dist.sample((num_samples,)).std(dim=0).mean()
