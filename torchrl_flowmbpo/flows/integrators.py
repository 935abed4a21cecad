"""Fixed-step explicit ODE integrators for flow time ``tau`` running from 0 to 1.

Time convention: ``tau = 0`` is the **source** (the current latent, or noise), ``tau = 1`` the
**target**. With ``K = num_steps`` steps the step is ``dt = 1 / K`` and step ``k`` starts at
``tau_k = k * dt``.

Everything is plain autograd (no adjoint, no detach, no in-place updates of graph tensors), so a
world-model rollout or an actor loss can backpropagate through the solve into ``x0`` and the
velocity network's parameters.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

__all__ = ["INTEGRATORS", "VelocityField", "integrate", "velocity_evaluations"]

#: ``velocity(x, tau) -> dx/dtau``, ``x`` of shape ``[..., D]`` and ``tau`` of shape ``[..., 1]``.
VelocityField = Callable[[Tensor, Tensor], Tensor]

INTEGRATORS: tuple[str, ...] = ("euler", "midpoint", "heun", "rk4")

_EVALS_PER_STEP: dict[str, int] = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def _tau_like(x: Tensor, tau: float) -> Tensor:
    # One time value per sample, shaped [..., 1] so velocity nets can concatenate it as a feature.
    return x.new_full((*x.shape[:-1], 1), tau)


def _euler_step(velocity: VelocityField, x: Tensor, tau: float, dt: float) -> Tensor:
    return x + dt * velocity(x, _tau_like(x, tau))


def _midpoint_step(velocity: VelocityField, x: Tensor, tau: float, dt: float) -> Tensor:
    k1 = velocity(x, _tau_like(x, tau))
    k2 = velocity(x + (dt / 2) * k1, _tau_like(x, tau + dt / 2))
    return x + dt * k2


def _heun_step(velocity: VelocityField, x: Tensor, tau: float, dt: float) -> Tensor:
    k1 = velocity(x, _tau_like(x, tau))
    k2 = velocity(x + dt * k1, _tau_like(x, tau + dt))
    return x + (dt / 2) * (k1 + k2)


def _rk4_step(velocity: VelocityField, x: Tensor, tau: float, dt: float) -> Tensor:
    k1 = velocity(x, _tau_like(x, tau))
    k2 = velocity(x + (dt / 2) * k1, _tau_like(x, tau + dt / 2))
    k3 = velocity(x + (dt / 2) * k2, _tau_like(x, tau + dt / 2))
    k4 = velocity(x + dt * k3, _tau_like(x, tau + dt))
    return x + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


_STEPS: dict[str, Callable[[VelocityField, Tensor, float, float], Tensor]] = {
    "euler": _euler_step,
    "midpoint": _midpoint_step,
    "heun": _heun_step,
    "rk4": _rk4_step,
}


def _check_args(method: str, num_steps: int) -> None:
    if method not in INTEGRATORS:
        raise ValueError(f"Unknown integrator {method!r}; expected one of {INTEGRATORS}.")
    # bool is an int subclass, but True/False as a step count is always a bug.
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}.")


def velocity_evaluations(method: str, num_steps: int) -> int:
    """Number of ``velocity`` calls :func:`integrate` makes.

    Args:
        method: one of :data:`INTEGRATORS`.
        num_steps: number of steps ``K`` (an int >= 1).

    Returns:
        ``K`` for Euler, ``2K`` for midpoint and Heun, ``4K`` for RK4.

    Raises:
        ValueError: on an unknown ``method`` or an invalid ``num_steps``.

    Examples:
        >>> [velocity_evaluations(m, 4) for m in INTEGRATORS]
        [4, 8, 8, 16]
    """
    _check_args(method, num_steps)
    return _EVALS_PER_STEP[method] * num_steps


def integrate(
    velocity: VelocityField,
    x0: Tensor,
    *,
    num_steps: int,
    method: str = "heun",
) -> Tensor:
    """Integrate ``dx/dtau = velocity(x, tau)`` from ``tau = 0`` (source) to ``tau = 1`` (target).

    Uses ``num_steps`` fixed steps of size ``dt = 1 / num_steps``, step ``k`` starting at
    ``tau_k = k * dt``. With ``z`` the current state, one step is:

    - ``euler``: ``z + dt * v(z, tau_k)`` (order 1);
    - ``midpoint``: ``k1 = v(z, tau_k)``, ``k2 = v(z + dt/2 * k1, tau_k + dt/2)``,
      ``z + dt * k2`` (order 2);
    - ``heun``: ``k1 = v(z, tau_k)``, ``k2 = v(z + dt * k1, tau_k + dt)``,
      ``z + dt/2 * (k1 + k2)`` (order 2);
    - ``rk4``: the classic four-stage Runge-Kutta method (order 4).

    The result is differentiable w.r.t. ``x0`` and any parameters ``velocity`` closes over.

    Args:
        velocity: callable ``velocity(x, tau) -> dx/dtau``. It receives ``x`` of shape
            ``[..., D]`` and ``tau`` as a tensor of shape ``[..., 1]`` with ``x``'s dtype and
            device, and must return a tensor shaped like ``x``. Condition it on anything else
            (e.g. an action) by closing over it.
        x0: state at ``tau = 0``, shape ``[..., D]``.

    Keyword Args:
        num_steps: number of steps ``K`` (an int >= 1).
        method: one of :data:`INTEGRATORS`; ``"heun"`` by default.

    Returns:
        The state at ``tau = 1``, shaped like ``x0``.

    Raises:
        ValueError: on an unknown ``method`` or an invalid ``num_steps``.

    Examples:
        >>> import torch
        >>> x0 = torch.ones(2, 3)
        >>> integrate(lambda x, tau: -x, x0, num_steps=8, method="rk4")[0]  # exact: exp(-1)
        tensor([0.3679, 0.3679, 0.3679])
        >>> integrate(lambda x, tau: 2 * tau.expand_as(x), x0, num_steps=1)[0]  # x0 + 1, exact
        tensor([2., 2., 2.])
    """
    _check_args(method, num_steps)
    if x0.dim() < 1:
        raise ValueError("x0 must have at least one dimension (the state dimension D).")
    step = _STEPS[method]
    dt = 1.0 / num_steps
    x = x0
    for k in range(num_steps):
        x = step(velocity, x, k * dt, dt)
    return x
