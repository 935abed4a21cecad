"""World-model diagnostics on real data: open-loop reward/latent error and termination calibration.

Both functions run under ``torch.no_grad()``, leave the model's mode and the input untouched, and
return plain Python floats and lists.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey

from torchrl_flowmbpo.diagnostics.common import masked_mean, nanmean, pearson
from torchrl_flowmbpo.modules.models.world_model import LatentWorldModel

__all__ = ["CALIBRATION_STRATEGIES", "imagination_vs_real", "termination_calibration"]

CALIBRATION_STRATEGIES = ("uniform", "quantile")


def _alive_mask(
    batch: TensorDictBase, done_key: NestedKey | None, device: torch.device
) -> torch.Tensor:
    """``[B, T]``: transition t belongs to the episode of o_0 (no ``done`` at any s < t)."""
    shape = batch.shape
    done = batch.get(done_key, None) if done_key is not None else None
    if done is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    done = done.reshape(shape).bool()
    ended_before = torch.cumsum(done.long(), dim=1) - done.long()
    return ended_before == 0


@torch.no_grad()
def imagination_vs_real(
    world_model: LatentWorldModel,
    slices: TensorDictBase,
    *,
    horizon: int,
    reward_scale: float = 1.0,
    observation_key: NestedKey = "observation",
    next_observation_key: NestedKey = ("next", "observation"),
    action_key: NestedKey = "action",
    reward_key: NestedKey = ("next", "reward"),
    done_key: NestedKey | None = ("next", "done"),
) -> dict[str, Any]:
    """Open-loop rollout of the world model on real actions, compared step by step with reality.

    On real slices ``[B, T]`` (``T >= horizon``; best from episodes the model was not trained
    on): ``z_0 = E(o_0)`` and ``z_{t+1} = next(z_t, a_t)`` with the **real** actions, no teacher
    forcing. For each step ``t = 0..H-1``, over the slices:

    - ``reward_corr[t]`` = Pearson(r̂_t, r_t) with ``r̂_t = decode R(z_t, a_t)`` and
      ``r_t = reward / reward_scale``; NaN where undefined (a constant prediction or target);
    - ``reward_mae[t]`` = mean |r̂_t − r_t| and ``reward_bias[t]`` = mean (r̂_t − r_t);
    - ``latent_error[t]`` = mean_b mean_d (z_{t+1} − E(o_{t+1}))², the open-loop latent error
      **after** ``t + 1`` model steps (so the list covers steps 1..H).

    Rewards are compared in the model's (normalised) units: the model is trained on
    ``r / scale``, so pass the raw reward with ``reward_scale=RewardNormalization.scale``, or the
    already normalised ``("next", "reward_norm")`` with ``reward_scale=1``. (With
    ``reward_norm: standardize`` only the second form is right.)

    Transitions after a ``done`` inside a slice (env rollouts with auto-reset) belong to another
    episode and are masked out; the terminating transition itself is kept. Replay slices from a
    strict :class:`~torchrl.data.SliceSampler` never cross an episode and need no mask.

    Args:
        world_model: the latent world model (MLP or flow).
        slices: real transitions ``[B, T]``.

    Keyword Args:
        horizon: open-loop steps H.
        reward_scale: divisor taking ``reward_key`` to the model's units.
        observation_key, next_observation_key, action_key, reward_key: input keys.
        done_key: episode-end flags used for the mask; ``None`` (or a missing key) disables it.

    Returns:
        A dict with per-step lists ``reward_corr``, ``reward_mae``, ``reward_bias``,
        ``latent_error`` (length H) and ``count`` (valid slices per step), and the scalars
        ``reward_corr_mean`` (mean over the defined steps), ``reward_corr_first``,
        ``reward_corr_last``, ``reward_mae_mean``, ``reward_mae_last``, ``reward_bias_mean``,
        ``latent_error_mean``, ``latent_error_last``, ``reward_corr_teacher`` and
        ``reward_mae_teacher`` (the reward head on teacher-forced latents ``E(o_t)``, pooled over
        all valid steps: separates reward-head error from dynamics drift) and ``num_slices``.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_flowmbpo.modules.models import PWMWorldModel
        >>> wm = PWMWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> slices = TensorDict({
        ...     "observation": torch.randn(8, 4, 4), "action": torch.rand(8, 4, 2) * 2 - 1,
        ...     ("next", "observation"): torch.randn(8, 4, 4),
        ...     ("next", "reward"): torch.randn(8, 4, 1)}, batch_size=[8, 4])
        >>> out = imagination_vs_real(wm, slices, horizon=3)
        >>> len(out["latent_error"]), out["reward_mae_mean"] > 0
        (3, True)
    """
    if slices.ndim != 2 or slices.shape[1] < horizon or horizon < 1:
        raise ValueError(
            f"imagination_vs_real expects [B, T] slices with T >= horizon={horizon} >= 1, "
            f"got batch shape {tuple(slices.shape)}."
        )
    wm = world_model
    batch = slices[:, :horizon]
    obs, action = batch.get(observation_key), batch.get(action_key)
    reward = batch.get(reward_key).reshape(batch.shape).double() / reward_scale
    alive = _alive_mask(batch, done_key, reward.device)
    targets = wm.encode(batch.get(next_observation_key))
    teacher = wm.encode(obs)
    teacher_reward = wm.reward(teacher, action).reshape(batch.shape).double()
    latent = wm.encode(obs[:, 0])
    corr, mae, bias, latent_error, count = [], [], [], [], []
    for t in range(horizon):
        mask = alive[:, t]
        pred = wm.reward(latent, action[:, t]).reshape(-1).double()
        diff = pred - reward[:, t]
        corr.append(pearson(pred[mask], reward[mask, t]))
        mae.append(masked_mean(diff.abs(), mask))
        bias.append(masked_mean(diff, mask))
        latent = wm.next(latent, action[:, t])
        latent_error.append(masked_mean((latent - targets[:, t]).pow(2).mean(-1), mask))
        count.append(int(mask.sum()))
    return {
        "reward_corr": corr,
        "reward_mae": mae,
        "reward_bias": bias,
        "latent_error": latent_error,
        "count": count,
        "reward_corr_mean": nanmean(corr),
        "reward_corr_first": corr[0],
        "reward_corr_last": corr[-1],
        "reward_mae_mean": nanmean(mae),
        "reward_mae_last": mae[-1],
        "reward_bias_mean": nanmean(bias),
        "latent_error_mean": nanmean(latent_error),
        "latent_error_last": latent_error[-1],
        "reward_corr_teacher": pearson(teacher_reward[alive], reward[alive]),
        "reward_mae_teacher": masked_mean((teacher_reward - reward).abs(), alive),
        "num_slices": batch.shape[0],
    }


@torch.no_grad()
def termination_calibration(
    world_model: LatentWorldModel,
    transitions: TensorDictBase,
    *,
    num_bins: int = 10,
    strategy: str = "quantile",
    observation_key: NestedKey = "observation",
    action_key: NestedKey = "action",
    terminated_key: NestedKey = ("next", "terminated"),
) -> dict[str, Any]:
    """Calibration of the termination head ``p = σ(T(E(o_t), a_t))`` against real ``terminated``.

    Teacher-forced: every transition of ``transitions`` (any batch shape) is scored from its own
    encoded observation. With ``n`` transitions, ``y`` the observed flags:

    - ``predicted_rate = mean p``, ``observed_rate = mean y``;
    - ``expected_count = Σ p``, ``observed_count = Σ y``;
    - ``ratio = Σ p / max(Σ y, 1)``: ``predicted_rate / observed_rate`` when at least one
      termination was observed (above 1: the head over-predicts falls; the feasibility run had
      ≈ 1/30). **With no observed termination** the ratio is ``Σ p`` (the model's expected
      number of terminations, as if one had been observed: a lower bound of the ratio to the
      unknown true rate, which is below about ``1 / n``) and ``ratio_is_bound`` is 1.0; no
      quantity is NaN or infinite then;
    - ``brier = mean (p − y)²``;
    - reliability curve over ``num_bins`` bins of ``p`` (empty bins dropped): per bin its
      ``lower``/``upper`` edges (bins are ``(lower, upper]``, the first closed), the mean
      predicted probability, the observed frequency and the count; ``ece = Σ_bins (count / n)
      |mean predicted − observed frequency|``.

    Use data whose termination rate is the real one, e.g. closed-loop env rollouts: strict replay
    slices under-sample episode ends. A model without a termination head predicts ``p = 0``.

    Args:
        world_model: the latent world model.
        transitions: real transitions of any batch shape.

    Keyword Args:
        num_bins: reliability bins.
        strategy: ``"quantile"`` (bins of equal count: falls are rare and probabilities small, so
            uniform bins put almost everything in the first) or ``"uniform"`` (equal width on
            [0, 1]).
        observation_key, action_key, terminated_key: input keys.

    Returns:
        ``predicted_rate``, ``observed_rate``, ``expected_count``, ``observed_count``, ``ratio``,
        ``ratio_is_bound``, ``brier``, ``ece``, ``count`` (floats) and ``bins`` (a dict of lists
        ``lower``, ``upper``, ``mean_predicted``, ``observed_frequency``, ``count``).

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_flowmbpo.modules.models import PWMWorldModel
        >>> wm = PWMWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> data = TensorDict({"observation": torch.randn(50, 4), "action": torch.zeros(50, 2),
        ...                    ("next", "terminated"): torch.zeros(50, 1, dtype=torch.bool)},
        ...                   batch_size=[50])
        >>> out = termination_calibration(wm, data)
        >>> round(out["predicted_rate"], 4), out["observed_count"], out["ratio_is_bound"]
        (0.0067, 0.0, 1.0)
    """
    if strategy not in CALIBRATION_STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}; allowed: {CALIBRATION_STRATEGIES}.")
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
    obs, action = transitions.get(observation_key), transitions.get(action_key)
    if world_model.has_termination:
        # σ(logit) directly: 1 − continue_prob loses the small probabilities to float32 round-off.
        logit = world_model.termination_logit(world_model.encode(obs), action)
        p = torch.sigmoid(logit.double()).reshape(-1)
    else:
        p = torch.zeros(action.shape[:-1], dtype=torch.float64, device=action.device).reshape(-1)
    y = transitions.get(terminated_key).reshape(-1).double()
    if p.shape != y.shape:
        raise ValueError(f"{terminated_key!r} must hold one flag per transition.")
    n = p.numel()
    if n == 0:
        raise ValueError("termination_calibration needs at least one transition.")
    expected, observed = float(p.sum()), float(y.sum())
    if strategy == "uniform":
        edges = torch.linspace(0.0, 1.0, num_bins + 1, dtype=p.dtype, device=p.device)
    else:
        levels = torch.linspace(0.0, 1.0, num_bins + 1, dtype=p.dtype, device=p.device)
        edges = torch.quantile(p, levels)
        edges[0], edges[-1] = min(0.0, float(edges[0])), max(1.0, float(edges[-1]))
    index = torch.bucketize(p, edges[1:-1].contiguous(), right=False)
    bins: dict[str, list[float]] = {
        "lower": [],
        "upper": [],
        "mean_predicted": [],
        "observed_frequency": [],
        "count": [],
    }
    ece = 0.0
    for b in range(num_bins):
        mask = index == b
        size = int(mask.sum())
        if size == 0:
            continue
        mean_p, freq = float(p[mask].mean()), float(y[mask].mean())
        bins["lower"].append(float(edges[b]))
        bins["upper"].append(float(edges[b + 1]))
        bins["mean_predicted"].append(mean_p)
        bins["observed_frequency"].append(freq)
        bins["count"].append(float(size))
        ece += size / n * abs(mean_p - freq)
    return {
        "predicted_rate": expected / n,
        "observed_rate": observed / n,
        "expected_count": expected,
        "observed_count": observed,
        "ratio": expected / max(observed, 1.0),
        "ratio_is_bound": float(observed == 0),
        "brier": float((p - y).pow(2).mean()),
        "ece": ece,
        "count": float(n),
        "bins": bins,
    }
