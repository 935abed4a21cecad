"""Positive-class weight that undoes the slice sampler's under-sampling of terminations."""

from __future__ import annotations

import torch
from torch import nn


class TerminationBalance(nn.Module):
    """Weights the termination BCE so that its optimum is the termination rate of the data.

    :class:`~torchrl.data.SliceSampler` picks a trajectory uniformly, then a start uniformly:
    an episode's last transition, the only one that can be ``terminated``, lies in a slice from
    one start position while an interior transition lies in up to H, and short episodes are
    picked as often as long ones. The rate of terminations in world-model batches therefore
    differs from the rate in the collected data (about 3-4x lower for geometric episode
    lengths, ~10x on early Ant runs), and an unweighted termination head predicts falls that
    much too rarely. With counts of both rates, the weight

    ``w = odds(rate in the data) / odds(rate in the batches)``, ``odds(r) = r / (1 - r)``

    makes ``p = rate in the data`` the minimiser of the weighted BCE on the batches for a head
    that cannot tell the states apart; a head that can keeps its per-state ratios. Counts are
    kept from the start of the run (buffers, so they are checkpointed); the weight is 1 until
    both counts have seen a termination, and is clamped to ``[1 / max_weight, max_weight]``.

    Args:
        max_weight: bound on the weight and its inverse.

    Examples:
        >>> import torch
        >>> balance = TerminationBalance()
        >>> balance.observe_data(torch.tensor([False] * 99 + [True]))  # data rate 1 %
        >>> balance.observe_batch(torch.tensor([False] * 399 + [True]))  # batch rate 0.25 %
        >>> round(balance.weight(), 2)
        4.03
    """

    def __init__(self, max_weight: float = 100.0) -> None:
        super().__init__()
        if not max_weight >= 1.0:
            raise ValueError(f"max_weight must be >= 1, got {max_weight}.")
        self.max_weight = float(max_weight)
        for name in ("data_terminal", "data_count", "batch_terminal", "batch_count"):
            self.register_buffer(name, torch.zeros((), dtype=torch.float64))

    def observe_data(self, terminated: torch.Tensor) -> None:
        """Counts the ``terminated`` flags of newly collected transitions."""
        self.data_terminal += terminated.sum().to(self.data_terminal)
        self.data_count += terminated.numel()

    def observe_batch(self, terminated: torch.Tensor) -> None:
        """Counts the ``terminated`` flags of the transitions a world-model step trains on."""
        self.batch_terminal += terminated.sum().to(self.batch_terminal)
        self.batch_count += terminated.numel()

    def weight(self) -> float:
        """The positive-class weight for the next world-model step."""
        if self.data_terminal == 0 or self.batch_terminal == 0:
            return 1.0
        data_rate = self.data_terminal / self.data_count
        batch_rate = self.batch_terminal / self.batch_count
        ratio = (data_rate / (1 - data_rate)) / (batch_rate / (1 - batch_rate))
        return float(ratio.clamp(1.0 / self.max_weight, self.max_weight))
