"""Does the world model rank behaviours as the simulator does?

From the same real start states, each behaviour acts in the real env; its actions are replayed
open loop in the world model from the encoded first observation, and the sums of raw rewards are
compared. A model that fits the replay data well on average can still rate a behaviour it has
not seen (a gait) below standing still, and then no actor update through it will find that
behaviour: a scalar reward head that rated falling above balancing on the cartpole, and Ant
models that rated a trot below standing still, did exactly that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_flowmbpo.diagnostics.common import pearson
from torchrl_flowmbpo.diagnostics.controllers import REFERENCE_CONTROLLERS

__all__ = [
    "Behaviour",
    "behaviour_probe",
    "deterministic_behaviour",
    "model_replay_rewards",
    "rank_agreement",
    "real_rollout",
    "reference_behaviours",
    "reference_probe",
]

#: Observations ``[N, obs_dim]`` to actions ``[N, action_dim]``.
Behaviour = Callable[[torch.Tensor], torch.Tensor]


def real_rollout(
    env: EnvBase, behaviour: Behaviour, steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(first observations [N, obs], actions [N, T, act], rewards [N, T])`` from a reset.

    Rewards after an episode's first ``terminated`` step are zeroed: the sum is what the
    episode earned, not what the auto-reset env earned afterwards.
    """
    td = env.reset()
    first = td.get("observation").clone()
    alive = torch.ones(first.shape[0], device=first.device)
    actions, rewards = [], []
    for _ in range(steps):
        action = behaviour(td.get("observation"))
        td.set("action", action)
        td = env.step(td)
        actions.append(action)
        rewards.append(td.get(("next", "reward")).reshape(-1) * alive)
        alive = alive * (~td.get(("next", "terminated")).reshape(-1)).float()
        td = env.step_mdp(td)
    return first, torch.stack(actions, 1), torch.stack(rewards, 1)


@torch.no_grad()
def model_replay_rewards(
    world_model: torch.nn.Module,
    first_observation: torch.Tensor,
    actions: torch.Tensor,
    *,
    reward_scale: float = 1.0,
    reward_loc: float = 0.0,
) -> torch.Tensor:
    """Raw rewards ``[N, T]`` of the open-loop replay, each weighted by the model's survival.

    Args:
        world_model: a world model (``encode``, ``reward``, ``continue_prob``, ``next``).
        first_observation: ``[N, obs_dim]`` real observations the replay starts from.
        actions: ``[N, T, action_dim]`` actions replayed in order.
        reward_scale: raw reward = model reward · scale + loc (the reward normaliser's units).
        reward_loc: see ``reward_scale``.
    """
    latent, survival, rewards = world_model.encode(first_observation), 1.0, []
    for t in range(actions.shape[1]):
        action = actions[:, t]
        raw = world_model.reward(latent, action).reshape(-1) * reward_scale + reward_loc
        rewards.append(raw * survival)
        survival = survival * world_model.continue_prob(latent, action).reshape(-1)
        latent = world_model.next(latent, action)
    return torch.stack(rewards, 1)


def rank_agreement(real: Sequence[float], model: Sequence[float]) -> float:
    """Share of behaviour pairs the model orders as the simulator does (ties count half).

    1 is the simulator's ranking, 0 its reverse; NaN with fewer than two behaviours.

    Examples:
        >>> rank_agreement([1.0, 2.0, 3.0], [10.0, 30.0, 20.0])
        0.6666666666666666
    """
    pairs = [(i, j) for i in range(len(real)) for j in range(i + 1, len(real))]
    if not pairs:
        return float("nan")
    score = 0.0
    for i, j in pairs:
        product = (real[i] - real[j]) * (model[i] - model[j])
        score += 1.0 if product > 0 else 0.5 if product == 0 else 0.0
    return score / len(pairs)


def deterministic_behaviour(policy: TensorDictModuleBase) -> Behaviour:
    """``policy``'s deterministic action for a batch of real observations (no gradient)."""

    def act(obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            return policy(TensorDict(observation=obs, batch_size=obs.shape[:1])).get("action")

    return act


def reference_behaviours(
    policy: TensorDictModuleBase,
    task: str,
    action_dim: int,
    *,
    generator: torch.Generator | None = None,
) -> dict[str, Behaviour]:
    """``zero``, ``random`` (uniform in [-1, 1]), ``policy`` (deterministic, closed loop on real
    observations) and the task's scripted controllers (``REFERENCE_CONTROLLERS[task]``).

    Controllers keep a clock: build fresh behaviours for every probe.
    """

    def uniform(obs: torch.Tensor) -> torch.Tensor:
        shape = (*obs.shape[:1], action_dim)
        return 2 * torch.rand(shape, generator=generator, device=obs.device) - 1

    behaviours: dict[str, Behaviour] = {
        "zero": lambda obs: torch.zeros(*obs.shape[:1], action_dim, device=obs.device),
        "random": uniform,
        "policy": deterministic_behaviour(policy),
    }
    controllers = REFERENCE_CONTROLLERS.get(task, {})
    behaviours.update({name: make() for name, make in controllers.items()})
    return behaviours


@torch.no_grad()
def behaviour_probe(
    world_model: torch.nn.Module,
    env: EnvBase,
    behaviours: Mapping[str, Behaviour],
    *,
    horizons: Sequence[int],
    seed: int,
    reward_scale: float = 1.0,
    reward_loc: float = 0.0,
) -> dict[str, Any]:
    """Real vs the model's open-loop sums of raw rewards of each behaviour, same start states.

    ``env.set_seed(seed)`` before every behaviour, so all start from the same resets.

    Returns:
        ``rows``: one dict per (behaviour, horizon) with ``behaviour``, ``horizon``, ``real`` and
        ``model`` (mean sums over the envs) and ``corr`` (their Pearson correlation over the
        envs); and, at the longest horizon, ``<behaviour>_real`` and ``<behaviour>_model`` and
        ``rank_agreement`` (:func:`rank_agreement` of the behaviours' mean sums).
    """
    if not behaviours or min(horizons) < 1:
        raise ValueError(
            f"behaviour_probe needs behaviours and horizons >= 1, got {list(behaviours)} and "
            f"{list(horizons)}"
        )
    horizons = sorted(set(horizons))
    rows, result = [], {}
    for name, behaviour in behaviours.items():
        env.set_seed(seed)
        first, actions, real = real_rollout(env, behaviour, horizons[-1])
        model = model_replay_rewards(
            world_model, first, actions, reward_scale=reward_scale, reward_loc=reward_loc
        )
        for h in horizons:
            real_sum, model_sum = real[:, :h].sum(1), model[:, :h].sum(1)
            rows.append(
                {
                    "behaviour": name,
                    "horizon": h,
                    "real": float(real_sum.mean()),
                    "model": float(model_sum.mean()),
                    "corr": pearson(real_sum, model_sum),
                }
            )
        result[f"{name}_real"], result[f"{name}_model"] = rows[-1]["real"], rows[-1]["model"]
    names = list(behaviours)
    result["rank_agreement"] = rank_agreement(
        [result[f"{n}_real"] for n in names], [result[f"{n}_model"] for n in names]
    )
    result["rows"] = rows
    return result


def reference_probe(
    world_model: torch.nn.Module,
    env: EnvBase,
    policy: TensorDictModuleBase,
    task: str,
    *,
    horizons: Sequence[int],
    seed: int,
    reward_scale: float = 1.0,
    reward_loc: float = 0.0,
    extra: Mapping[str, Behaviour] | None = None,
) -> dict[str, Any]:
    """:func:`behaviour_probe` of :func:`reference_behaviours` (and ``extra`` behaviours, e.g.
    another run's policy), random actions seeded by ``seed``.

    Every call with the same ``seed`` replays the same start states and the same random actions,
    so the fixed behaviours' real sums are comparable across a run's evaluations.
    """
    generator = torch.Generator(device=env.device).manual_seed(seed)
    behaviours = reference_behaviours(policy, task, env.action_spec.shape[-1], generator=generator)
    return behaviour_probe(
        world_model,
        env,
        {**behaviours, **(extra or {})},
        horizons=horizons,
        seed=seed,
        reward_scale=reward_scale,
        reward_loc=reward_loc,
    )
