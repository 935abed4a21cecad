"""Offline datasets: collector batches recorded into memory-mapped TorchRL storages.

A dataset is a directory::

    PATH/manifest.json  task, env kwargs, dims, num_envs, package versions, one entry per part
    PATH/<part>/        a TorchRL replay-buffer dump (``TensorDictReplayBuffer.dumps``) whose
                        storage is a ``LazyMemmapStorage(ndim=2)`` of ``[time, num_envs]`` rows

A *part* is what one source wrote: the whole history of a training run, or rollouts of a
checkpointed policy with action noise. Rows are TorchRL's transition layout: ``"observation"``,
``"action"``, ``("next", "observation" | "reward" | "done" | "terminated" | "truncated")`` and
``("collector", "traj_ids")``; each part's trajectory ids are unique within it (a recorder
reopened after a resume offsets the new collector's ids past the stored ones), and
:func:`load_dataset` offsets each part's ids past the previous parts'.

A recorder writes every batch into the memory map at once but *commits* (dumps the buffer's
length and cursor and updates the manifest) only when asked: a training script commits when it
checkpoints, so a run resumed from its latest checkpoint finds the dataset at the same frame
count and overwrites what it wrote after it.

Loading gives the collector layout ``[num_envs, T]``; :func:`held_out_split` holds out whole env
columns (so whole episodes, from every stage of the run) and :func:`make_slice_buffer` wraps a
split in the ``SliceSampler`` replay buffer of the online pipeline, so ``WorldModelLoss`` sees
the same ``[B, H]`` slices.

Examples:
    >>> import tempfile, torch
    >>> from tensordict import TensorDict
    >>> path = tempfile.mkdtemp()
    >>> recorder = DatasetRecorder(
    ...     path, "demo", task="toy", env_kwargs={}, obs_dim=3, action_dim=2, num_envs=4,
    ...     capacity=40, source={"policy": "random"}, seed=0,
    ... )
    >>> ids = torch.arange(4).view(4, 1, 1).expand(4, 5, 1)
    >>> batch = TensorDict({
    ...     "observation": torch.randn(4, 5, 3), "action": torch.rand(4, 5, 2),
    ...     ("next", "observation"): torch.randn(4, 5, 3), ("next", "reward"): torch.randn(4, 5, 1),
    ...     ("next", "done"): torch.zeros(4, 5, 1, dtype=torch.bool),
    ...     ("next", "terminated"): torch.zeros(4, 5, 1, dtype=torch.bool),
    ...     ("next", "truncated"): torch.zeros(4, 5, 1, dtype=torch.bool),
    ...     ("collector", "traj_ids"): ids.squeeze(-1).clone(),
    ... }, [4, 5])
    >>> recorder.extend(batch)
    >>> recorder.commit()
    >>> data, manifest = load_dataset(path)
    >>> data.shape, manifest["parts"][0]["frames"], manifest["parts"][0]["episodes"]
    (torch.Size([4, 5]), 20, 4)
    >>> train, held_out = held_out_split(data, 1)
    >>> buffer = make_slice_buffer(train, slice_len=2, batch_size=6)
    >>> buffer.sample().reshape(3, 2).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import (
    LazyMemmapStorage,
    LazyTensorStorage,
    SliceSampler,
    TensorDictReplayBuffer,
)
from torchrl.envs import Transform

__all__ = [
    "DATASET_KEYS",
    "DatasetError",
    "DatasetRecorder",
    "held_out_split",
    "load_dataset",
    "make_slice_buffer",
    "read_manifest",
]

#: Entries recorded per transition; episode trackers and the policy's own outputs stay out.
DATASET_KEYS = (
    "observation",
    "action",
    ("next", "observation"),
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
    ("next", "truncated"),
    ("collector", "traj_ids"),
)
TRAJ_KEY = ("collector", "traj_ids")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
#: Manifest entries every part of a dataset must agree on.
SHARED_FIELDS = ("task", "env_kwargs", "obs_dim", "action_dim", "num_envs")


class DatasetError(ValueError):
    """A dataset is missing, malformed, or does not match what is written into or read from it."""


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the dataset at ``path``.

    Raises:
        DatasetError: if ``path`` holds no manifest or one of another format version.
    """
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise DatasetError(f"{path} is not a dataset: it has no {MANIFEST}.")
    manifest = json.loads(file.read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise DatasetError(
            f"{file} has format {manifest.get('format')!r}; this package reads format "
            f"{FORMAT_VERSION}."
        )
    return manifest


def _write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    # Written beside and renamed into place: a crash never leaves a truncated manifest.
    partial = path / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial, path / MANIFEST)


class DatasetRecorder:
    """Writes a source's collector batches into one part of a dataset (created if needed).

    Args:
        path: the dataset directory.
        part: the part's name (a sub-directory); an existing part is reopened at its committed
            length, so a resumed run appends where its checkpoint left it.

    Keyword Args:
        task: the task name (``torchrl_flowmbpo.envs.make_env``).
        env_kwargs: the task's keyword arguments.
        obs_dim: observation size.
        action_dim: action size.
        num_envs: parallel envs of every batch (the storage's second dimension).
        capacity: the most frames the part can hold (its memory map's size; sparse on disk).
        source: what wrote the part, e.g. ``{"policy": "sac", "run_dir": ...}``.
        seed: the source's seed.

    Raises:
        DatasetError: if the existing dataset's task, env kwargs, dims or ``num_envs`` differ,
            or a reopened part was created with a smaller capacity.
        ValueError: for a non-positive ``num_envs`` or a ``capacity`` below one batch row.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        part: str,
        *,
        task: str,
        env_kwargs: Mapping[str, Any],
        obs_dim: int,
        action_dim: int,
        num_envs: int,
        capacity: int,
        source: Mapping[str, Any],
        seed: int,
    ) -> None:
        if num_envs < 1 or capacity < num_envs:
            raise ValueError(
                f"num_envs={num_envs} must be >= 1 and capacity={capacity} >= num_envs."
            )
        self.path = Path(path)
        self.part = part
        self.num_envs = num_envs
        self.capacity = capacity
        shared = {
            "task": task,
            "env_kwargs": dict(env_kwargs),
            "obs_dim": obs_dim,
            "action_dim": action_dim,
            "num_envs": num_envs,
        }
        if (self.path / MANIFEST).is_file():
            self.manifest = read_manifest(self.path)
            for field in SHARED_FIELDS:
                # JSON round trip: compare like with like (tuples become lists).
                if json.loads(json.dumps(shared[field])) != self.manifest[field]:
                    raise DatasetError(
                        f"dataset {self.path} has {field}={self.manifest[field]!r}; cannot "
                        f"record {field}={shared[field]!r} into it."
                    )
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self.manifest = {
                "format": FORMAT_VERSION,
                **shared,
                "versions": {
                    name: version(name) for name in ("torchrl_flowmbpo", "torchrl", "torch")
                },
                "parts": [],
            }
        self.entry = {
            "name": part,
            "frames": 0,
            "episodes": 0,
            "capacity": capacity,
            "source": dict(source),
            "seed": seed,
        }
        part_dir = self.path / part
        self.buffer = TensorDictReplayBuffer(
            storage=LazyMemmapStorage(
                capacity, ndim=2, scratch_dir=part_dir / "storage", existsok=True
            )
        )
        self._offset = 0
        committed = [p for p in self.manifest["parts"] if p["name"] == part]
        if committed and committed[0]["frames"]:
            # The memory map keeps the size it was created with.
            if committed[0]["capacity"] < capacity:
                raise DatasetError(
                    f"part {part!r} of {self.path} was created for {committed[0]['capacity']} "
                    f"frames; {capacity} do not fit: record into a new part."
                )
            self.buffer.loads(part_dir)
            # A resumed collector numbers its trajectories from 0 again.
            self._offset = int(self._stored()[TRAJ_KEY].max()) + 1

    @property
    def frames(self) -> int:
        """Frames in the part (committed or not)."""
        return len(self.buffer)

    def _stored(self) -> TensorDictBase:
        """The written rows, ``[time, num_envs]``."""
        return self.buffer.storage._storage[: self.frames // self.num_envs]

    def extend(self, batch: TensorDictBase) -> None:
        """Writes a collector batch of shape ``[num_envs, T]`` (not yet committed).

        Raises:
            DatasetError: if the batch's leading dim is not ``num_envs`` or it would overflow
                the part's capacity (a ring buffer would silently overwrite the oldest data).
        """
        if batch.ndim != 2 or batch.shape[0] != self.num_envs:
            raise DatasetError(
                f"a recorded batch must be [num_envs={self.num_envs}, T]; got {tuple(batch.shape)}."
            )
        if self.frames + batch.numel() > self.capacity:
            raise DatasetError(
                f"part {self.part!r} holds {self.frames} of {self.capacity} frames; a batch of "
                f"{batch.numel()} does not fit (record it with a larger capacity)."
            )
        data = batch.select(*DATASET_KEYS).to("cpu").clone()
        data[TRAJ_KEY] += self._offset
        self.buffer.extend(data)

    def commit(self) -> None:
        """Makes everything written so far durable: dumps the buffer and updates the manifest."""
        if not self.frames:
            return
        self.buffer.dumps(self.path / self.part)
        self.entry["frames"] = self.frames
        self.entry["episodes"] = int(self._stored()[TRAJ_KEY].unique().numel())
        parts = [p for p in self.manifest["parts"] if p["name"] != self.part]
        self.manifest["parts"] = [*parts, self.entry]
        _write_manifest(self.path, self.manifest)


def load_dataset(
    path: str | os.PathLike, parts: list[str] | None = None, max_frames: int | None = None
) -> tuple[TensorDict, dict[str, Any]]:
    """Every committed row of a dataset (or of the named parts), in memory, ``[num_envs, T]``.

    Parts are concatenated in time in the order given (default: the manifest's order), each
    part's trajectory ids offset past the previous parts' so that no two episodes share one.
    ``max_frames`` keeps each part's first frames only (a cut in time: of a training run's
    history, its random and early stages); an episode running at the cut ends there, as the
    episodes in progress at the end of a recording do.

    Args:
        path: the dataset directory.
        parts: the part names to load (default: all).
        max_frames: the frames kept of each part, from its start (default: all).

    Returns:
        The data (``DATASET_KEYS``, env-major as a collector batch) and the manifest.

    Raises:
        DatasetError: for a missing dataset, an unknown part, or a dataset with no frames.
        ValueError: for ``max_frames`` below one row of every env column.
    """
    manifest = read_manifest(path)
    num_envs = manifest["num_envs"]
    if max_frames is not None and max_frames < num_envs:
        raise ValueError(
            f"max_frames={max_frames} keeps less than one row of the {num_envs} env columns; "
            f"use at least {num_envs} (or null: every frame)."
        )
    known = [p["name"] for p in manifest["parts"]]
    names = known if parts is None else list(parts)
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        raise DatasetError(f"dataset {path} has parts {known}; asked for {names}.")
    chunks, offset = [], 0
    for name in names:
        frames = next(p["frames"] for p in manifest["parts"] if p["name"] == name)
        frames = frames if max_frames is None else min(frames, max_frames)
        rows = TensorDict.load_memmap(Path(path) / name / "storage")[: frames // num_envs]
        rows = rows.select(*DATASET_KEYS).clone()  # in memory, off the file
        rows[TRAJ_KEY] += offset
        offset = int(rows[TRAJ_KEY].max()) + 1
        chunks.append(rows)
    # The storage is time-major ([T, num_envs]); the collector layout is env-major.
    return torch.cat(chunks, 0).transpose(0, 1).contiguous(), manifest


def held_out_split(data: TensorDictBase, held_out_envs: int) -> tuple[TensorDict, TensorDict]:
    """Splits ``[num_envs, T]`` data into training and held-out env columns.

    An episode lives in one env column, so the split is by episode, and each side holds
    episodes from every stage of the recording (random, early, late policy).

    Args:
        data: recorded data, env-major.
        held_out_envs: the last env columns held out.

    Raises:
        ValueError: unless ``0 < held_out_envs < num_envs``.
    """
    if not 0 < held_out_envs < data.shape[0]:
        raise ValueError(
            f"held_out_envs={held_out_envs} must be in [1, {data.shape[0] - 1}] "
            f"(the data has {data.shape[0]} env columns)."
        )
    return data[:-held_out_envs], data[-held_out_envs:]


def make_slice_buffer(
    data: TensorDictBase,
    *,
    slice_len: int,
    batch_size: int,
    transform: Transform | None = None,
) -> TensorDictReplayBuffer:
    """A replay buffer of ``data`` (``[num_envs, T]``) sampling slices that stay in one episode.

    The storage and sampler of the online pipeline (:func:`make_slice_replay_buffer`): a 2-d
    ``LazyTensorStorage`` and ``SliceSampler(traj_key=("collector", "traj_ids"),
    strict_length=True)``; ``sample().reshape(-1, slice_len)`` gives ``[B, slice_len]`` slices.

    Args:
        data: the transitions, env-major as a collector batch.

    Keyword Args:
        slice_len: rows per slice (H in the world-model loss).
        batch_size: rows per sample (a multiple of ``slice_len``).
        transform: applied to samples (e.g. the reward normaliser).
    """
    if slice_len < 1 or batch_size % slice_len:
        raise ValueError(
            f"batch_size={batch_size} must be a positive multiple of slice_len={slice_len}."
        )
    buffer = TensorDictReplayBuffer(
        storage=LazyTensorStorage(data.numel(), ndim=2),
        sampler=SliceSampler(slice_len=slice_len, traj_key=TRAJ_KEY, strict_length=True),
        batch_size=batch_size,
        transform=transform,
    )
    buffer.extend(data)
    return buffer
