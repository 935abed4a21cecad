"""Pure tensor maths shared by the world-model heads: symlog, two-hot encoding, soft cross-entropy.

Nothing here knows about TensorDict keys; every function maps tensors to tensors and is
differentiable where that makes sense (decode and cross-entropy w.r.t. the logits).

The reward head's two-hot lives in **symlog space**: the support is a uniform grid on
``[-10, 10]`` in symlog units, targets are ``two_hot_encode(symlog(r))`` and predictions are
``symexp(two_hot_decode(logits))``. :func:`symlog_two_hot_encode` and
:func:`symlog_two_hot_decode` bundle those two steps so that raw rewards go in and come out.

.. note::
    This is *not* TorchRL's ``SymExpTwoHot``, whose support is a raw-value grid (symexp of a
    uniform grid) and which takes raw targets directly. Do not mix the two conventions.

.. warning::
    Two-hot logits must be trained with :func:`soft_cross_entropy`. Regressing them with MSE
    against the scalar target drives all logits to the same value; a uniform softmax over a
    symmetric support decodes to exactly 0 for every input.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "soft_cross_entropy",
    "symexp",
    "symlog",
    "symlog_two_hot_decode",
    "symlog_two_hot_encode",
    "two_hot_decode",
    "two_hot_encode",
    "two_hot_support",
]


def symlog(x: Tensor) -> Tensor:
    """Symmetric log, ``sign(x) * log(1 + |x|)``; compresses large magnitudes, identity-like near 0.

    Args:
        x: any floating tensor.

    Returns:
        A tensor of the same shape; :func:`symexp` is its inverse.

    Examples:
        >>> symlog(torch.tensor([-(torch.e - 1), 0.0, torch.e - 1]))
        tensor([-1.,  0.,  1.])
    """
    # log1p keeps full precision for small |x|, where log(1 + |x|) would round.
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """Inverse of :func:`symlog`, ``sign(x) * (exp(|x|) - 1)``.

    Args:
        x: any floating tensor (values in symlog space).

    Returns:
        A tensor of the same shape, in raw space.

    Examples:
        >>> x = torch.tensor([-50.0, -0.5, 0.0, 3.0])
        >>> torch.allclose(symexp(symlog(x)), x)
        True
    """
    return torch.sign(x) * torch.expm1(torch.abs(x))


def two_hot_support(
    vmin: float = -10.0,
    vmax: float = 10.0,
    num_bins: int = 101,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Uniform grid of bin centres for two-hot encoding.

    For the reward head the grid is in symlog space (the defaults: 101 bins on ``[-10, 10]``,
    i.e. a spacing of 0.2).

    Args:
        vmin: value of the first bin.
        vmax: value of the last bin; must exceed ``vmin``.
        num_bins: number of bins ``K``; at least 2.

    Keyword Args:
        device: device of the returned tensor.
        dtype: floating dtype of the returned tensor (default: torch's default dtype).

    Returns:
        A 1-D tensor of shape ``[num_bins]``, increasing from ``vmin`` to ``vmax``.

    Examples:
        >>> two_hot_support(-1.0, 1.0, 5)
        tensor([-1.0000, -0.5000,  0.0000,  0.5000,  1.0000])
        >>> support = two_hot_support()
        >>> support.shape, support[50].item(), torch.equal(support, -support.flip(0))
        (torch.Size([101]), 0.0, True)
    """
    if num_bins < 2:
        raise ValueError(f"num_bins must be at least 2, got {num_bins}.")
    if not vmax > vmin:
        raise ValueError(f"vmax must be greater than vmin, got vmin={vmin}, vmax={vmax}.")
    # Built in float64 as (vmin * (K-1-i) + vmax * i) / (K-1), not with torch.linspace: the float32
    # linspace of [-10, 10] is not symmetric (its middle bin is -1.5e-7). This form mirrors exactly
    # when vmin == -vmax, so a reward of 0 encodes to a one-hot on an exact 0 bin.
    i = torch.arange(num_bins, dtype=torch.float64)
    grid = (vmin * (num_bins - 1 - i) + vmax * i) / (num_bins - 1)
    return grid.to(device=device, dtype=dtype or torch.get_default_dtype())


def two_hot_encode(x: Tensor, support: Tensor) -> Tensor:
    """Two-hot encode scalars onto a support, splitting mass between the two neighbouring bins.

    The weights are linear in the distance to each neighbour, so ``(probs * support).sum(-1)``
    equals ``x`` for ``x`` inside ``[support[0], support[-1]]``. Values outside saturate: all
    their mass goes to the nearest end bin.

    Args:
        x: floating tensor of shape ``[...]`` (already in the support's space, e.g. symlog).
        support: increasing 1-D tensor of bin centres, shape ``[K]`` (see
            :func:`two_hot_support`).

    Returns:
        Probabilities of shape ``[..., K]`` with ``x``'s dtype and device: non-negative, summing
        to 1, with at most two non-zero entries (adjacent bins).

    Examples:
        >>> support = torch.tensor([-1.0, 0.0, 1.0])
        >>> two_hot_encode(torch.tensor([0.25, -3.0]), support)
        tensor([[0.0000, 0.7500, 0.2500],
                [1.0000, 0.0000, 0.0000]])
    """
    support = support.to(device=x.device, dtype=x.dtype)
    num_bins = support.shape[-1]
    x = x.clamp(support[0], support[-1])
    # Index of the lower neighbour; capping at K - 2 makes x == vmax land on (K-2, K-1) with all
    # mass on the upper bin, so both neighbours always exist.
    lower = torch.searchsorted(support, x.detach().contiguous(), right=True) - 1
    lower = lower.clamp(0, num_bins - 2)
    b_lower = support[lower]
    b_upper = support[lower + 1]
    # Weights from the actual bin values (not an idealised grid) make the round trip exact.
    w_upper = ((x - b_lower) / (b_upper - b_lower)).clamp(0.0, 1.0)
    probs = torch.zeros(*x.shape, num_bins, device=x.device, dtype=x.dtype)
    probs = probs.scatter(-1, lower.unsqueeze(-1), (1.0 - w_upper).unsqueeze(-1))
    return probs.scatter(-1, (lower + 1).unsqueeze(-1), w_upper.unsqueeze(-1))


def two_hot_decode(logits: Tensor, support: Tensor) -> Tensor:
    """Expected value of the categorical distribution ``softmax(logits)`` over the support.

    Args:
        logits: unnormalised log-probabilities of shape ``[..., K]``.
        support: 1-D tensor of bin centres, shape ``[K]``.

    Returns:
        ``softmax(logits) @ support``, shape ``[...]`` (in the support's space).

    Examples:
        >>> support = torch.tensor([-1.0, 0.0, 1.0])
        >>> two_hot_decode(torch.zeros(3), support)  # uniform softmax, symmetric support
        tensor(0.)
        >>> two_hot_decode(torch.tensor([0.0, 0.75, 0.25]).log(), support)  # log(0) = -inf is fine
        tensor(0.2500)
    """
    support = support.to(device=logits.device, dtype=logits.dtype)
    terms = torch.softmax(logits, dim=-1) * support
    # Pair mirrored bins before summing: on a symmetric support, equal probabilities then cancel
    # exactly, so a zero-initialised head decodes to exactly 0 (a plain sum leaves ~1e-7).
    half = terms.shape[-1] // 2
    paired = terms[..., :half] + terms[..., terms.shape[-1] - half :].flip(-1)
    return paired.sum(-1) + terms[..., half : terms.shape[-1] - half].sum(-1)


def soft_cross_entropy(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Cross-entropy against a soft target, ``-sum_k y_k * log_softmax(logits)_k``.

    Args:
        logits: finite unnormalised log-probabilities of shape ``[..., K]`` (a ``-inf`` logit
            on a zero-target bin gives ``0 * -inf = nan``, as in ``F.cross_entropy``).
        target_probs: target distribution of shape ``[..., K]`` (e.g. from
            :func:`two_hot_encode`); it is not detached here.

    Returns:
        Per-sample cross-entropy of shape ``[...]`` (no reduction).

    Examples:
        >>> logits = torch.log(torch.tensor([1.0, 2.0, 3.0]))
        >>> target = torch.tensor([0.0, 0.25, 0.75])
        >>> round(soft_cross_entropy(logits, target).item(), 6)  # 0.25 ln 3 + 0.75 ln 2
        0.794513
    """
    return -(target_probs * torch.log_softmax(logits, dim=-1)).sum(dim=-1)


def symlog_two_hot_encode(r: Tensor, support: Tensor) -> Tensor:
    """Two-hot target for raw values on a symlog-space support: ``two_hot_encode(symlog(r))``.

    Args:
        r: raw values (e.g. rewards) of shape ``[...]``.
        support: 1-D symlog-space support, shape ``[K]``.

    Returns:
        Probabilities of shape ``[..., K]``.

    Examples:
        >>> support = two_hot_support()
        >>> probs = symlog_two_hot_encode(torch.tensor([-5.0, 0.0, 20.0]), support)
        >>> probs.shape, (probs > 0).sum(-1).tolist()  # 0 sits exactly on the middle bin
        (torch.Size([3, 101]), [2, 1, 2])
    """
    return two_hot_encode(symlog(r), support)


def symlog_two_hot_decode(logits: Tensor, support: Tensor) -> Tensor:
    """Raw value predicted by symlog-space two-hot logits: ``symexp(two_hot_decode(logits))``.

    Args:
        logits: unnormalised log-probabilities of shape ``[..., K]``.
        support: 1-D symlog-space support, shape ``[K]``.

    Returns:
        Raw values of shape ``[...]``.

    Examples:
        >>> support = two_hot_support()
        >>> r = torch.tensor([-5.0, 0.0, 20.0])
        >>> logits = symlog_two_hot_encode(r, support).log()
        >>> torch.allclose(symlog_two_hot_decode(logits, support), r, atol=1e-4)
        True
    """
    return symexp(two_hot_decode(logits, support))
