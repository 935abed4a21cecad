"""Stateless flow-matching helpers: the linear probability path, flow-time sampling, integrators
and the log-determinant of an integrated flow (a sample's density).

Time convention, used by every function here: flow time ``tau`` runs over ``[0, 1]``;
``tau = 0`` is the **source** (the current latent, or noise) and ``tau = 1`` is the **target**
(the next latent). The interpolant is ``x_tau = (1 - tau) * x0 + tau * x1``, the regression
target is ``x1 - x0``, and :func:`integrate` starts at ``tau = 0`` and returns the state at
``tau = 1``.
"""

from __future__ import annotations

from torchrl_flowmbpo.flows.density import LOG_DET_METHODS, divergence, integrate_with_log_det
from torchrl_flowmbpo.flows.integrators import (
    INTEGRATORS,
    VelocityField,
    integrate,
    velocity_evaluations,
)
from torchrl_flowmbpo.flows.paths import (
    TAU_SAMPLING_MODES,
    flow_matching_error,
    linear_path,
    sample_tau,
    target_velocity,
)

__all__ = [
    "INTEGRATORS",
    "LOG_DET_METHODS",
    "TAU_SAMPLING_MODES",
    "VelocityField",
    "divergence",
    "flow_matching_error",
    "integrate",
    "integrate_with_log_det",
    "linear_path",
    "sample_tau",
    "target_velocity",
    "velocity_evaluations",
]
