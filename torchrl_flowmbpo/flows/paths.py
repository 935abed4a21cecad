"""Linear (rectified-flow) probability path and the conditional flow-matching objective.

Time convention: ``tau = 0`` is the **source** (the current latent, or noise) and ``tau = 1`` is
the **target** (the next latent). The interpolant is ``x_tau = (1 - tau) * x0 + tau * x1`` and
its conditional velocity is ``x1 - x0``, constant along the path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "TAU_SAMPLING_MODES",
    "flow_matching_error",
    "linear_path",
    "sample_tau",
    "target_velocity",
]

TAU_SAMPLING_MODES: tuple[str, ...] = ("uniform", "midpoint")


def linear_path(x0: Tensor, x1: Tensor, tau: Tensor | float) -> Tensor:
    """Point at flow time ``tau`` on the straight line from source ``x0`` to target ``x1``.

    Args:
        x0: source points (``tau = 0``), shape ``[..., D]``.
        x1: target points (``tau = 1``), shape ``[..., D]``.
        tau: flow time in ``[0, 1]``, broadcastable against ``x0`` (typically ``[..., 1]``, as
            returned by :func:`sample_tau`).

    Returns:
        ``(1 - tau) * x0 + tau * x1``; exactly ``x0`` at ``tau = 0`` and ``x1`` at ``tau = 1``.

    Examples:
        >>> x0, x1 = torch.zeros(2, 3), torch.ones(2, 3)
        >>> linear_path(x0, x1, torch.tensor([[0.25], [1.0]]))
        tensor([[0.2500, 0.2500, 0.2500],
                [1.0000, 1.0000, 1.0000]])
    """
    # This form (rather than x0 + tau * (x1 - x0)) hits both endpoints exactly in floating point.
    return (1 - tau) * x0 + tau * x1


def target_velocity(x0: Tensor, x1: Tensor) -> Tensor:
    """Conditional velocity of the linear path, ``d x_tau / d tau = x1 - x0``.

    Args:
        x0: source points (``tau = 0``), shape ``[..., D]``.
        x1: target points (``tau = 1``), shape ``[..., D]``.

    Returns:
        ``x1 - x0``, the regression target of flow matching.

    Examples:
        >>> target_velocity(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 5.0]))
        tensor([-1.,  3.])
    """
    return x1 - x0


def sample_tau(
    batch_shape: int | Sequence[int],
    *,
    mode: str = "uniform",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw flow times for the flow-matching loss, one per sample.

    Args:
        batch_shape: leading shape of the samples (an int or a sequence of ints).

    Keyword Args:
        mode: ``"uniform"`` draws ``tau ~ U[0, 1]`` independently per sample; ``"midpoint"``
            fixes ``tau = 0.5``.
        device: device of the returned tensor.
        dtype: floating dtype of the returned tensor (default: torch's default dtype).
        generator: optional RNG for ``"uniform"``, for reproducible draws.

    Returns:
        A tensor of shape ``batch_shape + (1,)``, ready to broadcast against ``[..., D]`` points
        or to be concatenated as a feature.

    Raises:
        ValueError: if ``mode`` is not one of :data:`TAU_SAMPLING_MODES`.

    Examples:
        >>> sample_tau((4, 2)).shape
        torch.Size([4, 2, 1])
        >>> sample_tau(3, mode="midpoint")
        tensor([[0.5000],
                [0.5000],
                [0.5000]])
    """
    if isinstance(batch_shape, int):
        batch_shape = (batch_shape,)
    shape = (*batch_shape, 1)
    if mode == "uniform":
        return torch.rand(shape, generator=generator, device=device, dtype=dtype)
    if mode == "midpoint":
        return torch.full(shape, 0.5, device=device, dtype=dtype)
    raise ValueError(f"Unknown tau sampling mode {mode!r}; expected one of {TAU_SAMPLING_MODES}.")


def flow_matching_error(v_pred: Tensor, x0: Tensor, x1: Tensor) -> Tensor:
    """Per-sample squared error between a predicted velocity and the linear path's velocity.

    Args:
        v_pred: velocity predicted at ``(x_tau, tau)``, shape ``[..., D]``.
        x0: source points (``tau = 0``), shape ``[..., D]``.
        x1: target points (``tau = 1``), shape ``[..., D]``.

    Returns:
        ``mean_d (v_pred - (x1 - x0))^2``, shape ``[...]`` (no reduction over samples, so callers
        can apply per-step discounts before averaging).

    Examples:
        >>> x0, x1 = torch.zeros(2, 4), torch.ones(2, 4)
        >>> flow_matching_error(torch.ones(2, 4), x0, x1)
        tensor([0., 0.])
        >>> flow_matching_error(torch.zeros(2, 4), x0, x1)
        tensor([1., 1.])
    """
    return (v_pred - target_velocity(x0, x1)).pow(2).mean(dim=-1)
