"""Value and return diagnostics: the critic against real returns, imagined against real returns.

Everything here is in the model's **normalised** reward units: real rewards are divided by
``reward_scale`` (``RewardNormalization.scale``; 1 with ``reward_norm: none``), which is what the
world model, the critic and ``actor/imagined_return`` use. All functions run under
``torch.no_grad()`` and return plain Python floats.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_flowmbpo.diagnostics.common import masked_mean, pearson
from torchrl_flowmbpo.modules.models.world_model import LatentWorldModel

__all__ = ["collect_rollouts", "critic_vs_returns", "exploitation_gap", "horizon_return_gap"]


@torch.no_grad()
def collect_rollouts(
    env: EnvBase,
    policy: TensorDictModuleBase,
    steps: int,
    *,
    exploration_type: ExplorationType = ExplorationType.RANDOM,
) -> TensorDictBase:
    """Closed-loop real-env rollouts ``[*env.batch_size, steps]`` with auto-reset.

    ``env.rollout(steps, policy, break_when_any_done=False)``: finished envs reset and go on, so
    a row holds consecutive episodes; ``("next", "done")`` / ``("next", "terminated")`` mark the
    ends. The policy acts on real observations (e.g. the encoder followed by the actor). RANDOM
    exploration by default: the critic estimates the value of the stochastic policy.
    """
    with set_exploration_type(exploration_type):
        return env.rollout(
            steps, policy, auto_reset=True, break_when_any_done=False, return_contiguous=True
        )


def _flags(td: TensorDictBase, key: NestedKey) -> torch.Tensor:
    return td.get(key).reshape(td.shape).bool()


@torch.no_grad()
def critic_vs_returns(
    critic: TensorDictModuleBase,
    world_model: LatentWorldModel,
    rollouts: TensorDictBase,
    *,
    gamma: float,
    reward_scale: float = 1.0,
    tail_tolerance: float = 0.01,
    observation_key: NestedKey = "observation",
    reward_key: NestedKey = ("next", "reward"),
    done_key: NestedKey = ("next", "done"),
    terminated_key: NestedKey = ("next", "terminated"),
    latent_key: NestedKey = "latent",
    value_key: NestedKey = "state_value",
) -> dict[str, Any]:
    """The critic's ``V(E(o_t))`` against the discounted real return-to-go of the same states.

    On real rollouts ``[N, T]`` of consecutive steps (``collect_rollouts``), with
    ``r_t = reward / reward_scale`` (normalised units, those of V), the return-to-go and the
    discount weight of its unobserved remainder ("tail") are computed backwards from
    ``G_T = 0``, ``tail_T = 1``:

    - terminated at t: ``G_t = r_t``, ``tail_t = 0`` (the return is complete);
    - truncated at t (``done`` without ``terminated``, a time limit): ``G_t = r_t``,
      ``tail_t = γ`` (what follows was not observed);
    - otherwise: ``G_t = r_t + γ G_{t+1}``, ``tail_t = γ tail_{t+1}``.

    No bootstrap is used (that would compare the critic with itself). A state is **kept** when
    ``tail_t <= tail_tolerance``: its episode terminates inside the window, or the window runs at
    least ``K = ceil(log(tol) / log γ)`` more steps (459 for γ = 0.99, tol = 0.01). Kept returns
    are exact up to a ``tail × |V|`` truncation.

    Args:
        critic: reads ``latent_key``, writes ``value_key`` (``VCritic``: min over members).
        world_model: its encoder gives ``z_t = E(o_t)``.
        rollouts: real steps ``[N, T]``.

    Keyword Args:
        gamma: discount γ (< 1 unless every kept state terminates in the window).
        reward_scale: divisor taking the env reward to the critic's units.
        tail_tolerance: largest unobserved discount weight of a kept state.
        observation_key, reward_key, done_key, terminated_key: input keys.
        latent_key, value_key: the critic's keys.

    Returns:
        ``bias`` = mean (V − G), ``corr`` = Pearson(V, G), ``mae`` = mean |V − G|,
        ``value_mean``, ``return_mean`` (over kept states; NaN when none is kept), ``count``
        (kept states), ``count_total`` (all states) and ``terminal_fraction`` (kept states whose
        episode terminates in the window).

    Examples:
        >>> from tensordict.nn import TensorDictModule
        >>> from torchrl_flowmbpo.modules.models import PWMWorldModel
        >>> wm = PWMWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> zero = TensorDictModule(lambda z: z.sum(-1, keepdim=True) * 0,
        ...                         in_keys=["latent"], out_keys=["state_value"])
        >>> flags = torch.zeros(1, 4, 1, dtype=torch.bool)
        >>> flags[0, 1] = True
        >>> data = TensorDict({"observation": torch.randn(1, 4, 4),
        ...     ("next", "reward"): torch.ones(1, 4, 1), ("next", "done"): flags,
        ...     ("next", "terminated"): flags}, batch_size=[1, 4])
        >>> out = critic_vs_returns(zero, wm, data, gamma=0.5)
        >>> out["return_mean"], out["bias"], out["count"]
        (1.25, -1.25, 2.0)
    """
    if rollouts.ndim != 2:
        raise ValueError(f"rollouts must be [N, T], got batch shape {tuple(rollouts.shape)}.")
    shape = rollouts.shape
    reward = rollouts.get(reward_key).reshape(shape).double() / reward_scale
    terminated = _flags(rollouts, terminated_key)
    done = _flags(rollouts, done_key) | terminated
    returns, tails = torch.zeros_like(reward), torch.zeros_like(reward)
    next_return = torch.zeros_like(reward[:, 0])
    next_tail = torch.ones_like(reward[:, 0])
    for t in range(shape[1] - 1, -1, -1):
        cont = (~done[:, t]).double()
        next_return = reward[:, t] + gamma * cont * next_return
        next_tail = torch.where(
            terminated[:, t], 0.0, torch.where(done[:, t], gamma, gamma * next_tail)
        )
        returns[:, t], tails[:, t] = next_return, next_tail
    keep = tails <= tail_tolerance
    obs = rollouts.get(observation_key)
    td = TensorDict({latent_key: world_model.encode(obs)}, batch_size=shape)
    value = critic(td).get(value_key).reshape(shape).double()
    count = int(keep.sum())
    return {
        "bias": masked_mean(value - returns, keep),
        "corr": pearson(value[keep], returns[keep]),
        "mae": masked_mean((value - returns).abs(), keep),
        "value_mean": masked_mean(value, keep),
        "return_mean": masked_mean(returns, keep),
        "count": float(count),
        "count_total": float(keep.numel()),
        "terminal_fraction": float((keep & (tails == 0)).sum()) / count if count else math.nan,
    }


def exploitation_gap(
    imagined_return: float,
    real_return_per_step: float,
    *,
    gamma: float,
    reward_scale: float = 1.0,
    horizon: int | None = None,
) -> dict[str, float]:
    """How far the actor's imagined return exceeds what its real per-step reward supports.

    The policy earns ``r̄ = real_return_per_step`` raw reward per real step (e.g.
    ``train/return_per_step``). Earned at every step, in normalised units, that is worth

    ``J_real = (r̄ / reward_scale) · W``,  with ``W = Σ_t γ^t`` over the steps ``imagined_return``
    covers: ``W = 1 / (1 − γ)`` for ``actor/imagined_return`` (H imagined steps plus the
    ``γ^H V(z_H)`` bootstrap, which stands for all later steps; ``horizon=None``), or
    ``W = (1 − γ^H) / (1 − γ)`` for an H-step imagined sum without bootstrap (``horizon=H``).

    - ``gap = J_imag − J_real`` (normalised units; > 0: imagination promises more than reality);
    - ``imagined_per_step = J_imag · reward_scale / W`` (raw reward per step that would justify
      the imagined return) and ``gap_per_step = imagined_per_step − r̄`` (raw units).

    ``J_real`` ignores terminations (a policy that falls earns less than ``r̄ W``), so with
    positive rewards the gap is a lower bound of the exploitation. Compare the same policy:
    average ``imagined_return`` over the iterations whose episodes ``r̄`` comes from.
    :func:`horizon_return_gap` measures the H-step part on the same start states instead.

    Examples:
        >>> out = exploitation_gap(300.0, 1.2, gamma=0.99, reward_scale=2.0)
        >>> round(out["real_return"], 6), round(out["gap"], 6), round(out["gap_per_step"], 6)
        (60.0, 240.0, 4.8)
    """
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}.")
    if horizon is None:
        weight = 1.0 / (1.0 - gamma)
    elif horizon >= 1:
        weight = (1.0 - gamma**horizon) / (1.0 - gamma)
    else:
        raise ValueError(f"horizon must be >= 1 or None, got {horizon}.")
    real = real_return_per_step / reward_scale * weight
    imagined_per_step = imagined_return * reward_scale / weight
    return {
        "gap": imagined_return - real,
        "imagined_return": float(imagined_return),
        "real_return": real,
        "imagined_per_step": imagined_per_step,
        "real_per_step": float(real_return_per_step),
        "gap_per_step": imagined_per_step - real_return_per_step,
    }


@torch.no_grad()
def horizon_return_gap(
    world_model: LatentWorldModel,
    actor: TensorDictModuleBase,
    rollouts: TensorDictBase,
    *,
    horizon: int,
    gamma: float,
    reward_scale: float = 1.0,
    use_continue: bool = True,
    exploration_type: ExplorationType = ExplorationType.RANDOM,
    observation_key: NestedKey = "observation",
    reward_key: NestedKey = ("next", "reward"),
    done_key: NestedKey = ("next", "done"),
    terminated_key: NestedKey = ("next", "terminated"),
    latent_key: NestedKey = "latent",
    action_key: NestedKey = "action",
) -> dict[str, Any]:
    """Imagined vs real H-step discounted reward from the same start states (no bootstrap).

    ``rollouts`` ``[N, T >= H]`` are closed-loop real steps of the **same** actor (e.g. the
    collector batch ``[num_envs, H]``, or :func:`collect_rollouts`). From each row's first
    observation o_0:

    - imagined (as in the actor loss, without its bootstrap): ``z_0 = E(o_0)``,
      ``a_t ~ π(z_t)``, ``J_imag = Σ_{t<H} γ^t Γ_t r̂_t`` with ``Γ_t = Π_{s<t} c_s``
      (``c ≡ 1`` without a termination head or with ``use_continue=False``);
    - real: ``J_real = Σ_{t<H} γ^t A_t r_t / reward_scale``, ``A_t = 1`` until the episode's
      termination (the terminating step still pays, like Γ_t).

    Rows truncated (time limit) before their last step are dropped: their real sum is cut short.
    Actions are sampled independently in both, so only averages (and roughly the correlation)
    are comparable. Imagined minus real isolates reward/termination exploitation over the
    horizon; the bootstrap's share is :func:`critic_vs_returns`.

    Returns:
        ``gap`` = mean J_imag − mean J_real, ``imagined_return``, ``real_return`` (means),
        ``corr`` = Pearson over rows, ``imagined_survival`` (mean Γ_H), ``real_survival``
        (fraction of rows not terminated within H) and ``count`` (rows kept).

    Examples:
        >>> from torchrl_flowmbpo.modules import GaussianActor
        >>> from torchrl_flowmbpo.modules.models import PWMWorldModel
        >>> wm = PWMWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> actor = GaussianActor(16, 2, hidden=(32,))
        >>> data = TensorDict({"observation": torch.randn(5, 3, 4),
        ...     ("next", "reward"): torch.ones(5, 3, 1),
        ...     ("next", "done"): torch.zeros(5, 3, 1, dtype=torch.bool),
        ...     ("next", "terminated"): torch.zeros(5, 3, 1, dtype=torch.bool)}, batch_size=[5, 3])
        >>> out = horizon_return_gap(wm, actor, data, horizon=3, gamma=0.5)
        >>> out["real_return"], out["gap"], out["count"]
        (1.75, -1.75, 5.0)
    """
    if rollouts.ndim != 2 or rollouts.shape[1] < horizon or horizon < 1:
        raise ValueError(
            f"horizon_return_gap expects [N, T] rollouts with T >= horizon={horizon} >= 1, "
            f"got batch shape {tuple(rollouts.shape)}."
        )
    batch = rollouts[:, :horizon]
    shape = batch.shape
    reward = batch.get(reward_key).reshape(shape).double() / reward_scale
    discount = gamma ** torch.arange(horizon, dtype=torch.float64, device=reward.device)
    terminated = _flags(batch, terminated_key)
    done = _flags(batch, done_key) | terminated
    ended_before = (torch.cumsum(done.long(), 1) - done.long()) > 0
    alive = (~ended_before).double()
    truncated = done & ~terminated & ~ended_before
    keep = ~truncated[:, :-1].any(1)
    real = (discount * alive * reward).sum(1)
    real_survival = ~(terminated & ~ended_before).any(1)

    wm = world_model
    latent = wm.encode(batch.get(observation_key)[:, 0])
    survival = torch.ones(shape[0], dtype=torch.float64, device=reward.device)
    imagined = torch.zeros_like(survival)
    use_continue = use_continue and wm.has_termination
    with set_exploration_type(exploration_type):
        for t in range(horizon):
            td = TensorDict({latent_key: latent}, batch_size=shape[:1])
            action = actor(td).get(action_key)
            imagined += discount[t] * survival * wm.reward(latent, action).reshape(-1).double()
            if use_continue:
                survival = survival * wm.continue_prob(latent, action).reshape(-1).double()
            latent = wm.next(latent, action)
    count = int(keep.sum())
    return {
        "gap": masked_mean(imagined - real, keep),
        "imagined_return": masked_mean(imagined, keep),
        "real_return": masked_mean(real, keep),
        "corr": pearson(imagined[keep], real[keep]),
        "imagined_survival": masked_mean(survival, keep),
        "real_survival": masked_mean(real_survival.double(), keep),
        "count": float(count),
    }
