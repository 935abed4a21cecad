"""Atomic, pickle-free checkpoints.

A checkpoint is a nested dict of tensors and plain Python values (state dicts, optimiser
states, RNG states, counters, the resolved config, the model specs). It is written to a temporary
file in the same directory and renamed into place, so a crash never leaves a truncated file, and
it loads with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from torchrl_flowmbpo.config.renames import upgrade_checkpoint

__all__ = [
    "CHECKPOINT_PATTERN",
    "CheckpointError",
    "find_latest_checkpoint",
    "load_checkpoint",
    "load_run_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

#: File names of iteration checkpoints: ``checkpoint_<iteration>.pt``.
CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or lacks a required entry."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Writes ``state`` to ``path`` atomically (temporary file, fsync, rename).

    Args:
        state: the checkpoint; tensors and plain Python containers only.
        path: destination file.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Loads a checkpoint with ``weights_only=True``.

    Args:
        path: a checkpoint file, or a run directory (its latest checkpoint is loaded).
        required: top-level entries that must be present.

    Raises:
        CheckpointError: if nothing loadable is found or an entry is missing.
    """
    path = Path(path)
    if path.is_dir():
        latest = find_latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"No checkpoint_<iteration>.pt file under {path}.")
        path = latest
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"Cannot load checkpoint {path}: {err}") from err
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"Checkpoint {path} lacks the entries {missing}.")
    return upgrade_checkpoint(state)  # keys renamed since the checkpoint was written


def find_latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The ``checkpoint_<iteration>.pt`` with the highest iteration, searched recursively."""
    best: tuple[int, Path] | None = None
    for candidate in Path(directory).rglob("checkpoint_*.pt"):
        match = CHECKPOINT_PATTERN.match(candidate.name)
        if match and (best is None or int(match.group(1)) > best[0]):
            best = (int(match.group(1)), candidate)
    return None if best is None else best[1]


def resolve_checkpoint(path: Path) -> tuple[Path, Path]:
    """The checkpoint file and its run directory, for a file or a run-directory argument."""
    if path.is_dir():
        latest = find_latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"No checkpoint_<iteration>.pt file under {path}.")
        return latest.resolve(), path.resolve()
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {path} does not exist.")
    path = path.resolve()
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path, run_dir


def load_run_checkpoint(path: Path, required: tuple[str, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """``(checkpoint file, state)`` of a checkpoint file or of a run directory's latest.

    Raises:
        CheckpointError: if nothing loadable is there or an entry of ``required`` is missing.
    """
    path, _ = resolve_checkpoint(path)
    return path, load_checkpoint(path, required=required)
