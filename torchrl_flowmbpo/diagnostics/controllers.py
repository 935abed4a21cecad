"""Scripted reference controllers of the tasks: what "good" looks like, without learning.

Learning curves and world-model probes need behaviours of known quality: a model that rates a
walking gait below standing still cannot guide an actor toward walking. Each controller maps
an observation batch ``[N, obs]`` to actions ``[N, act]`` in [-1, 1]; the time-driven ones keep
a step counter, so build a fresh one (``REFERENCE_CONTROLLERS[task][name]()``) per episode batch.

Measured (``studies/task_references.py``, 64 worlds, full episodes): the cartpole ``pd``
balancer about −1.2 per 240-step episode from upright; the Ant ``trot`` in docs/tasks.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Controller = Callable[[torch.Tensor], torch.Tensor]


def cartpole_pd(obs: torch.Tensor) -> torch.Tensor:
    """PD balancer of the upright pole (obs ``[x, sin θ, cos θ, ẋ, θ̇]``; −1.2 per episode).

    Examples:
        >>> import torch
        >>> cartpole_pd(torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]]))  # upright at rest: no force
        tensor([[0.]])
    """
    theta = torch.atan2(obs[..., 1], obs[..., 2])
    force = -4.0 * theta - obs[..., 4] + 0.3 * obs[..., 0] + 0.5 * obs[..., 3]
    return force.clamp(-1.0, 1.0).unsqueeze(-1)


class AntTrot:
    """Open-loop trot of the Ant: sinusoidal joint targets tracked by a PD law.

    Diagonal legs (front-left with back-right, front-right with back-left) swing together; each
    hip swings ``hip_amplitude`` rad about 0 and each ankle ``ankle_amplitude`` rad about its
    rest angle (±1 rad), a quarter period ahead of its hip, at ``frequency`` Hz of the 1/60 s
    control step. Torques ``a = clip(kp (q* − q) − kd q̇, −1, 1)``. Found by a small grid
    search on forward velocity, not tuned further. Open loop, it is crude and chaotic: over
    its first 4 s (steps 60-240, seeds 3-5) the mean forward velocity over 16-64 worlds is
    0.7-1.4 m/s, single worlds range from -1.9 to +4.8 m/s and 20-37 % of them fall over. It
    shows that 1.5 m/s and more are within this robot's reach, and it gives world-model probes
    a behaviour that moves (``examples/model_probe.py``).

    Examples:
        >>> import torch
        >>> trot = AntTrot()
        >>> trot(torch.zeros(2, 37)).shape
        torch.Size([2, 8])
    """

    #: Joint order (hip, ankle) × legs front-left, front-right, back-left, back-right.
    REST = (0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0)
    HIP_SIGNS = (1.0, 1.0, -1.0, -1.0)
    LEG_PHASES = (0.0, math.pi, math.pi, 0.0)

    def __init__(
        self,
        hip_amplitude: float = 0.6,
        ankle_amplitude: float = 1.0,
        frequency: float = 3.0,
        kp: float = 3.0,
        kd: float = 0.05,
        control_dt: float = 1 / 60,
    ) -> None:
        self.hip_amplitude, self.ankle_amplitude = hip_amplitude, ankle_amplitude
        self.frequency, self.kp, self.kd, self.control_dt = frequency, kp, kd, control_dt
        self.step = 0

    def targets(self, step: int) -> torch.Tensor:
        """Joint targets q* ``[8]`` at control step ``step``."""
        phase = 2 * math.pi * self.frequency * step * self.control_dt
        target = list(self.REST)
        for leg, (sign, offset) in enumerate(zip(self.HIP_SIGNS, self.LEG_PHASES, strict=True)):
            ankle_side = math.copysign(1.0, self.REST[2 * leg + 1])
            target[2 * leg] += self.hip_amplitude * sign * math.sin(phase + offset)
            target[2 * leg + 1] += (
                self.ankle_amplitude * ankle_side * math.sin(phase + offset + math.pi / 2)
            )
        return torch.tensor(target)

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        # Ant observation: joint angles [11:19], 0.1 × joint velocities [19:27] (docs/tasks.md).
        q, qd = obs[..., 11:19], 10.0 * obs[..., 19:27]
        target = self.targets(self.step).to(obs)
        self.step += 1
        return (self.kp * (target - q) - self.kd * qd).clamp(-1.0, 1.0)


#: Task -> name -> factory of a fresh controller.
REFERENCE_CONTROLLERS: dict[str, dict[str, Callable[[], Controller]]] = {
    "cartpole": {"pd": lambda: cartpole_pd},
    "ant": {"trot": AntTrot},
}
