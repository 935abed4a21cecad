"""Closed-loop evaluation on the real env with real rewards: the periodic evaluation of a run and
the policy rebuilt from a checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_flowmbpo.modules import encoder_operator
from torchrl_flowmbpo.modules.builders import build_actor, build_world_model

__all__ = [
    "Evaluator",
    "eval_metrics",
    "evaluate_policy",
    "find_forward_velocity_index",
    "format_return",
    "load_policy",
    "make_policy",
]


def find_forward_velocity_index(env: EnvBase) -> int | None:
    """The ``forward_velocity_index`` of ``env`` or of the env it wraps, ``None`` if it has none.

    Wrappers (e.g. a ``TransformedEnv``) are followed through their ``base_env``, so the
    attribute of the task env (e.g. ``LocomotionEnv.forward_velocity_index``) is found however
    the task was wrapped.
    """
    while env is not None:
        index = getattr(env, "forward_velocity_index", None)
        if index is not None:
            return int(index)
        inner = getattr(env, "base_env", None)
        env = inner if inner is not env else None
    return None


def _check_index(env: EnvBase, index: int) -> None:
    width = env.observation_spec["observation"].shape[-1]
    if not 0 <= index < width:
        raise ValueError(
            f"forward_velocity_index must be in [0, {width - 1}] (the observation has {width} "
            f"components), got {index}."
        )


@torch.no_grad()
def evaluate_policy(
    env: EnvBase,
    policy: TensorDictModuleBase,
    *,
    episodes: int,
    max_steps_per_episode: int = 1000,
    exploration_type: ExplorationType = ExplorationType.DETERMINISTIC,
    forward_velocity_index: int | None = None,
    on_episode: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Runs ``episodes`` whole episodes and returns raw-reward statistics.

    With ``n`` parallel envs each env runs ``ceil(episodes / n)`` whole episodes, so the sample
    is not biased toward short episodes (which finish first). Returns are sums of the real env
    reward; the policy acts on real observations (closed loop).

    Args:
        env: a batched env (``batch_size=[n]``) with ``"observation"``, ``done`` and
            ``truncated`` keys.
        policy: maps an env tensordict to ``"action"`` (e.g. encoder followed by actor).

    Keyword Args:
        episodes: episodes to evaluate (at least this many are run).
        max_steps_per_episode: upper bound used to stop a run that never finishes.
        exploration_type: DETERMINISTIC by default (tanh(μ) / the ODE from a_0 = 0).
        forward_velocity_index: component of ``"observation"`` holding the forward velocity
            (e.g. ``LocomotionEnv.forward_velocity_index``, see
            :func:`find_forward_velocity_index`); ``None`` (default) leaves it out.
        on_episode: called once per counted episode as it ends (e.g. a progress bar's
            ``update``).

    Returns:
        ``return_mean``, ``return_std``, ``length_mean``, ``length_std``, ``return_per_step``,
        ``time_limit_fraction``, ``episodes``, ``stands_still`` (1.0 if the length is ≈ the time
        limit and the return per step is below 2) and ``falls`` (1.0 if the mean length < 50).
        With ``forward_velocity_index``, also ``forward_velocity``: the mean of
        ``observation[..., forward_velocity_index]`` over every step of the counted episodes,
        read from the pre-step observation (the one the step's reward is computed from), i.e.
        Σ_episodes Σ_t v_t / Σ_episodes length, weighted by steps like ``return_per_step``.

    Raises:
        ValueError: if ``episodes < 1``, or if ``forward_velocity_index`` is not in
            ``[0, observation width - 1]``.
        RuntimeError: if no episode finished within ``ceil(episodes / n) *
            max_steps_per_episode`` steps.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}.")
    track_velocity = forward_velocity_index is not None
    if track_velocity:
        _check_index(env, forward_velocity_index)
    num_envs = env.batch_size.numel() if env.batch_size else 1
    quota = math.ceil(episodes / num_envs)
    returns: list[float] = []
    lengths: list[float] = []
    reached_limit: list[bool] = []
    running_return = torch.zeros(num_envs)
    running_length = torch.zeros(num_envs)
    # Σ_t v_t of each env's current episode, and over the counted episodes.
    running_velocity = torch.zeros(num_envs, dtype=torch.float64)
    velocity_sum = 0.0
    finished = torch.zeros(num_envs, dtype=torch.long)
    td = env.reset()
    with set_exploration_type(exploration_type):
        for _ in range(quota * max_steps_per_episode):
            if track_velocity:
                velocity = td.get("observation")[..., forward_velocity_index]
                running_velocity += velocity.reshape(num_envs).cpu()
            td = policy(td)
            td, next_td = env.step_and_maybe_reset(td)
            step = td.get("next")
            running_return += step.get("reward").reshape(num_envs).cpu()
            running_length += 1
            done = step.get("done").reshape(num_envs).cpu()
            truncated = step.get("truncated").reshape(num_envs).cpu()
            for i in done.nonzero().flatten().tolist():
                if finished[i] < quota:
                    returns.append(float(running_return[i]))
                    lengths.append(float(running_length[i]))
                    reached_limit.append(bool(truncated[i]))
                    velocity_sum += float(running_velocity[i])
                    finished[i] += 1
                    if on_episode is not None:
                        on_episode()
            running_return[done] = 0.0
            running_length[done] = 0.0
            running_velocity[done] = 0.0
            td = next_td
            if bool((finished >= quota).all()):
                break
    if not returns:
        raise RuntimeError("No episode finished within the evaluation step limit.")
    ret, length = torch.tensor(returns), torch.tensor(lengths)
    per_step = float(ret.sum() / length.sum())
    limit = float(torch.tensor(reached_limit, dtype=torch.float32).mean())
    stats = {
        "return_mean": float(ret.mean()),
        "return_std": float(ret.std(unbiased=False)),
        "length_mean": float(length.mean()),
        "length_std": float(length.std(unbiased=False)),
        "return_per_step": per_step,
        "time_limit_fraction": limit,
        "episodes": float(len(returns)),
        "stands_still": float(limit > 0.9 and per_step < 2.0),
        "falls": float(length.mean() < 50),
    }
    if track_velocity:
        stats["forward_velocity"] = velocity_sum / sum(lengths)
    return stats


def format_return(stats: Mapping[str, float]) -> str:
    """``"return -451.0 ± 12.3 (s.e.)"``: the mean with its standard error, so that an
    8-episode number does not look as certain as a 100-episode one."""
    n = int(stats["episodes"])
    if n < 2:
        return f"return {stats['return_mean']:.1f} (1 episode: no s.e.)"
    # return_std is the population std: the standard error is std / sqrt(n - 1).
    return (
        f"return {stats['return_mean']:.1f} ± {stats['return_std'] / math.sqrt(n - 1):.1f} (s.e.)"
    )


class Evaluator:
    """Deterministic evaluation on a separate env seeded ``seed + 1000``, built on first use.

    The env is reseeded before every evaluation, so every evaluation (and ``evaluate.py``) starts
    from the same states. Tasks with a ``forward_velocity_index`` (the locomotion tasks) also get
    the mean forward velocity, ``forward_velocity``.

    Args:
        make_env: ``make_env(num_envs, seed) -> env`` building the task with its trackers.
        cfg: the run config (``seed``, ``eval.episodes``, ``eval.num_envs``).
        policy: the closed-loop policy on real observations.
    """

    def __init__(self, make_env: Callable[[int, int], Any], cfg: DictConfig, policy) -> None:
        self._make_env, self.policy = make_env, policy
        self.seed, self.episodes = cfg.seed + 1000, cfg.eval.episodes
        self.num_envs = min(cfg.eval.num_envs, cfg.eval.episodes)
        self._env = None

    @property
    def env(self):
        """The evaluation env (built on first use)."""
        if self._env is None:
            self._env = self._make_env(self.num_envs, self.seed)
        return self._env

    def __call__(self) -> dict[str, float]:
        self.env.set_seed(self.seed)
        return evaluate_policy(
            self.env,
            self.policy,
            episodes=self.episodes,
            max_steps_per_episode=self.env.base_env.episode_length,
            forward_velocity_index=find_forward_velocity_index(self.env),
        )


def eval_metrics(eval_stats: dict[str, float]) -> dict[str, float]:
    """The headline ``eval/*`` metrics of an evaluation: return, episode length and, for a task
    with one (the locomotion tasks), the mean forward velocity."""
    metrics = {
        "eval/return": eval_stats["return_mean"],
        "eval/episode_length": eval_stats["length_mean"],
    }
    if "forward_velocity" in eval_stats:
        metrics["eval/forward_velocity"] = eval_stats["forward_velocity"]
    return metrics


def make_policy(world_model, actor) -> TensorDictSequential:
    """Closed-loop policy on real observations: z_t = E(o_t), then the actor."""
    return TensorDictSequential(encoder_operator(world_model), actor)


def load_policy(state: dict[str, Any], env, device: str):
    """The closed-loop policy (encoder then actor) rebuilt from the checkpoint's specs."""
    specs = state["specs"]
    obs_dim = env.observation_spec["observation"].shape[-1]
    action_dim = env.action_spec.shape[-1]
    world_model = build_world_model(specs["world_model"], obs_dim, action_dim)
    actor = build_actor(specs["actor"], world_model.latent_dim, action_dim)
    world_model.load_state_dict(state["modules"]["world_model"])
    actor.load_state_dict(state["modules"]["actor"])
    return make_policy(world_model.to(device).eval(), actor.to(device).eval())
