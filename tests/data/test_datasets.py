"""Offline datasets: round trip, resume semantics, slices within episodes, the held-out split."""

from __future__ import annotations

import json

import pytest
import torch
from tensordict import TensorDict

from torchrl_flowmbpo.data import (
    DATASET_KEYS,
    DatasetError,
    DatasetRecorder,
    held_out_split,
    load_dataset,
    make_slice_buffer,
    read_manifest,
)

NUM_ENVS, OBS, ACT = 4, 3, 2


def recorder(path, part="history", capacity=400, obs_dim=OBS):
    return DatasetRecorder(
        path,
        part,
        task="toy",
        env_kwargs={"episode_length": 7},
        obs_dim=obs_dim,
        action_dim=ACT,
        num_envs=NUM_ENVS,
        capacity=capacity,
        source={"policy": "random", "checkpoint": None},
        seed=3,
    )


class ToyCollector:
    """Collector-like batches: env e's episodes last 3 + e steps; the observation holds
    (global time, env, step in episode) so a test can see where each row came from."""

    def __init__(self, steps: int = 5) -> None:
        self.steps = steps
        self.t = 0
        self.step_in_episode = torch.zeros(NUM_ENVS, dtype=torch.long)
        self.traj_ids = torch.arange(NUM_ENVS)
        self.next_id = NUM_ENVS

    def batch(self) -> TensorDict:
        rows = []
        for _ in range(self.steps):
            lengths = 3 + torch.arange(NUM_ENVS)
            done = self.step_in_episode + 1 == lengths
            obs = torch.stack(
                [
                    torch.full((NUM_ENVS,), float(self.t)),
                    torch.arange(NUM_ENVS).float(),
                    self.step_in_episode.float(),
                ],
                -1,
            )
            rows.append(
                TensorDict(
                    {
                        "observation": obs,
                        "action": torch.rand(NUM_ENVS, ACT),
                        ("next", "observation"): obs + 1,
                        ("next", "reward"): obs[:, :1] * 0.1,
                        ("next", "done"): done.unsqueeze(-1),
                        ("next", "terminated"): done.unsqueeze(-1),
                        ("next", "truncated"): torch.zeros(NUM_ENVS, 1, dtype=torch.bool),
                        ("next", "episode_reward"): torch.zeros(NUM_ENVS, 1),
                        ("collector", "traj_ids"): self.traj_ids.clone(),
                    },
                    [NUM_ENVS],
                )
            )
            self.t += 1
            self.step_in_episode = torch.where(done, 0, self.step_in_episode + 1)
            for env in done.nonzero().flatten().tolist():
                self.traj_ids[env] = self.next_id
                self.next_id += 1
        return torch.stack(rows, 1)


def recorded(path, batches: int) -> TensorDict:
    """A committed dataset of ``batches`` toy batches, loaded."""
    rec, collector = recorder(path), ToyCollector()
    for _ in range(batches):
        rec.extend(collector.batch())
    rec.commit()
    return load_dataset(path)[0]


def test_round_trip_keys_shapes_manifest(tmp_path):
    rec, collector = recorder(tmp_path), ToyCollector()
    batches = [collector.batch() for _ in range(3)]
    for batch in batches:
        rec.extend(batch)
    rec.commit()
    data, manifest = load_dataset(tmp_path)
    assert data.shape == (NUM_ENVS, 15)
    assert set(data.keys(include_nested=True, leaves_only=True)) == set(DATASET_KEYS)
    expected = torch.cat(batches, 1)
    for key in DATASET_KEYS:
        torch.testing.assert_close(data[key], expected[key], rtol=0, atol=0)
    assert manifest == read_manifest(tmp_path)
    assert (manifest["task"], manifest["obs_dim"], manifest["action_dim"]) == ("toy", OBS, ACT)
    assert manifest["env_kwargs"] == {"episode_length": 7}
    assert manifest["num_envs"] == NUM_ENVS and manifest["versions"]["torchrl"]
    (part,) = manifest["parts"]
    assert part["frames"] == 60 and part["seed"] == 3 and part["source"]["policy"] == "random"
    # Distinct ids over 15 steps: env e runs episodes of 3 + e steps: 5 + 4 + 3 + 3.
    assert part["episodes"] == 15


def test_uncommitted_rows_are_dropped_and_resumed_ids_are_new(tmp_path):
    rec, collector = recorder(tmp_path), ToyCollector()
    rec.extend(collector.batch())
    rec.commit()
    rec.extend(collector.batch())  # written after the last commit: a resume discards it
    resumed = recorder(tmp_path)
    assert resumed.frames == 20
    fresh = ToyCollector()  # a resumed run's collector numbers its episodes from 0 again
    resumed.extend(fresh.batch())
    resumed.commit()
    data, manifest = load_dataset(tmp_path)
    assert data.shape == (NUM_ENVS, 10) and manifest["parts"][0]["frames"] == 40
    first, second = data[:, :5]["collector", "traj_ids"], data[:, 5:]["collector", "traj_ids"]
    assert int(second.min()) == int(first.max()) + 1
    assert data[:, 5:]["observation"][..., 0].eq(torch.arange(5).float()).all()


def record_two_parts(path) -> None:
    """Parts "history" and "noisy", 5 rows each."""
    for part in ("history", "noisy"):
        rec = recorder(path, part)
        rec.extend(ToyCollector().batch())
        rec.commit()


def test_parts_concatenate_with_distinct_episode_ids(tmp_path):
    record_two_parts(tmp_path)
    data, manifest = load_dataset(tmp_path)
    assert [p["name"] for p in manifest["parts"]] == ["history", "noisy"]
    assert data.shape == (NUM_ENVS, 10)
    ids = data["collector", "traj_ids"]
    assert not set(ids[:, :5].unique().tolist()) & set(ids[:, 5:].unique().tolist())
    only, _ = load_dataset(tmp_path, ["noisy"])
    assert only.shape == (NUM_ENVS, 5) and int(only["collector", "traj_ids"].min()) == 0


def test_max_frames_keeps_the_start_of_each_part(tmp_path):
    record_two_parts(tmp_path)
    full, _ = load_dataset(tmp_path)
    early, _ = load_dataset(tmp_path, max_frames=3 * NUM_ENVS)
    assert early.shape == (NUM_ENVS, 6)  # 3 rows of each part
    assert torch.equal(early["observation"][:, :3], full["observation"][:, :3])
    assert torch.equal(early["observation"][:, 3:], full["observation"][:, 5:8])
    with pytest.raises(ValueError, match="max_frames=3 keeps less than one row of the 4 env"):
        load_dataset(tmp_path, max_frames=3)


def test_slices_never_cross_an_episode_boundary(tmp_path):
    data = recorded(tmp_path, 6)
    torch.manual_seed(0)
    buffer = make_slice_buffer(data, slice_len=3, batch_size=3 * 200)
    slices = buffer.sample().reshape(200, 3)
    ids = slices["collector", "traj_ids"]
    assert (ids == ids[:, :1]).all()
    obs = slices["observation"]
    # Consecutive rows of one env and one episode; no slice ends past a terminal row.
    assert (obs[:, 1:, 0] - obs[:, :-1, 0]).eq(1).all()
    assert (obs[..., 1] == obs[:, :1, 1]).all()
    assert (obs[:, 1:, 2] - obs[:, :-1, 2]).eq(1).all()
    assert not slices["next", "done"][:, :-1].any()
    # Env 0's episodes are exactly 3 long: its slices are whole episodes.
    env0 = obs[obs[:, 0, 1] == 0]
    assert len(env0) > 0 and env0[:, 0, 2].eq(0).all()


def test_held_out_split_is_disjoint_by_episode(tmp_path):
    data = recorded(tmp_path, 4)
    train, held_out = held_out_split(data, 1)
    assert train.shape == (3, 20) and held_out.shape == (1, 20)
    train_ids = set(train["collector", "traj_ids"].unique().tolist())
    held_ids = set(held_out["collector", "traj_ids"].unique().tolist())
    assert held_ids and not train_ids & held_ids
    assert len(train_ids | held_ids) == len(data["collector", "traj_ids"].unique())
    with pytest.raises(ValueError, match=r"held_out_envs=4 must be in \[1, 3\]"):
        held_out_split(data, 4)


def test_mismatched_dims_overflow_and_capacity_errors(tmp_path):
    rec = recorder(tmp_path, capacity=40)
    rec.extend(ToyCollector().batch())
    rec.commit()
    with pytest.raises(DatasetError, match="obs_dim=3; cannot record obs_dim=5"):
        recorder(tmp_path, obs_dim=5)
    with pytest.raises(DatasetError, match="created for 40 frames; 80 do not fit"):
        recorder(tmp_path, capacity=80)
    rec.extend(ToyCollector().batch())
    with pytest.raises(DatasetError, match="holds 40 of 40 frames"):
        rec.extend(ToyCollector().batch())
    with pytest.raises(DatasetError, match=r"must be \[num_envs=4, T\]; got \(3, 5\)"):
        rec.extend(ToyCollector().batch()[:3])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["format"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="format 99"):
        read_manifest(tmp_path)
