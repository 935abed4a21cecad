"""Reading a run's checkpoints from tools: evaluation, probes, pretrained world models.

A run's checkpoints are TorchRL archives written by
:class:`~torchrl_flowmbpo.trainers.checkpointing.RunCheckpoints`. Tools read one by path or a run
directory's newest readable one, without changing the directory (a run may be writing it), and
every refusal is a :class:`CheckpointError` of one line that names the file and what is wrong:
missing, empty, truncated, another kind of file, a checkpoint of this package's earlier
``torch.save`` format, or a file holding code (the global that weights-only loading blocked).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from torchrl.checkpoint import Checkpoint

from torchrl_flowmbpo.serialization import (
    UnreadableFileError,
    blocked_global_reason,
    load_weights_only,
)
from torchrl_flowmbpo.trainers.checkpointing import (
    LEGACY_PATTERN,
    RunCheckpoints,
    read_checkpoint,
)

__all__ = [
    "CheckpointError",
    "find_latest_checkpoint",
    "load_checkpoint",
    "load_run_checkpoint",
    "resolve_checkpoint",
]

_MIGRATE = "python -m torchrl_flowmbpo.trainers.migrate"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message is one line naming the file and the reason."""


def _checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir


def find_latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest ``checkpoint-<step>.torchrl`` of a run directory (or checkpoint directory).

    Only that directory is read, never a sub-folder; the step comes from the name, so callers
    that trust it read the file (:func:`load_checkpoint` does).
    """
    candidates = RunCheckpoints(_checkpoint_dir(Path(directory))).candidates()
    return candidates[0] if candidates else None


def _legacy_message(path: Path) -> str:
    return (
        f"{path} is a checkpoint in the torch.save format of torchrl_flowmbpo before "
        f"torchrl.checkpoint archives; convert it with `{_MIGRATE} {path.parent}`."
    )


def _read_torch_file(path: Path) -> None:
    """Raises the one-line reason a ``.pt`` file is not a checkpoint."""
    try:
        content = load_weights_only(path)
    except UnreadableFileError as err:
        raise CheckpointError(str(err)) from err
    if isinstance(content, dict) and "modules" in content:
        raise CheckpointError(_legacy_message(path))
    kind = type(content).__name__
    raise CheckpointError(f"{path} holds a {kind}, not a torchrl_flowmbpo checkpoint.")


def _describe(path: Path, err: BaseException) -> str:
    for cause in (err, err.__cause__):
        blocked = cause is not None and blocked_global_reason(cause)
        if blocked:
            return f"{path} {blocked}; it is not loaded."
    if not Checkpoint.is_checkpoint(path):
        if path.stat().st_size == 0:
            return f"{path} is empty."
        return (
            f"{path} is not a torchrl_flowmbpo checkpoint (not a readable "
            "checkpoint-<step>.torchrl archive: truncated, or another kind of file)."
        )
    first = " ".join(str(err).split())[:200] or type(err).__name__
    return f"{path} cannot be read: {first}"


def _read(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {path} does not exist.")
    if path.suffix == ".pt":
        _read_torch_file(path)
    try:
        states, _ = read_checkpoint(path, ("run",))
    except Exception as err:  # torchrl, zipfile and tensordict raise many types
        raise CheckpointError(_describe(path, err)) from err
    state = states["run"]
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"Checkpoint {path} lacks the entries {missing}.")
    return state


def resolve_checkpoint(path: Path) -> tuple[Path, Path]:
    """The checkpoint file and its run directory, for a file or a run-directory argument.

    Raises:
        CheckpointError: nothing usable is there.
    """
    path = Path(path)
    if path.is_dir():
        latest = find_latest_checkpoint(path)
        if latest is None:
            folder = _checkpoint_dir(path)
            legacy = sorted(p for p in folder.iterdir() if LEGACY_PATTERN.match(p.name))
            if legacy:
                raise CheckpointError(_legacy_message(legacy[-1]))
            raise CheckpointError(f"No checkpoint-<step>.torchrl file in {path}.")
        return latest.resolve(), path.resolve()
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file {path} does not exist.")
    path = path.resolve()
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path, run_dir


def load_checkpoint(path: str | os.PathLike, *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The training state (``run`` component) of a checkpoint file or of a run's newest one.

    For a run directory, a newest checkpoint that cannot be read is skipped with a one-line
    warning (the directory is left as it is: a run may be using it).

    Args:
        path: a ``checkpoint-<step>.torchrl`` file or a run directory.
        required: entries the state must hold.

    Raises:
        CheckpointError: nothing usable is there (one line: the file and the reason).

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "checkpoint-000000000001.torchrl"
        >>> _ = path.write_text("hello")
        >>> try:
        ...     load_checkpoint(path)
        ... except CheckpointError as err:
        ...     print(str(err).replace(str(path), "FILE").split(" (")[0])
        FILE is not a torchrl_flowmbpo checkpoint
    """
    return load_run_checkpoint(Path(path), required)[1]


def load_run_checkpoint(path: Path, required: tuple[str, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """``(checkpoint file, state)`` of a checkpoint file or of a run directory's newest.

    Raises:
        CheckpointError: nothing usable is there, or an entry of ``required`` is missing.
    """
    path = Path(path)
    if not path.is_dir():
        return path, _read(resolve_checkpoint(path)[0], required)
    resolve_checkpoint(path)  # a one-line error if there is nothing to read
    error: CheckpointError | None = None
    for candidate in RunCheckpoints(_checkpoint_dir(path)).candidates():
        try:
            return candidate, _read(candidate, required)
        except CheckpointError as err:
            print(f"Warning: skipping {err}", file=sys.stderr)
            error = error or err
    raise error
