"""Converts the checkpoints of earlier versions of this package to TorchRL checkpoint archives.

Earlier versions wrote one ``torch.save`` dict per checkpoint, ``checkpoint_<iteration>.pt``;
:func:`migrate_legacy_checkpoint` writes the ``checkpoint-<iteration>.torchrl`` archive that a
resume and the tools read, beside the old file (which is kept)::

    python -m torchrl_flowmbpo.trainers.migrate <run dir>/checkpoints
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from torchrl_flowmbpo.config.renames import upgrade_checkpoint
from torchrl_flowmbpo.serialization import UnreadableFileError, load_weights_only
from torchrl_flowmbpo.trainers.checkpointing import (
    LEGACY_PATTERN,
    NonFiniteStateError,
    RunCheckpoints,
)

__all__ = ["migrate_legacy_checkpoint"]


def migrate_legacy_checkpoint(path: str | os.PathLike) -> Path:
    """Converts an old ``checkpoint_<N>.pt`` into a ``checkpoint-<N>.torchrl`` beside it.

    The old file holds the ``run`` state only (no replay buffer, torch RNG only): a resume from
    the converted checkpoint refills the buffer. The old file is kept.

    Raises:
        UnreadableFileError: the file cannot be read weights-only.
        ValueError: its name is not ``checkpoint_<N>.pt``.
    """
    path = Path(path)
    match = LEGACY_PATTERN.match(path.name)
    if match is None:
        raise ValueError(f"{path} is not named checkpoint_<iteration>.pt.")
    state = upgrade_checkpoint(load_weights_only(path))
    metadata = {"config": state.get("config", {}), "migrated_from": path.name}
    return RunCheckpoints(path.parent, keep_last=1_000_000, keep_best=False).save(
        {"run": state}, step=int(match.group(1)), metadata=metadata
    )


if __name__ == "__main__":  # python -m torchrl_flowmbpo.trainers.migrate <checkpoint dir>
    try:
        for old in sorted(Path(sys.argv[1]).glob("checkpoint_*.pt")):
            print(f"{old} -> {migrate_legacy_checkpoint(old)}")
    except (IndexError, UnreadableFileError, ValueError, NonFiniteStateError) as error:
        sys.exit(f"usage: python -m torchrl_flowmbpo.trainers.migrate <dir>: {error}")
