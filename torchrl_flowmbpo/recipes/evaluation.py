"""Closed-loop evaluation on the real env with real rewards (algorithm.md §14)."""

from __future__ import annotations

import math

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

__all__ = ["evaluate_policy"]


@torch.no_grad()
def evaluate_policy(
    env: EnvBase,
    policy: TensorDictModuleBase,
    *,
    episodes: int,
    max_steps_per_episode: int = 1000,
    exploration_type: ExplorationType = ExplorationType.DETERMINISTIC,
) -> dict[str, float]:
    """Runs ``episodes`` whole episodes and returns raw-reward statistics.

    With ``n`` parallel envs each env runs ``ceil(episodes / n)`` whole episodes, so the sample
    is not biased toward short episodes (which finish first). Returns are sums of the real env
    reward; the policy acts on real observations (closed loop).

    Args:
        env: a batched env (``batch_size=[n]``) with ``done`` and ``truncated`` keys.
        policy: maps an env tensordict to ``"action"`` (e.g. encoder followed by actor).

    Keyword Args:
        episodes: episodes to evaluate (at least this many are run).
        max_steps_per_episode: upper bound used to stop a run that never finishes.
        exploration_type: DETERMINISTIC by default (tanh(μ) / the ODE from a_0 = 0).

    Returns:
        ``return_mean``, ``return_std``, ``length_mean``, ``length_std``, ``return_per_step``,
        ``time_limit_fraction``, ``episodes``, ``stands_still`` (1.0 if the length is ≈ the time
        limit and the return per step is below 2) and ``falls`` (1.0 if the mean length < 50).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}.")
    num_envs = env.batch_size.numel() if env.batch_size else 1
    quota = math.ceil(episodes / num_envs)
    returns: list[float] = []
    lengths: list[float] = []
    reached_limit: list[bool] = []
    running_return = torch.zeros(num_envs)
    running_length = torch.zeros(num_envs)
    finished = torch.zeros(num_envs, dtype=torch.long)
    td = env.reset()
    with set_exploration_type(exploration_type):
        for _ in range(quota * max_steps_per_episode):
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
                    finished[i] += 1
            running_return[done] = 0.0
            running_length[done] = 0.0
            td = next_td
            if bool((finished >= quota).all()):
                break
    if not returns:
        raise RuntimeError("No episode finished within the evaluation step limit.")
    ret, length = torch.tensor(returns), torch.tensor(lengths)
    per_step = float(ret.sum() / length.sum())
    limit = float(torch.tensor(reached_limit, dtype=torch.float32).mean())
    return {
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
