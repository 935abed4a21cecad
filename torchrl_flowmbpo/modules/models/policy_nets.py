"""Plain ``nn.Module`` maths of the actors and the critic (no TensorDict keys).

- :class:`GaussianPolicyNet`: PWM's actor, ``z ↦ (μ(z), σ)`` with a state-independent σ.
- :class:`FlowPolicyNet`: the FlowActor, ``a = tanh(Φ_ψ(σ ⊙ ε; z))`` where ``Φ_ψ`` integrates a
  velocity field ``u_ψ(z, a_tau, tau)`` over flow time ``tau`` from 0 (source: the noise
  ``σ ⊙ ε``) to 1 (target: the pre-tanh action).
- :class:`CriticEnsembleNet`: ``M`` vectorised state-value members ``V_k(z)`` and their minimum.

Both policies floor their learnable ``log σ`` by clamping the **parameter in place** (under
``no_grad``) before each use. A clamp inside the graph would let the parameter sit below the floor
with a zero gradient, so it could never come back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from torchrl_flowmbpo.flows import INTEGRATORS, LOG_DET_METHODS, integrate, integrate_with_log_det
from torchrl_flowmbpo.modules.models.ensemble import Ensemble
from torchrl_flowmbpo.modules.models.flow_world_model import time_features
from torchrl_flowmbpo.modules.models.layers import act_norm_mlp

__all__ = [
    "VELOCITY_INITS",
    "CriticEnsembleNet",
    "FlowPolicyNet",
    "GaussianPolicyNet",
    "tanh_log_abs_det",
]

#: Initialisations of the FlowActor's velocity net: PyTorch's default, or a zeroed last layer.
VELOCITY_INITS: tuple[str, ...] = ("default", "zero")


def tanh_log_abs_det(pre_tanh: torch.Tensor) -> torch.Tensor:
    """``log(1 − tanh²(u))`` elementwise, as ``2 (log 2 − u − softplus(−2u))``.

    Stable for large ``|u|``, where ``1 − tanh²(u)`` rounds to 0 in float32; its gradient there
    stays about ``−2 sign(u)``.

    Examples:
        >>> tanh_log_abs_det(torch.tensor([0.0, 20.0]))
        tensor([  0.0000, -38.6137])
    """
    return 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))


class _FlooredLogStdPolicy(nn.Module):
    """Owns the state-independent ``log_std`` vector, its in-place floor, the latent detach and
    the optional input normaliser."""

    def __init__(
        self,
        action_dim: int,
        init_log_std: float,
        min_log_std: float,
        detach_latent: bool,
        input_norm: nn.Module | None,
    ) -> None:
        super().__init__()
        if init_log_std < min_log_std:
            raise ValueError(
                f"init_log_std={init_log_std} is below the floor min_log_std={min_log_std}."
            )
        self.action_dim = action_dim
        self.min_log_std = float(min_log_std)
        self.detach_latent = detach_latent
        self.input_norm = input_norm
        self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))

    def _condition(self, latent: torch.Tensor) -> torch.Tensor:
        latent = latent.detach() if self.detach_latent else latent
        return latent if self.input_norm is None else self.input_norm(latent)

    def _sigma(self) -> torch.Tensor:
        # In place and outside the graph (see the module docstring). ``exp`` saves its output, not
        # ``log_std``, so graphs built before this version bump (earlier rollout steps) stay valid.
        with torch.no_grad():
            self.log_std.clamp_(min=self.min_log_std)
        return self.log_std.exp()

    @property
    def std(self) -> torch.Tensor:
        """The σ in use (floor applied), detached: a read-only value for logging."""
        return self.log_std.detach().clamp(min=self.min_log_std).exp()


class GaussianPolicyNet(_FlooredLogStdPolicy):
    """PWM's Gaussian actor network: ``z ↦ (μ(z), σ)``, with ``a = tanh(μ + σ ε)`` downstream.

    ``μ`` comes from an MLP with Linear → Mish → LayerNorm hidden layers and a plain Linear last
    layer (PyTorch default init); ``σ = exp(log_std)`` is a learnable state-independent vector.

    Args:
        latent_dim: latent width ``L``.
        action_dim: action width ``A``.

    Keyword Args:
        hidden: hidden widths of the μ network.
        init_log_std: initial ``log σ`` (−1.0 gives σ ≈ 0.37).
        min_log_std: floor of ``log σ``, enforced in place before each forward (σ ≥ 0.24).
        detach_latent: stop the gradient into the latent (PWM's ``True``: ∂π/∂z is not
            backpropagated). Off by default, as ``configs/actor/*.yaml``: the imagined return's
            gradient also flows through the actor's input (closed loop).
        input_norm: a module applied to the input first, e.g. an
            :class:`~torchrl_flowmbpo.modules.models.InputNormalizer` (SHAC's observations).

    Examples:
        >>> net = GaussianPolicyNet(32, 4, hidden=(64, 64))
        >>> loc, scale = net(torch.randn(5, 32))
        >>> loc.shape, scale.shape
        (torch.Size([5, 4]), torch.Size([5, 4]))
        >>> torch.allclose(scale, torch.full((5, 4), math.exp(-1.0)))
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
    ) -> None:
        super().__init__(action_dim, init_log_std, min_log_std, detach_latent, input_norm)
        self.mu_net = act_norm_mlp(latent_dim, hidden, action_dim)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(loc, scale)``, both ``[..., A]``; ``scale`` is σ expanded to ``loc``."""
        loc = self.mu_net(self._condition(latent))
        return loc, self._sigma().expand_as(loc)


class FlowPolicyNet(_FlooredLogStdPolicy):
    """FlowActor network: an ODE maps source noise ``a_0 = σ ⊙ ε`` to the action ``tanh(a_1)``.

    The velocity net ``u_ψ([z, a_tau, φ(tau)]) → R^A`` has Linear → Mish → LayerNorm hidden layers
    and a plain Linear last layer (signed, unconstrained velocities); ``φ`` is
    :func:`~torchrl_flowmbpo.modules.models.flow_world_model.time_features`. Flow time runs from
    ``tau = 0`` (source, ``a_0``) to ``tau = 1`` (target, ``a_1``), integrated with ``flow_steps``
    fixed steps of ``integrator``. The only stochasticity is ``ε ~ N(0, I)``; σ is learnable with
    the same in-place floor as the Gaussian actor. That floor bounds the source noise only: the
    ODE can still contract it, so log the empirical action std as well.

    :meth:`transport_with_log_det` also returns ``log|det ∂a/∂a_0|`` of the very solve that gives
    the action (``log_det`` picks how, see :mod:`torchrl_flowmbpo.flows.density`), plus the tanh
    term: with it the action's log-density is ``log N(a_0; 0, σ²) − log_det``.

    Args:
        latent_dim: latent width ``L``.
        action_dim: action width ``A``.

    Keyword Args:
        hidden: hidden widths of the velocity net.
        integrator: one of :data:`~torchrl_flowmbpo.flows.INTEGRATORS`.
        flow_steps: number of integration steps ``K`` (an int >= 1).
        init_log_std: initial ``log σ`` of the source noise.
        min_log_std: floor of ``log σ``, enforced in place before each use.
        time_embed_freqs: sinusoidal flow-time frequencies in ``φ`` (0: the raw ``tau`` only).
        detach_latent: stop the gradient into the latent (done in :meth:`forward`); off by
            default, as :class:`GaussianPolicyNet`.
        input_norm: a module applied to the input first (see :class:`GaussianPolicyNet`).
        log_det: how :meth:`transport_with_log_det` gets the solve's log-determinant, one of
            :data:`~torchrl_flowmbpo.flows.LOG_DET_METHODS` (``"exact"``: the discrete solve's
            full Jacobian, so density and action agree for every integrator and step count).
        velocity_init: one of :data:`VELOCITY_INITS`. ``"zero"`` (default, as
            ``configs/actor/flow.yaml``) zeroes the velocity net's last layer, so the untrained
            velocity is 0 and the action is ``tanh(σ ε)``, as the Gaussian actor's with ``μ = 0``;
            its first gradient step then moves that layer only. ``"default"``: PyTorch's
            initialisation.

    Examples:
        >>> net = FlowPolicyNet(32, 4, hidden=(64, 64))
        >>> cond, scale = net(torch.randn(5, 32))
        >>> action = net.sample(cond, torch.randn(5, 4))
        >>> action.shape, bool(action.abs().max() <= 1)
        (torch.Size([5, 4]), True)
        >>> torch.equal(net.deterministic(cond), net.transport(cond, torch.zeros(5, 4)))
        True
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        *,
        hidden: Sequence[int] = (400, 200, 100),
        integrator: str = "heun",
        flow_steps: int = 2,
        init_log_std: float = -1.0,
        min_log_std: float = -1.427,
        time_embed_freqs: int = 0,
        detach_latent: bool = False,
        log_det: str = "exact",
        velocity_init: str = "zero",
        input_norm: nn.Module | None = None,
    ) -> None:
        if log_det not in LOG_DET_METHODS:
            raise ValueError(f"Unknown log_det {log_det!r}; expected one of {LOG_DET_METHODS}.")
        if velocity_init not in VELOCITY_INITS:
            raise ValueError(
                f"Unknown velocity_init {velocity_init!r}; expected one of {VELOCITY_INITS}."
            )
        if integrator not in INTEGRATORS:
            raise ValueError(f"Unknown integrator {integrator!r}; expected one of {INTEGRATORS}.")
        # bool is an int subclass, but True/False as a step count is always a bug.
        if isinstance(flow_steps, bool) or not isinstance(flow_steps, int) or flow_steps < 1:
            raise ValueError(f"flow_steps must be an int >= 1, got {flow_steps!r}.")
        if isinstance(time_embed_freqs, bool) or not isinstance(time_embed_freqs, int):
            raise ValueError(f"time_embed_freqs must be an int >= 0, got {time_embed_freqs!r}.")
        if time_embed_freqs < 0:
            raise ValueError(f"time_embed_freqs must be an int >= 0, got {time_embed_freqs!r}.")
        super().__init__(action_dim, init_log_std, min_log_std, detach_latent, input_norm)
        self.integrator = integrator
        self.flow_steps = flow_steps
        self.time_embed_freqs = time_embed_freqs
        self.log_det = log_det
        time_dim = 1 + 2 * time_embed_freqs
        self.velocity_net = act_norm_mlp(latent_dim + action_dim + time_dim, hidden, action_dim)
        if velocity_init == "zero":
            nn.init.zeros_(self.velocity_net[-1].weight)
            nn.init.zeros_(self.velocity_net[-1].bias)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(cond, scale)``: the (detached) conditioning latent and σ as ``[..., A]``."""
        cond = self._condition(latent)
        return cond, self._sigma().expand(*cond.shape[:-1], self.action_dim)

    def velocity(self, cond: torch.Tensor, a: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """``u_ψ([cond, a_tau, φ(tau)])``; ``cond`` ``[..., L]`` broadcasts over ``a``'s extra
        leading (sample) dims, ``tau`` is ``[..., 1]``."""
        cond = cond.expand(*a.shape[:-1], cond.shape[-1])
        features = time_features(tau, self.time_embed_freqs)
        return self.velocity_net(torch.cat([cond, a, features], dim=-1))

    def transport(self, cond: torch.Tensor, a0: torch.Tensor) -> torch.Tensor:
        """``tanh(a_1)`` with ``a_1`` the ODE solution from ``a_0`` at ``tau = 0`` to ``tau = 1``.

        Differentiable w.r.t. ``a0``, ``cond`` and ψ. ``cond`` is used as given (no detach).
        """
        a1 = integrate(
            lambda a, tau: self.velocity(cond, a, tau),
            a0,
            num_steps=self.flow_steps,
            method=self.integrator,
        )
        return torch.tanh(a1)

    def transport_with_log_det(
        self, cond: torch.Tensor, a0: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`transport` and ``log|det ∂a/∂a_0|`` of the same solve, tanh included.

        The pre-tanh ``a_1`` is integrated as :meth:`transport` does (equal up to float
        rounding); the log-determinant is ``self.log_det``'s one of that solve plus
        ``Σ_d log(1 − tanh²(a_1,d))``. Differentiable w.r.t. ``a0``, ``cond`` and ψ when
        gradients are enabled.

        Args:
            cond: conditioning latent ``[..., L]`` (broadcasts over ``a0``'s leading dims).
            a0: the source sample ``[..., A]``.

        Keyword Args:
            generator: random source of the Hutchinson probes (``log_det="hutchinson"`` only).

        Returns:
            ``(action [..., A], log_det [...])``.
        """
        a1, log_det = integrate_with_log_det(
            lambda a, tau: self.velocity(cond, a, tau),
            a0,
            num_steps=self.flow_steps,
            method=self.integrator,
            log_det=self.log_det,
            generator=generator,
        )
        return torch.tanh(a1), log_det + tanh_log_abs_det(a1).sum(-1)

    def sample(self, cond: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The stochastic action ``tanh(Φ_ψ(σ ⊙ noise; cond))`` for ``noise ~ N(0, I)``."""
        return self.transport(cond, self._sigma() * noise)

    def deterministic(self, cond: torch.Tensor) -> torch.Tensor:
        """The evaluation action, integrated from ``a_0 = 0`` (not the stochastic policy's mean)."""
        return self.transport(cond, cond.new_zeros(*cond.shape[:-1], self.action_dim))


def _orthogonal_init_(module: nn.Module, gain: float) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, gain=gain)
            nn.init.zeros_(m.bias)


class CriticEnsembleNet(nn.Module):
    """``M`` state-value members ``V_k(z)`` evaluated in one vectorised call, and their minimum.

    Each member is ``z → hidden → 1`` with Linear → Mish → LayerNorm hidden layers, initialised
    independently with orthogonal weights (gain √2) and zero biases on every Linear, as in PWM.

    Args:
        latent_dim: latent width ``L``.

    Keyword Args:
        num_members: ensemble size ``M``.
        hidden: hidden widths of each member.
        detach_latent: stop the gradient into the latent. Off by default: PWM's actor loss
            backpropagates through the horizon bootstrap ``min_k V_k(z_H)`` into ``z_H``, which
            a detaching critic silently cuts. The critic loss regresses on stored, already
            detached latents, so there the flag changes nothing.
        input_norm: a module applied to the input first, shared with (and registered in) the
            actor: the critic does not own it, so neither its state dict nor a target copy of
            its parameters holds the statistics.

    Examples:
        >>> net = CriticEnsembleNet(32, hidden=(64, 64))
        >>> members, value = net(torch.randn(5, 32))
        >>> members.shape, value.shape
        (torch.Size([5, 3, 1]), torch.Size([5, 1]))
        >>> torch.equal(value, members.min(dim=-2).values)
        True
    """

    def __init__(
        self,
        latent_dim: int,
        *,
        num_members: int = 3,
        hidden: Sequence[int] = (400, 200),
        detach_latent: bool = False,
        input_norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        members = [act_norm_mlp(latent_dim, hidden, 1) for _ in range(num_members)]
        for member in members:
            _orthogonal_init_(member, gain=math.sqrt(2.0))
        self.ensemble = Ensemble(members)
        self.num_members = num_members
        self.detach_latent = detach_latent
        # Held, not registered: the statistics are the actor's state (saved with it), and a
        # target critic, a copy of this module's parameters and buffers that TorchRL's
        # SoftUpdate averages for parameters only, would keep normalising with the statistics
        # of the day it was made.
        object.__setattr__(self, "input_norm", input_norm)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(members [..., M, 1], min over members [..., 1])``."""
        if self.detach_latent:
            latent = latent.detach()
        if self.input_norm is not None:
            latent = self.input_norm(latent)
        # Ensemble stacks members first; move them after the batch dims so the output keeps the
        # TensorDict batch dims as its leading dims.
        members = self.ensemble(latent).movedim(0, -2)
        return members, members.min(dim=-2).values
