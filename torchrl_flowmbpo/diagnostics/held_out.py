"""Held-out accuracy of a world model pretrained offline
(:func:`~torchrl_flowmbpo.trainers.pretrain_world_model`).

Every metric is computed on data the model never trains on (held-out episodes), with the
diagnostics the online runs log (``torchrl_flowmbpo.diagnostics``); definitions in
``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase

from torchrl_flowmbpo.diagnostics import (
    action_gradient_accuracy,
    imagination_vs_real,
    make_real_return,
    pearson,
    scalar_metrics,
    termination_calibration,
)
from torchrl_flowmbpo.diagnostics.behaviours import model_replay_rewards
from torchrl_flowmbpo.modules.models import LatentWorldModel
from torchrl_flowmbpo.transforms import RewardNormalization

#: Horizons (1-based steps) whose open-loop latent error gets its own column.
LATENT_ERROR_STEPS = (1, 4, 8, 16)


def open_loop_return_corr(
    world_model: LatentWorldModel,
    slices: TensorDictBase,
    *,
    gamma: float,
    reward_scale: float,
    reward_loc: float = 0.0,
) -> dict[str, float]:
    """Pearson over slices of the model's and the real H-step discounted return of the same
    recorded actions, open loop from each slice's first observation (raw reward units).

    The model's rewards are weighted by its survival probability
    (:func:`~torchrl_flowmbpo.diagnostics.behaviours.model_replay_rewards`); slices of a strict
    ``SliceSampler`` never cross an episode, so the real sum needs no mask.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_flowmbpo.modules.models import PWMWorldModel
        >>> wm = PWMWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> slices = TensorDict({"observation": torch.randn(8, 3, 4),
        ...     "action": torch.rand(8, 3, 2), ("next", "reward"): torch.randn(8, 3, 1)}, [8, 3])
        >>> sorted(open_loop_return_corr(wm, slices, gamma=0.99, reward_scale=1.0))
        ['return_corr', 'return_mae']
    """
    horizon = slices.shape[1]
    discount = gamma ** torch.arange(horizon, dtype=torch.float64)
    model = model_replay_rewards(
        world_model,
        slices["observation"][:, 0],
        slices["action"],
        reward_scale=reward_scale,
        reward_loc=reward_loc,
    ).double()
    real = slices["next", "reward"].reshape(slices.shape).double()
    model_return, real_return = model @ discount, real @ discount
    return {
        "return_corr": pearson(model_return, real_return),
        "return_mae": float((model_return - real_return).abs().mean()),
    }


@torch.no_grad()
def held_out_metrics(
    world_model: LatentWorldModel,
    reward_norm: RewardNormalization,
    slices: TensorDictBase,
    transitions: TensorDictBase,
    *,
    gamma: float,
    gradient_check: Callable[[LatentWorldModel], dict[str, Any]] | None = None,
) -> dict[str, float]:
    """The model's held-out accuracy in one flat dict.

    Args:
        world_model: the model (put in eval mode by the caller).
        reward_norm: the normaliser whose units the model's reward head predicts.
        slices: held-out ``[N, H]`` slices (raw rewards).
        transitions: held-out transitions (any batch shape) for the termination calibration.

    Keyword Args:
        gamma: discount of the H-step returns.
        gradient_check: ``f(world_model) -> action_gradient_accuracy result`` (None: skipped).

    Returns:
        ``reward_corr_*``, ``reward_mae_*``, ``latent_error_*`` (imagination vs real, with
        ``latent_error_h<k>`` at the steps of :data:`LATENT_ERROR_STEPS`), ``return_corr`` and
        ``return_mae``, ``term_*`` (calibration) and ``grad_*`` (action-gradient agreement).
    """
    scale, loc = float(reward_norm.scale), float(reward_norm.loc)
    normed = reward_norm(slices.clone())
    imagination = imagination_vs_real(
        world_model,
        normed,
        horizon=slices.shape[1],
        reward_key=reward_norm.out_keys[0],
        done_key=None,  # strict slices never cross an episode
    )
    metrics = scalar_metrics(imagination, "")
    for step in LATENT_ERROR_STEPS:
        if step <= slices.shape[1]:
            metrics[f"latent_error_h{step}"] = imagination["latent_error"][step - 1]
    metrics.update(
        open_loop_return_corr(world_model, slices, gamma=gamma, reward_scale=scale, reward_loc=loc)
    )
    metrics.update(scalar_metrics(termination_calibration(world_model, transitions), "term_"))
    if gradient_check is not None:
        with torch.enable_grad():
            metrics.update(scalar_metrics(gradient_check(world_model), "grad_"))
    return metrics


def make_gradient_check(
    env,
    observations: torch.Tensor,
    actions: torch.Tensor,
    reward_norm: RewardNormalization,
    *,
    gamma: float,
) -> Callable[[LatentWorldModel], dict[str, Any]]:
    """``f(world_model)``: :func:`~torchrl_flowmbpo.diagnostics.action_gradient_accuracy` at
    fixed held-out states and open-loop actions, the simulator ``env`` restarted at them."""
    real_return = make_real_return(env, gamma=gamma)

    def check(world_model: LatentWorldModel) -> dict[str, Any]:
        return action_gradient_accuracy(
            world_model,
            observations,
            actions,
            real_return,
            gamma=gamma,
            reward_scale=float(reward_norm.scale),
            reward_loc=float(reward_norm.loc),
        )

    return check
