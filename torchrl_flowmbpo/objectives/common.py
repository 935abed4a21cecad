"""Helpers shared by the PWM losses: discount weights and the non-finite batch check."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey

__all__ = ["NonFiniteBatchError", "check_finite", "discount_weights", "module_device"]


class NonFiniteBatchError(ValueError):
    """A loss received a batch holding NaN or inf values.

    The losses refuse such batches instead of returning a NaN loss whose gradients would
    silently corrupt the parameters; the training loop decides whether to skip the batch.
    """


def check_finite(tensordict: TensorDictBase, keys: Iterable[NestedKey], loss_name: str) -> None:
    """Raises :class:`NonFiniteBatchError` naming every floating key with non-finite entries.

    A missing key raises ``KeyError`` naming it.

    Args:
        tensordict: the input batch.
        keys: the keys the loss reads.
        loss_name: the loss's name, for the message.
    """
    values = []
    for key in keys:
        value = tensordict.get(key, None)
        if value is None:
            raise KeyError(f"{loss_name}: the batch has no key {key!r}.")
        if value.is_floating_point():
            values.append((key, value))
    if not values:
        return
    # NaN and inf propagate through sums: one check and one host sync for the whole batch (on
    # a GPU each per-key check would stall the stream). A sum that overflows on finite values
    # falls through to the exact count below, which then finds nothing.
    if bool(torch.isfinite(sum(value.sum() for _, value in values))):
        return
    bad = []
    for key, value in values:
        count = int((~torch.isfinite(value)).sum())
        if count:
            bad.append(f"{key!r} ({count} non-finite of {value.numel()})")
    if not bad:
        return
    raise NonFiniteBatchError(f"{loss_name}: non-finite values in the batch: {', '.join(bad)}.")


def module_device(module: torch.nn.Module) -> torch.device:
    """Device of a network's first parameter (CPU for a parameterless module).

    Losses create their buffers there, as TorchRL's losses do, so a loss built from CUDA networks
    runs on CUDA without a separate ``.to(device)``.

    Examples:
        >>> module_device(torch.nn.Linear(2, 2))
        device(type='cpu')
    """
    return next(module.parameters(), torch.empty(0)).device


def discount_weights(
    gamma: float, horizon: int, *, device: torch.device | None = None
) -> torch.Tensor:
    """``[gamma^0, gamma^1, ..., gamma^(horizon-1)]``.

    Examples:
        >>> discount_weights(0.5, 3)
        tensor([1.0000, 0.5000, 0.2500])
    """
    return gamma ** torch.arange(horizon, dtype=torch.float32, device=device)
