"""Running normalisation of a network's input (SHAC's ``obs_rms``).

A network reading raw observations (SHAC's actor and critic; PWM's read latents and do not
need it) sees ``clip((x - mean) / sqrt(var + eps), ±clip)`` with the running statistics of the
observations collected so far. The statistics change only through :meth:`InputNormalizer.update`,
which the training loop calls once per iteration on the iteration's observations, so a rollout
and the updates that follow it use one fixed normalisation and the gradient through it is that
of a fixed affine map.
"""

from __future__ import annotations

import torch
from torch import nn

from torchrl_flowmbpo.transforms.running_stats import RunningMeanStd

__all__ = ["InputNormalizer"]


class InputNormalizer(nn.Module):
    """``clip((x - mean) / sqrt(var + eps), ±clip)`` with running statistics of ``x``.

    Share one instance between the actor and the critic so both see the same inputs; its
    statistics are buffers, saved and loaded with either network's state dict.

    Args:
        dim: width of the input.

    Keyword Args:
        clip: bound of the normalised input (SHAC: 5).
        eps: added to the variance before the square root.

    Examples:
        >>> norm = InputNormalizer(2)
        >>> norm.update(torch.tensor([[1.0, 10.0], [3.0, 30.0]]))
        >>> norm(torch.tensor([[2.0, 20.0], [3.0, 30.0], [100.0, 0.0]])).round(decimals=3)
        tensor([[ 0.,  0.],
                [ 1.,  1.],
                [ 5., -2.]])
    """

    def __init__(self, dim: int, *, clip: float = 5.0, eps: float = 1e-5) -> None:
        super().__init__()
        if clip <= 0:
            raise ValueError(f"clip must be > 0, got {clip}.")
        self.stats = RunningMeanStd((dim,))
        self.clip = float(clip)
        self.eps = float(eps)

    def update(self, x: torch.Tensor) -> None:
        """Merges a batch of inputs ``[..., dim]`` into the statistics (no graph is kept)."""
        self.stats.update(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stats.normalize(x, eps=self.eps).clamp(-self.clip, self.clip)

    def extra_repr(self) -> str:
        return f"dim={self.stats.shape[0]}, clip={self.clip}"
