"""Flow world model: the next latent integrates a learned velocity field over one unit of flow time.

Time convention (everywhere in this package): tau = 0 is the **source**, the current latent z_t;
tau = 1 is the **target**, the next latent z_{t+1}. Training is rectified flow / conditional flow
matching on the straight path ``z_tau = (1 − tau) z_s + tau z_1`` with target velocity
``z_1 − z_s``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from torchrl_flowmbpo.flows import (
    INTEGRATORS,
    TAU_SAMPLING_MODES,
    flow_matching_error,
    integrate,
    linear_path,
    sample_tau,
)
from torchrl_flowmbpo.modules.models.layers import mlp, simnorm_project, trunc_normal_init_
from torchrl_flowmbpo.modules.models.world_model import LatentWorldModel

__all__ = ["FlowWorldModel", "time_features"]


def time_features(tau: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """Flow-time features ``[tau, sin(2^k π tau), cos(2^k π tau) for k < num_freqs]``.

    Args:
        tau: flow times ``[..., 1]``.
        num_freqs: number of sinusoidal frequencies (0 gives the raw tau only).

    Examples:
        >>> time_features(torch.tensor([[0.5]]), 1)
        tensor([[ 5.0000e-01,  1.0000e+00, -4.3711e-08]])
    """
    if num_freqs == 0:
        return tau
    freqs = math.pi * 2.0 ** torch.arange(num_freqs, dtype=tau.dtype, device=tau.device)
    angles = tau * freqs
    return torch.cat([tau, angles.sin(), angles.cos()], dim=-1)


class FlowWorldModel(LatentWorldModel):
    """Latent world model whose transition is an ODE solve of a velocity field ``v(z_tau, a, tau)``.

    ``z_{t+1} = P(ODEint(v, z_t, a_t))`` with ``flow_steps`` fixed steps of ``integrator``, where
    ``P`` is the SimNorm clamp-and-renormalise projection (``project_simnorm``). Reward and
    termination heads read the current latent ``z_t``, as in the MLP model.

    The velocity net ends in a **plain linear layer**: velocities are signed and unconstrained
    (a SimNorm/softmax head makes every coordinate grow, so latents drift off the manifold).

    Args:
        obs_dim: observation width.
        action_dim: action width.

    Keyword Args:
        integrator: one of ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"``.
        flow_steps: K, the integration steps per env step.
        tau_sampling: ``"uniform"`` (tau ~ U[0, 1]) or ``"midpoint"`` (tau = 0.5) for training.
        project_simnorm: project the integrated latent back onto the SimNorm manifold.
        center_velocity: subtract each SimNorm group's mean velocity, so group sums are preserved.
        time_embed_freqs: sinusoidal flow-time frequencies fed to the velocity net.
        grad_checkpoint: when a graph is being recorded, keep only each env step's input latent
            and action and recompute the K-substep solve in backward (activation
            checkpointing): same values and gradients, much less memory for a rollout
            backpropagated through (``flow_source: rollout``, the actor loss), about one extra
            solve of compute. Nothing changes under ``torch.no_grad()``.
        **kwargs: the :class:`LatentWorldModel` arguments (sizes, heads).

    Examples:
        >>> wm = FlowWorldModel(obs_dim=37, action_dim=8, latent_dim=64, units=(64, 64))
        >>> z, a = wm.encode(torch.randn(5, 37)), torch.zeros(5, 8)
        >>> z_next = wm.next(z, a)
        >>> torch.allclose(z_next.view(5, 8, 8).sum(-1), torch.ones(5, 8))
        True
        >>> wm.dynamics_error(z, a, z_next).shape
        torch.Size([5])
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        *,
        integrator: str = "heun",
        flow_steps: int = 2,
        tau_sampling: str = "uniform",
        project_simnorm: bool = True,
        center_velocity: bool = False,
        time_embed_freqs: int = 0,
        grad_checkpoint: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(obs_dim, action_dim, **kwargs)
        if integrator not in INTEGRATORS:
            raise ValueError(f"Unknown integrator {integrator!r}; allowed: {INTEGRATORS}.")
        if isinstance(flow_steps, bool) or not isinstance(flow_steps, int) or flow_steps < 1:
            raise ValueError(f"flow_steps must be an integer >= 1, got {flow_steps!r}.")
        if tau_sampling not in TAU_SAMPLING_MODES:
            raise ValueError(
                f"Unknown tau_sampling {tau_sampling!r}; allowed: {TAU_SAMPLING_MODES}."
            )
        if time_embed_freqs < 0:
            raise ValueError(f"time_embed_freqs must be >= 0, got {time_embed_freqs}.")
        if not isinstance(grad_checkpoint, bool):
            raise ValueError(f"grad_checkpoint must be a bool, got {grad_checkpoint!r}.")
        self.integrator, self.flow_steps, self.tau_sampling = integrator, flow_steps, tau_sampling
        self.project_simnorm, self.center_velocity = project_simnorm, center_velocity
        self.time_embed_freqs, self.grad_checkpoint = time_embed_freqs, grad_checkpoint
        time_dim = 1 + 2 * time_embed_freqs
        units = kwargs.get("units", (512, 512))
        self.velocity_net: nn.Sequential = mlp(
            self.latent_dim + action_dim + time_dim, units, self.latent_dim
        )
        trunc_normal_init_(self.velocity_net)

    def velocity(
        self,
        latent: torch.Tensor,
        action: torch.Tensor,
        tau: torch.Tensor,
        *,
        params: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Velocity ``dz/dtau`` at ``(z_tau, a, tau)``; ``tau`` has shape ``[..., 1]``.

        ``params`` (velocity-net parameters by name) replace the net's own, as a functional call.
        """
        features = torch.cat([latent, action, time_features(tau, self.time_embed_freqs)], -1)
        if params is None:
            v = self.velocity_net(features)
        else:
            v = functional_call(self.velocity_net, params, (features,), strict=True)
        if self.center_velocity:
            groups = v.reshape(*v.shape[:-1], -1, self.simnorm_group)
            v = (groups - groups.mean(-1, keepdim=True)).reshape(v.shape)
        return v

    def next(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if not (self.grad_checkpoint and torch.is_grad_enabled()):
            return self._solve(latent, action)
        # The parameters are captured now and replayed by the recompute in backward: in between,
        # hold_out_net flips requires_grad and functional calls swap parameters back, and a
        # recompute that saw other parameters would save other tensors than this forward did.
        params = {
            name: p if p.requires_grad else p.detach()
            for name, p in self.velocity_net.named_parameters()
        }
        if not (
            latent.requires_grad
            or action.requires_grad
            or any(p.requires_grad for p in params.values())
        ):
            return self._solve(latent, action)
        # One checkpoint per env step (the whole K-substep solve and projection): it keeps only
        # (z_t, a_t), which the heads keep anyway, instead of 2K velocity-net activations (Heun).
        # Backward recomputes each solve once, as per-substep checkpoints would, but those would
        # still store K intermediate latents per step; the rollout loop itself is in the losses.
        return checkpoint(self._solve, latent, action, params, use_reentrant=False)

    def _solve(
        self,
        latent: torch.Tensor,
        action: torch.Tensor,
        params: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        kwargs = {}
        if params is not None:
            # A functional call (about 0.1 ms per velocity evaluation) only where the net does not
            # hold the captured parameters (hold_out_net, functional calls). torch.func's, as it
            # restores the net even when the checkpoint's early stop raises mid-recompute.
            current = dict(self.velocity_net.named_parameters())
            if any(current.get(name) is not p for name, p in params.items()):
                kwargs["params"] = params
        z1 = integrate(
            lambda z, tau: self.velocity(z, action, tau, **kwargs),
            latent,
            num_steps=self.flow_steps,
            method=self.integrator,
        )
        return simnorm_project(z1, self.simnorm_group) if self.project_simnorm else z1

    def dynamics_error(
        self,
        latent: torch.Tensor,
        action: torch.Tensor,
        target: torch.Tensor,
        *,
        next_latent: torch.Tensor | None = None,
        tau: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Conditional flow-matching error ``mean_d (v(z_tau, a, tau) − (target − latent))²``.

        Args:
            latent: flow source z_s (tau = 0).
            action: action of the transition.
            target: flow target z_1 (tau = 1), usually a stop-gradient encoder latent.
            next_latent: unused (the flow loss needs no ODE solve); accepted for API parity.
            tau: flow times ``[..., 1]``; sampled per ``tau_sampling`` when omitted.
        """
        if tau is None:
            tau = sample_tau(
                latent.shape[:-1], mode=self.tau_sampling, device=latent.device, dtype=latent.dtype
            )
        v_pred = self.velocity(linear_path(latent, target, tau), action, tau)
        return flow_matching_error(v_pred, latent, target)
