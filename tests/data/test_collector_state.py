"""``collector_state`` / ``load_collector_state``: a collector rebuilt on a fresh env and
restored collects the batches the captured one would have, bit for bit, with episodes cut by the
batch boundaries."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torchrl.collectors import Collector
from torchrl.envs import Compose, RewardSum, StepCounter, TransformedEnv

from torchrl_flowmbpo.data import collector_state, load_collector_state, make_collector
from torchrl_flowmbpo.envs.locomotion import make_env

#: 7-step episodes, 5 steps per batch: every batch boundary cuts episodes in progress.
NUM_ENVS, STEPS_PER_BATCH, EPISODE = 3, 5, 7


def _collector(task_kwargs: dict[str, Any], seed: int) -> Collector:
    """3 batches over a fresh env: random frames for the first batch, then a noisy linear
    policy (both draw from torch's RNG)."""
    base = make_env("cartpole", num_envs=NUM_ENVS, seed=seed, episode_length=EPISODE, **task_kwargs)
    env = TransformedEnv(base, Compose(StepCounter(), RewardSum()))

    def act(observation: torch.Tensor) -> torch.Tensor:
        noise = 0.3 * torch.randn(*observation.shape[:-1], 1)
        return (observation[..., 1:2] - observation[..., 4:5] + noise).clamp(-1.0, 1.0)

    policy = TensorDictModule(act, in_keys=["observation"], out_keys=["action"])
    frames = NUM_ENVS * STEPS_PER_BATCH
    return make_collector(
        env, policy, frames_per_batch=frames, total_frames=3 * frames, init_random_frames=frames
    )


def _read_back(tree: Any) -> Any:
    """What a checkpoint gives back: TensorDicts as nested dicts, tensors copied."""
    if isinstance(tree, (TensorDictBase, dict)):
        return {key: _read_back(value) for key, value in tree.items()}
    return tree.clone() if isinstance(tree, torch.Tensor) else tree


def _assert_equal(actual: TensorDictBase, expected: TensorDictBase) -> None:
    assert set(actual.keys(True, True)) == set(expected.keys(True, True))
    for key, value in expected.items(True, True):
        assert torch.equal(actual[key], value), key


@pytest.mark.parametrize("task_kwargs", [{}, {"start_angle": 0.0}], ids=["swing_up", "balance"])
def test_a_restored_collector_collects_the_same_batches(task_kwargs: dict[str, Any]) -> None:
    torch.manual_seed(0)
    straight = _collector(task_kwargs, seed=0)
    expected = [batch.clone() for batch in straight]
    assert len(expected) == 3

    torch.manual_seed(0)
    first = _collector(task_kwargs, seed=0)
    batches = iter(first)
    _assert_equal(next(batches), expected[0])
    state, rng = _read_back(collector_state(first)), torch.get_rng_state()
    first.shutdown()

    # Another seed and RNG draws in between: only the restored state may matter.
    torch.manual_seed(123)
    resumed = _collector(task_kwargs, seed=7)
    load_collector_state(resumed, state)
    torch.set_rng_state(rng)
    rest = [batch.clone() for batch in resumed]
    assert len(rest) == 2
    for actual, wanted in zip(rest, expected[1:], strict=True):
        _assert_equal(actual, wanted)
    # The boundaries cut episodes: the second batch starts inside them.
    assert (expected[1]["step_count"][:, 0] > 0).all()


def test_a_state_of_counters_only_restores_the_counters_and_starts_new_trajectories() -> None:
    torch.manual_seed(0)
    first = _collector({}, seed=0)
    batch = next(iter(first))
    counters = {k: v for k, v in collector_state(first).items() if k in ("frames", "iter")}
    counters["traj_pool"] = first.state_dict()["traj_pool"]
    resumed = _collector({}, seed=0)
    load_collector_state(resumed, counters)
    assert resumed.state_dict()["frames"] == batch.numel()
    new_ids = resumed._carrier["collector", "traj_ids"]
    assert new_ids.min() > batch["collector", "traj_ids"].max()
