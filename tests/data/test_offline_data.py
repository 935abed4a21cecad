"""add_offline_data: a dataset's transitions in the online slice buffer, episodes kept apart."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from torchrl_flowmbpo.data import (
    DatasetError,
    DatasetRecorder,
    add_offline_data,
    make_slice_replay_buffer,
    sample_slices,
)

TRAJ = ("collector", "traj_ids")


def transitions(num_envs: int, steps: int, ids: torch.Tensor, fill: float) -> TensorDict:
    done = torch.zeros(num_envs, steps, 1, dtype=torch.bool)
    return TensorDict(
        {
            "observation": torch.full((num_envs, steps, 3), fill),
            "action": torch.zeros(num_envs, steps, 2),
            ("next", "observation"): torch.full((num_envs, steps, 3), fill),
            ("next", "reward"): torch.zeros(num_envs, steps, 1),
            ("next", "done"): done,
            ("next", "terminated"): done,
            ("next", "truncated"): done,
            TRAJ: ids,
        },
        [num_envs, steps],
    )


@pytest.fixture
def dataset(tmp_path):
    """2 envs x 10 steps, two 5-step episodes per env (ids 0..3), observations all 1."""
    recorder = DatasetRecorder(
        tmp_path, "history", task="toy", env_kwargs={}, obs_dim=3, action_dim=2, num_envs=2,
        capacity=20, source={"policy": "random"}, seed=0,
    )  # fmt: skip
    ids = torch.arange(2).unsqueeze(1) * 2 + torch.arange(10) // 5
    recorder.extend(transitions(2, 10, ids, 1.0))
    recorder.commit()
    return tmp_path


def test_offline_episodes_stay_whole_beside_online_ones(dataset):
    buffer = make_slice_replay_buffer(100, 4)
    added = add_offline_data(buffer, dataset, task="toy", obs_dim=3, action_dim=2, num_envs=2)
    assert added == 20 and len(buffer) == 20
    assert sorted(buffer[:][TRAJ].unique().tolist()) == [-4, -3, -2, -1]
    # The collector's ids count from 0: on-line episode 0 follows offline episode -3 in env 0.
    buffer.extend(transitions(2, 6, torch.tensor([[0] * 6, [1] * 6]), 2.0))
    torch.manual_seed(0)
    slices = sample_slices(buffer, 500, 4)
    assert (slices[TRAJ] == slices[TRAJ][:, :1]).all()  # one episode per slice
    obs = slices["observation"][..., 0]
    assert ((obs == 1.0).all(1) | (obs == 2.0).all(1)).all()  # never offline and online mixed
    assert (obs[:, 0] == 2.0).any() and (obs[:, 0] == 1.0).any()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("task", {"task": "other"}),
        ("obs_dim", {"obs_dim": 4}),
        ("action_dim", {"action_dim": 1}),
        ("num_envs", {"num_envs": 4}),
    ],
)
def test_a_dataset_that_does_not_fit_the_run_is_refused_naming_both_values(dataset, field, kwargs):
    run = {"task": "toy", "obs_dim": 3, "action_dim": 2, "num_envs": 2, **kwargs}
    buffer = make_slice_replay_buffer(100, 4)
    with pytest.raises(DatasetError, match=f"has {field}=.*this run has {field}="):
        add_offline_data(buffer, dataset, **run)
    assert len(buffer) == 0
