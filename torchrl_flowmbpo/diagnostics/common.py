"""Statistics shared by the diagnostics: masked Pearson correlation and metric flattening."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["METRIC_PREFIXES", "pearson", "scalar_metrics"]

#: Logger prefix of each diagnostic's scalars (``scalar_metrics(result, METRIC_PREFIXES[name])``),
#: giving the names of ``docs/metrics.md`` and ``examples/diagnostics_report.py``, e.g.
#: ``diagnostics/reward_corr_mean``, ``diagnostics/termination_ratio``,
#: ``diagnostics/critic_bias``, ``diagnostics/exploitation_gap``, ``diagnostics/horizon_gap``,
#: ``diagnostics/gradient_grad_cos_mean``, ``diagnostics/actor_grad_cosine``,
#: ``diagnostics/probe_rank_agreement``.
METRIC_PREFIXES = {
    "imagination_vs_real": "diagnostics/",
    "termination_calibration": "diagnostics/termination_",
    "critic_vs_returns": "diagnostics/critic_",
    "exploitation_gap": "diagnostics/exploitation_",
    "horizon_return_gap": "diagnostics/horizon_",
    "action_gradient_accuracy": "diagnostics/gradient_",
    "exact_action_gradient": "diagnostics/exact_gradient_",
    "actor_gradient_split": "diagnostics/actor_",
    "behaviour_probe": "diagnostics/probe_",
}


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two flat samples, in float64.

    Returns NaN when it is undefined: fewer than two samples, or either sample constant (a
    constant predictor carries no linear information about the target, and no value in
    ``[-1, 1]`` would say so honestly).

    Examples:
        >>> round(pearson(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.5])), 4)
        0.9979
        >>> pearson(torch.zeros(3), torch.tensor([1.0, 2.0, 3.0]))
        nan
    """
    x, y = x.reshape(-1).double(), y.reshape(-1).double()
    if x.numel() < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float((dx * dx).sum()), float((dy * dy).sum())
    # A relative floor, so float round-off of a "constant" sample is not read as variance.
    floor_x = 1e-24 * x.numel() * max(1.0, float(x.abs().max()) ** 2)
    floor_y = 1e-24 * y.numel() * max(1.0, float(y.abs().max()) ** 2)
    if sxx <= floor_x or syy <= floor_y:
        return math.nan
    return max(-1.0, min(1.0, float((dx * dy).sum()) / math.sqrt(sxx * syy)))


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of ``values[mask]`` as a float; NaN when the mask is empty."""
    count = int(mask.sum())
    return float(values[mask].double().sum() / count) if count else math.nan


def nanmean(values: list[float]) -> float:
    """Mean of the finite entries of a list; NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def scalar_metrics(result: Mapping[str, Any], prefix: str = "diagnostics/") -> dict[str, float]:
    """The scalar entries of a diagnostics result as ``{prefix + key: float}`` for a logger.

    Lists (per-step curves, reliability bins) are left out: log them as tables or plots.

    Examples:
        >>> result = {"bias": 0.5, "count": 3, "per_step": [1.0]}
        >>> scalar_metrics(result, prefix="diagnostics/critic_")
        {'diagnostics/critic_bias': 0.5, 'diagnostics/critic_count': 3.0}
    """
    return {
        f"{prefix}{key}": float(value)
        for key, value in result.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
