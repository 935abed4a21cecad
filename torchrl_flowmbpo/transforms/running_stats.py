"""Running mean and variance with Chan's parallel update (PWM's ``RunningMeanStd``).

Used for the reward statistics of :class:`~torchrl_flowmbpo.transforms.RewardNormalization`
and for the actor loss's ``ret_rms`` (the scale of the per-start loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["RunningMeanStd"]


class RunningMeanStd(nn.Module):
    """Running mean, variance and count of a stream of tensors, merged batch by batch.

    The statistics start as a pseudo-sample of weight ``init_count`` (default ``1e-4``) with mean 0
    and variance 1, as in PWM and OpenAI baselines. Each :meth:`update` merges a batch's mean and
    population variance with Chan et al.'s parallel formula, which is exact: after any sequence of
    batches the statistics equal the pooled moments of the pseudo-sample and all the data seen.

    The statistics are registered buffers (``mean``, ``var``, ``count``), so they follow
    ``module.to(device)``, appear in ``state_dict()`` and load with
    ``torch.load(..., weights_only=True)``. They are float64 by default: the count of a long
    training run passes 2**24 (where float32 stops counting single frames) and the merge
    subtracts nearly equal numbers. Casting the module (``module.float()``) also casts them.

    Args:
        shape: shape of one sample (the trailing dims of what :meth:`update` receives). Default
            ``()``: every element is one sample of a scalar.

    Keyword Args:
        init_count: weight of the initial pseudo-sample (mean 0, variance 1). Default ``1e-4``.
        dtype: dtype of the statistics. Default ``torch.float64``.
        device: device of the statistics. Default: the default device.

    Examples:
        >>> rms = RunningMeanStd()
        >>> rms.update(torch.tensor([1.0, 2.0, 3.0]))
        >>> rms.update(torch.tensor([[4.0], [5.0]]))
        >>> # the data alone have mean 3 and variance 2; the 1e-4 prior shifts them slightly
        >>> rms.count
        tensor(5.0001, dtype=torch.float64)
        >>> rms.mean, rms.var
        (tensor(2.9999, dtype=torch.float64), tensor(2.0002, dtype=torch.float64))
        >>> rms.normalize(torch.tensor([3.0]), center=False)
        tensor([2.1212])
    """

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(
        self,
        shape: Sequence[int] | torch.Size = (),
        *,
        init_count: float = 1e-4,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if init_count <= 0:
            # A zero prior makes the first merge divide by zero whenever a batch is empty.
            raise ValueError(f"init_count must be > 0, got {init_count}.")
        self.shape = torch.Size(shape)
        self.register_buffer("mean", torch.zeros(self.shape, dtype=dtype, device=device))
        self.register_buffer("var", torch.ones(self.shape, dtype=dtype, device=device))
        self.register_buffer("count", torch.tensor(init_count, dtype=dtype, device=device))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merges a batch into the statistics; every leading dim of ``x`` is a sample dim.

        Args:
            x: tensor of shape ``[*batch, *shape]``. It is detached; no graph is kept. An empty
                batch leaves the statistics unchanged.

        Raises:
            ValueError: if the trailing dims of ``x`` do not match ``shape``.
        """
        ndim = len(self.shape)
        if x.ndim < ndim or x.shape[x.ndim - ndim :] != self.shape:
            raise ValueError(
                f"Expected a tensor whose trailing dims are {tuple(self.shape)}, "
                f"got shape {tuple(x.shape)}."
            )
        x = x.detach().to(self.mean).reshape(-1, *self.shape)
        if x.shape[0] == 0:
            return
        batch_var, batch_mean = torch.var_mean(x, dim=0, correction=0)
        self.update_from_moments(batch_mean, batch_var, x.shape[0])

    @torch.no_grad()
    def update_from_moments(self, batch_mean: Tensor, batch_var: Tensor, batch_count: int) -> None:
        """Merges precomputed moments (mean, population variance, count) of a batch.

        Args:
            batch_mean: mean of the batch, of shape ``shape``.
            batch_var: population variance (``correction=0``) of the batch, of shape ``shape``.
            batch_count: number of samples in the batch.
        """
        batch_mean = batch_mean.detach().to(self.mean)
        batch_var = batch_var.detach().to(self.var)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        # Chan et al. (1979): the pooled sum of squared deviations is the two within-batch sums
        # plus a between-batch term, so merging is exact whatever the batch sizes.
        m2 = self.var * self.count + batch_var * batch_count
        m2 = m2 + delta.square() * self.count * batch_count / total
        self.mean.add_(delta * batch_count / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: Tensor, *, center: bool = True, eps: float = 1e-5) -> Tensor:
        """Returns ``(x - mean) / sqrt(var + eps)``, or ``x / sqrt(var + eps)`` if not ``center``.

        Differentiable in ``x``; the statistics are constants. The result has ``x``'s dtype.

        Args:
            x: tensor of shape ``[*batch, *shape]``.

        Keyword Args:
            center: subtract the running mean. Default ``True``.
            eps: added to the variance before the square root. Default ``1e-5`` (PWM).
        """
        std = (self.var + eps).sqrt().to(x.dtype)
        if center:
            return (x - self.mean.to(x.dtype)) / std
        return x / std

    def extra_repr(self) -> str:
        return f"shape={tuple(self.shape)}, dtype={self.mean.dtype}"
