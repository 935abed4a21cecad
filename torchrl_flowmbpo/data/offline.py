"""An offline dataset put into the online replay buffer, as PWM does when it starts from a
pretrained world model: the actor's start states and the world model's fine-tuning batches then
come from the offline data and the on-line data together.

The dataset's episodes keep their boundaries: their trajectory ids are moved below zero, where
the collector's ids (counted from zero) never reach, so a slice never joins an offline episode
to an on-line one.

Examples:
    >>> import tempfile, torch
    >>> from tensordict import TensorDict
    >>> from torchrl_flowmbpo.data import DatasetRecorder, make_slice_replay_buffer
    >>> path = tempfile.mkdtemp()
    >>> recorder = DatasetRecorder(
    ...     path, "demo", task="toy", env_kwargs={}, obs_dim=3, action_dim=2, num_envs=2,
    ...     capacity=20, source={"policy": "random"}, seed=0,
    ... )
    >>> batch = TensorDict({
    ...     "observation": torch.randn(2, 5, 3), "action": torch.rand(2, 5, 2),
    ...     ("next", "observation"): torch.randn(2, 5, 3), ("next", "reward"): torch.randn(2, 5, 1),
    ...     ("next", "done"): torch.zeros(2, 5, 1, dtype=torch.bool),
    ...     ("next", "terminated"): torch.zeros(2, 5, 1, dtype=torch.bool),
    ...     ("next", "truncated"): torch.zeros(2, 5, 1, dtype=torch.bool),
    ...     ("collector", "traj_ids"): torch.tensor([[0] * 5, [1] * 5]),
    ... }, [2, 5])
    >>> recorder.extend(batch)
    >>> recorder.commit()
    >>> buffer = make_slice_replay_buffer(100, 4)
    >>> add_offline_data(buffer, path, task="toy", obs_dim=3, action_dim=2, num_envs=2)
    10
    >>> buffer[:][("collector", "traj_ids")].unique().tolist()
    [-2, -1]
"""

from __future__ import annotations

import os

from torchrl.data import TensorDictReplayBuffer

from torchrl_flowmbpo.data.datasets import TRAJ_KEY, DatasetError, load_dataset

__all__ = ["add_offline_data"]


def add_offline_data(
    buffer: TensorDictReplayBuffer,
    path: str | os.PathLike,
    *,
    task: str,
    obs_dim: int,
    action_dim: int,
    num_envs: int,
) -> int:
    """Extends ``buffer`` with every committed transition of the dataset at ``path``.

    Args:
        buffer: the run's slice replay buffer (:func:`~torchrl_flowmbpo.data.
            make_slice_replay_buffer`); its 2-d storage keeps one column per env, so the
            dataset must have been recorded with as many envs as the run has.
        path: the dataset directory (:mod:`torchrl_flowmbpo.data.datasets`).

    Keyword Args:
        task: the run's task; the dataset must have been recorded on it.
        obs_dim: the task's observation size.
        action_dim: the task's action size.
        num_envs: the run's envs (the buffer's columns).

    Returns:
        The number of transitions added.

    Raises:
        DatasetError: for a dataset of another task, other dimensions or another env count,
            naming both values.
    """
    data, manifest = load_dataset(path)
    expected = {"task": task, "obs_dim": obs_dim, "action_dim": action_dim, "num_envs": num_envs}
    for field, value in expected.items():
        if manifest[field] != value:
            raise DatasetError(
                f"replay_buffer.offline_data={path} has {field}={manifest[field]!r}; "
                f"this run has {field}={value!r} (env.num_envs must equal the dataset's "
                "num_envs: the buffer keeps one column per env)."
            )
    ids = data[TRAJ_KEY]
    data[TRAJ_KEY] = ids - (int(ids.max()) + 1)
    buffer.extend(data)
    return data.numel()
