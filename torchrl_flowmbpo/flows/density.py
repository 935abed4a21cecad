"""The log-determinant of an integrated flow: the density of a sample that :func:`integrate` moved.

Time convention: flow time ``tau`` runs from 0 (source, ``x0``) to 1 (target, ``x1``), as in
:func:`~torchrl_flowmbpo.flows.integrate`. If ``x0`` has density ``p0``, the integrated sample
``x1 = Φ(x0)`` has ``log p1(x1) = log p0(x0) − log|det ∂x1/∂x0|``. Three ways to get the
log-determinant (:data:`LOG_DET_METHODS`):

- ``"exact"``: the full Jacobian ``∂x1/∂x0`` of the discrete solve (the very integrator steps that
  produce ``x1``) and its ``slogdet``. By the chain rule this is the sum of each step's
  ``log|det ∂x_{k+1}/∂x_k|`` (for an Euler step ``log|det(I + h J)|``), so ``p1`` is the exact
  density of the returned ``x1`` for every integrator and step count (as long as the discrete map
  is invertible, which a small enough step guarantees).
- ``"trace"``: the instantaneous change of variables of continuous normalising flows,
  ``d/dtau log|det| = tr ∂v/∂x``, integrated by the same integrator (same stages and weights) as
  an extra state channel, with the exact trace. It is the log-determinant of the continuous flow
  up to the integrator's error, so it matches ``"exact"`` as the step shrinks (to first order in
  the step for every method), not at a finite step.
- ``"hutchinson"``: ``"trace"`` with ``tr J`` estimated by ``rᵀ J r`` with one Rademacher probe
  ``r`` per sample, fixed over the solve (as FFJORD): unbiased for ``"trace"``, one
  vector-Jacobian product per velocity evaluation instead of ``D`` rows, for large ``D``.

Jacobians come from one backward pass over a batch replicated ``D`` times (row ``i`` of the
Jacobian is the gradient of output ``i`` of replica ``i``), so the velocity field must treat its
leading dims as independent samples (no batch statistics) and may close over tensors that
broadcast against them (a conditioning latent ``[..., L]``). Everything stays differentiable
(``create_graph`` when gradients are enabled), e.g. for an entropy bonus.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchrl_flowmbpo.flows.integrators import VelocityField, integrate

__all__ = ["LOG_DET_METHODS", "divergence", "integrate_with_log_det"]

LOG_DET_METHODS: tuple[str, ...] = ("exact", "trace", "hutchinson")


def _replicate(x: Tensor) -> Tensor:
    """``x`` ``[..., D]`` repeated ``D`` times along a new leading dim, as a graph node of its own
    (so gradients w.r.t. it are partial derivatives at ``x``)."""
    reps = x.unsqueeze(0).repeat(x.shape[-1], *([1] * x.dim()))
    return reps if reps.requires_grad else reps.requires_grad_()


def _jacobian_rows(outputs: Tensor, inputs: Tensor, create_graph: bool) -> Tensor:
    """``J[..., i, k] = ∂outputs[i, ..., i] / ∂inputs[i, ..., k]`` from one backward pass."""
    dim = outputs.shape[-1]
    eye = torch.eye(dim, dtype=outputs.dtype, device=outputs.device)
    selector = eye.reshape(dim, *([1] * (outputs.dim() - 2)), dim).expand_as(outputs)
    (rows,) = torch.autograd.grad(outputs, inputs, selector, create_graph=create_graph)
    return rows.movedim(0, -2)


def divergence(
    velocity: VelocityField, x: Tensor, tau: Tensor, *, probe: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``(v(x, tau), tr ∂v/∂x)``: exact trace, or Hutchinson's ``rᵀ (∂v/∂x) r`` given a probe.

    Args:
        velocity: ``velocity(x, tau) -> dx/dtau`` (see :func:`integrate`).
        x: the state ``[..., D]``.
        tau: flow time ``[..., 1]``.

    Keyword Args:
        probe: a Hutchinson probe shaped like ``x`` (e.g. Rademacher); ``None``: exact trace.

    Returns:
        ``v`` ``[..., D]`` and the (estimated) divergence ``[...]``, differentiable when
        gradients are enabled.

    Examples:
        >>> x = torch.tensor([[1.0, 2.0]])
        >>> with torch.no_grad():  # no graph kept; the values are the same with gradients on
        ...     v, div = divergence(lambda x, tau: x * x, x, torch.zeros(1, 1))
        >>> v, div  # div = 2 x_1 + 2 x_2
        (tensor([[1., 4.]]), tensor([6.]))
    """
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        if probe is None:
            reps = _replicate(x)
            v_reps = velocity(reps, tau.unsqueeze(0).expand(x.shape[-1], *tau.shape))
            jac = _jacobian_rows(v_reps, reps, create_graph)
            v, div = v_reps[0], jac.diagonal(dim1=-2, dim2=-1).sum(-1)
        else:
            node = x.clone() if x.requires_grad else x.detach().requires_grad_()
            v = velocity(node, tau)
            (vjp,) = torch.autograd.grad(v, node, probe, create_graph=create_graph)
            div = (vjp * probe).sum(-1)
    if not create_graph:
        v, div = v.detach(), div.detach()
    return v, div


def _check_log_det(log_det: str) -> None:
    if log_det not in LOG_DET_METHODS:
        raise ValueError(f"Unknown log_det {log_det!r}; expected one of {LOG_DET_METHODS}.")


def integrate_with_log_det(
    velocity: VelocityField,
    x0: Tensor,
    *,
    num_steps: int,
    method: str = "heun",
    log_det: str = "exact",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`integrate` from ``tau = 0`` to ``tau = 1``, and ``log|det ∂x1/∂x0|`` of the solve.

    ``x1`` is computed exactly as :func:`integrate` computes it (same steps, same values up to
    float rounding), so ``log p0(x0) − log_det`` is the log-density of the returned ``x1``.

    Args:
        velocity: ``velocity(x, tau) -> dx/dtau``; leading dims are independent samples.
        x0: the source state ``[..., D]``.

    Keyword Args:
        num_steps: number of steps ``K`` (an int >= 1).
        method: one of :data:`~torchrl_flowmbpo.flows.INTEGRATORS`.
        log_det: one of :data:`LOG_DET_METHODS` (see the module docstring).
        generator: random source of the Hutchinson probes (``"hutchinson"`` only).

    Returns:
        ``(x1 [..., D], log_det [...])``.

    Raises:
        ValueError: on an unknown ``log_det`` (and as :func:`integrate` on a bad method or
            step count).

    Examples:
        >>> x0 = torch.ones(2, 3)
        >>> with torch.no_grad():
        ...     x1, log_det = integrate_with_log_det(
        ...         lambda x, tau: -x, x0, num_steps=4, method="euler"
        ...     )
        >>> x1[0], log_det  # each Euler step scales by 1 - 1/4: log_det = 3 · 4 · log(0.75)
        (tensor([0.3164, 0.3164, 0.3164]), tensor([-3.4522, -3.4522]))
    """
    _check_log_det(log_det)
    create_graph = torch.is_grad_enabled()
    if log_det == "exact":
        with torch.enable_grad():
            reps = _replicate(x0)
            x1_reps = integrate(velocity, reps, num_steps=num_steps, method=method)
            jac = _jacobian_rows(x1_reps, reps, create_graph)
        x1, value = x1_reps[0], torch.linalg.slogdet(jac).logabsdet
    else:
        probe = None
        if log_det == "hutchinson":
            bits = torch.randint(0, 2, x0.shape, generator=generator, device=x0.device)
            probe = 2.0 * bits.to(x0.dtype) - 1.0

        def augmented(state: Tensor, tau: Tensor) -> Tensor:
            v, div = divergence(velocity, state[..., :-1], tau, probe=probe)
            return torch.cat([v, div.unsqueeze(-1)], dim=-1)

        state0 = torch.cat([x0, x0.new_zeros(*x0.shape[:-1], 1)], dim=-1)
        state1 = integrate(augmented, state0, num_steps=num_steps, method=method)
        x1, value = state1[..., :-1], state1[..., -1]
    if not create_graph:
        x1, value = x1.detach(), value.detach()
    return x1, value
