"""A run's checkpoints on :mod:`torchrl.checkpoint`: rotation, a manifest, fallback on bad files.

Each checkpoint is one TorchRL archive, ``<run dir>/checkpoints/checkpoint-<step>.torchrl``
(:class:`torchrl.checkpoint.Checkpoint` in ``"archive"`` format), written to a staging path and
renamed into place, then fsynced: a kill at any point leaves either the previous set of
checkpoints or the new one, and at worst a hidden staging file that :meth:`RunCheckpoints.
remove_leftovers` deletes at the next start. Its components are plain state dicts stored as
TensorDict memmaps plus a JSON schema (no pickle anywhere, so a crafted file cannot run code):

* ``run``: the training state (modules, optimisers, LR schedules, counters, learning curve, the
  model specs and the resolved config), the dict that :func:`read_checkpoint` returns;
* ``rng``: the process's Python, NumPy and torch RNG states and the environments' generators;
* ``replay_buffer``: the replay buffer's state, when it fits ``max_buffer_mb``.

The manifest records the step, the package's and TorchRL's versions, the resolved config and the
evaluation return the checkpoint was taken at. :class:`torchrl.checkpoint.CheckpointRotation`
keeps the last ``keep_last`` checkpoints and the best by evaluation return.

Discovery reads the checkpoint directory itself, never a sub-folder, and trusts a file only
after loading it: a newest checkpoint that cannot be read, is truncated, is not one of ours,
holds non-finite weights or whose contents disagree with its name is moved to
``checkpoints/set_aside/`` (never deleted) with a one-line warning, and the next newest is tried.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torchrl.checkpoint import (
    Checkpoint,
    CheckpointRotation,
    GlobalRNGState,
    StateDictCheckpointAdapter,
)

import torchrl_flowmbpo
from torchrl_flowmbpo.config.renames import upgrade_checkpoint
from torchrl_flowmbpo.serialization import blocked_global_reason

__all__ = [
    "LEGACY_PATTERN",
    "SET_ASIDE",
    "CheckpointSchedule",
    "LegacyCheckpointError",
    "NonFiniteStateError",
    "RunCheckpoints",
    "capture_rng",
    "non_finite_entries",
    "read_checkpoint",
    "restore_rng",
    "state_digest",
    "state_nbytes",
]

#: The checkpoint files of earlier versions of this package: one ``torch.save`` dict each.
LEGACY_PATTERN = re.compile(r"^checkpoint_(\d+)\.pt$")
#: The rotation's file names: ``checkpoint-<12-digit step>.torchrl``.
_PATTERN = re.compile(r"^checkpoint-(\d+)\.torchrl$")
#: Where bad checkpoints are moved to (inside the checkpoint directory, never read back).
SET_ASIDE = "set_aside"
#: Checkpoints from this size on (a large replay buffer) announce their load on stderr: it takes
#: seconds (about 0.2 s for the default run's 12 MB on a 2-core CPU).
LOAD_MESSAGE_BYTES = 64 * 2**20
#: Hidden files that TorchRL's atomic writes leave behind when a write is killed.
_LEFTOVER = re.compile(r"^\..+\.(stage|archive|backup|delete)-[0-9a-f]{32}$|^\..+\.tmp$")


class LegacyCheckpointError(RuntimeError):
    """A checkpoint directory holds checkpoints in this package's earlier format."""


class NonFiniteStateError(ValueError):
    """A state holds NaN or infinite tensors; the message names them."""


class _State:
    """A state-dict component backed by a plain dict: what a checkpoint reads into and writes."""

    def __init__(self, state: Mapping[str, Any] | None = None) -> None:
        self.state = state

    def state_dict(self) -> Mapping[str, Any]:
        return self.state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.state = state


def _tensors(tree: Any, prefix: str = "") -> Iterable[tuple[str, torch.Tensor]]:
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            yield from _tensors(value, f"{prefix}.{index}")


def non_finite_entries(state: Mapping[str, Any]) -> list[str]:
    """The dotted names of the floating-point tensors of ``state`` holding NaN or inf.

    Examples:
        >>> non_finite_entries({"a": torch.ones(2), "b": {"w": torch.tensor([1.0, float("nan")])}})
        ['b.w']
    """
    return [
        name
        for name, tensor in _tensors(state)
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def state_nbytes(state: Any) -> int:
    """Bytes of the tensors of a (nested) state dict.

    Examples:
        >>> state_nbytes({"w": torch.zeros(4), "x": [torch.zeros(2, dtype=torch.int64)]})
        32
    """
    return sum(t.numel() * t.element_size() for _, t in _tensors(state))


def state_digest(states: Mapping[str, Any]) -> str:
    """A BLAKE2 digest of every tensor's name, dtype, shape and bytes in ``states``.

    TorchRL's archives carry no checksum of their payloads, and a tensor payload cut short reads
    back as zeros; the digest recorded in the manifest at save catches that on load.

    Examples:
        >>> a = {"run": {"w": torch.ones(3)}}
        >>> state_digest(a) == state_digest({"run": {"w": torch.ones(3)}})
        True
        >>> state_digest(a) == state_digest({"run": {"w": torch.tensor([1.0, 1.0, 0.0])}})
        False
    """
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in _tensors(states):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def capture_rng(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The process's RNG states (Python, NumPy, torch) and those of ``generators``.

    Examples:
        >>> g = torch.Generator().manual_seed(3)
        >>> state = capture_rng({"env": g})
        >>> x = torch.rand(1, generator=g); restore_rng(state, {"env": g})
        >>> bool(torch.rand(1, generator=g) == x)
        True
    """
    state = {"global": GlobalRNGState().state_dict()}
    state["generators"] = {name: g.get_state() for name, g in (generators or {}).items()}
    return state


def restore_rng(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Restores what :func:`capture_rng` captured (generators absent from ``state`` are left)."""
    GlobalRNGState().load_state_dict(state["global"])
    for name, generator in (generators or {}).items():
        if name in state["generators"]:
            generator.set_state(state["generators"][name].cpu())


def read_checkpoint(
    path: str | os.PathLike, components: Iterable[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads a checkpoint's components without live objects: ``(states, manifest)``.

    Args:
        path: a ``checkpoint-<step>.torchrl`` archive.
        components: the components to read (default: all of them; ``("run",)`` for the
            training state alone, which skips a large replay buffer).

    Returns:
        ``{component: state dict}`` (the ``run`` state with renamed config keys upgraded) and
        the manifest (its ``metadata`` holds ``step``, ``config``, ``versions``, ...).

    Raises:
        torchrl.checkpoint.CheckpointError: the file is not a readable TorchRL checkpoint.
        OSError: the file is missing or unreadable.
    """
    manifest = Checkpoint.manifest(path)
    names = list(manifest["components"] if components is None else components)
    checkpoint = Checkpoint(format="archive")
    holders = {name: _State() for name in names}
    for name, holder in holders.items():
        checkpoint.register(name, holder, adapter=StateDictCheckpointAdapter())
    checkpoint.load(path)
    states = {name: holder.state for name, holder in holders.items()}
    if "run" in states:
        upgrade_checkpoint(states["run"])  # keys renamed since the checkpoint was written
    return states, manifest


def _package_metadata() -> dict[str, str]:
    return {"name": "torchrl_flowmbpo", "version": torchrl_flowmbpo.__version__}


class _Rotation(CheckpointRotation):
    """TorchRL's rotation, accepting checkpoints taken before the first evaluation.

    The best checkpoint is chosen among those that recorded an evaluation return; one written
    earlier (or whose return was not finite) simply has no metric.
    """

    def _validate_metric(self, metadata: Mapping[str, Any]) -> None:
        if self.keep_best is not None and self.keep_best[0] in metadata:
            super()._validate_metric(metadata)


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class RunCheckpoints:
    """The checkpoints of one run directory: save with rotation, resume from the newest valid.

    Args:
        directory: the checkpoint directory (``<run dir>/checkpoints``).

    Keyword Args:
        keep_last: checkpoints kept besides the best (>= 1).
        keep_best: also keep the checkpoint with the highest evaluation return.
        warn: where one-line warnings go (a set-aside file, a skipped replay buffer).

    Examples:
        >>> import tempfile
        >>> checkpoints = RunCheckpoints(Path(tempfile.mkdtemp()), keep_last=2)
        >>> for step in (1, 2, 3):
        ...     _ = checkpoints.save({"run": {"w": torch.ones(2) * step}}, step=step)
        >>> [p.name for p in checkpoints.candidates()]
        ['checkpoint-000000000003.torchrl', 'checkpoint-000000000002.torchrl']
        >>> path, states, manifest = checkpoints.load_newest_valid()
        >>> states["run"]["w"].tolist(), manifest["metadata"]["step"]
        ([3.0, 3.0], 3)
    """

    metric = "eval_return"

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep_last: int = 3,
        keep_best: bool = True,
        warn: Callable[[str], None] = _warn,
    ) -> None:
        self.directory = Path(directory)
        self.rotation = _Rotation(
            self.directory,
            keep_last=keep_last,
            keep_best=(self.metric, "max") if keep_best else None,
        )
        self.warn = warn

    def save(
        self,
        states: Mapping[str, Mapping[str, Any]],
        *,
        step: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> Path:
        """Writes ``states`` (``{component: state dict}``) as the checkpoint of ``step``.

        Args:
            states: the components; ``run`` is the training state.
            step: the checkpoint's step (the run's iteration); names the file.
            metadata: recorded in the manifest (JSON values: the resolved config, frames,
                ``eval_return``, ``finished``, ...).

        Returns:
            The checkpoint's path.

        Raises:
            NonFiniteStateError: a tensor of the ``run`` state is NaN or infinite: nothing is
                written, so the newest checkpoint stays a good one.
        """
        # The training state only: a replay buffer's unwritten rows are uninitialised memory.
        bad = non_finite_entries(states.get("run", {}))
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise NonFiniteStateError(f"non-finite values in {shown}; checkpoint not written")
        meta = dict(metadata or {})
        value = meta.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            meta.pop(self.metric, None)  # no evaluation yet: not a candidate for the best
        meta.update(
            step=step,
            package=_package_metadata(),
            digests={name: state_digest(state) for name, state in states.items()},
        )
        checkpoint = Checkpoint(format="archive")
        for name, state in states.items():
            checkpoint.register(name, _State(state), adapter=StateDictCheckpointAdapter())
        path = self.rotation.save(checkpoint, step=step, metadata=meta)
        _fsync(path)
        _fsync(self.directory)
        return path

    def candidates(self) -> list[Path]:
        """This directory's checkpoint archives by name, newest step first (no sub-folders)."""
        if not self.directory.is_dir():
            return []
        found = [
            (int(match.group(1)), path)
            for path in self.directory.iterdir()
            if (match := _PATTERN.match(path.name)) and path.is_file()
        ]
        return [path for _, path in sorted(found, reverse=True)]

    def check_format(self) -> None:
        """Raises :class:`LegacyCheckpointError` if the directory holds only old-format files."""
        if not self.directory.is_dir() or self.candidates():
            return
        legacy = sorted(p.name for p in self.directory.iterdir() if LEGACY_PATTERN.match(p.name))
        if legacy:
            raise LegacyCheckpointError(
                f"{self.directory} holds {legacy[-1]}, a checkpoint in the torch.save format of "
                "torchrl_flowmbpo before torchrl.checkpoint archives (checkpoint-<step>.torchrl); "
                "convert it with `python -m torchrl_flowmbpo.trainers.migrate "
                f"{self.directory}` or start a new run directory."
            )

    def load_newest_valid(
        self,
        components: Iterable[str] | None = None,
        validate: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    ) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
        """Reads the newest checkpoint that is sound, setting aside every newer one.

        A checkpoint is sound when its manifest and components read, its ``run`` state has only
        finite tensors, its manifest's step matches its name and ``validate(states, manifest)``
        (if given) returns without raising ``ValueError``.

        Args:
            components: the components to read (default: all).
            validate: extra checks on a checkpoint that read.

        Returns:
            ``(path, states, manifest)`` or None if no sound checkpoint is there.

        Raises:
            LegacyCheckpointError: only checkpoints of the earlier format are there.
        """
        self.check_format()
        for path in self.candidates():
            size = path.stat().st_size
            if size >= LOAD_MESSAGE_BYTES:
                print(f"Loading {path} ({size / 2**20:,.0f} MB) ...", file=sys.stderr, flush=True)
            try:
                states, manifest = read_checkpoint(path, components)
                _check_contents(path, states, manifest)
                if validate is not None:
                    validate(states, manifest)
            except Exception as err:  # any failure to read or validate: try the next one
                # The warning names the file once, so the reason drops its full path.
                self.set_aside(path, _one_line(err).replace(str(path.absolute()), "it"))
                continue
            return path, states, manifest
        return None

    def set_aside(self, path: Path, reason: str) -> Path:
        """Moves a bad checkpoint to ``set_aside/`` (kept for inspection) with a warning."""
        folder = self.directory / SET_ASIDE
        folder.mkdir(exist_ok=True)
        target = folder / path.name
        if target.exists():
            target = folder / f"{path.name}.{uuid.uuid4().hex[:8]}"
        os.replace(path, target)
        self.warn(f"Warning: set aside {path.name} ({reason}); moved to {target}.")
        return target

    def remove_leftovers(self) -> list[Path]:
        """Deletes the staging files of writes that were killed; returns them.

        Only call it while holding the run's lock: a live writer's staging file looks the same.
        """
        if not self.directory.is_dir():
            return []
        removed = [p for p in self.directory.iterdir() if _LEFTOVER.match(p.name)]
        for path in removed:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return removed


class CheckpointSchedule:
    """When a run checkpoints: every ``every_iterations`` iterations or ``every_minutes`` of
    wall-clock since the last checkpoint, whichever comes first.

    The wall-clock bound protects a run whose iteration interval is longer than the run (or than
    the time a cluster lets it run): it is never unprotected for more than ``every_minutes``.

    Args:
        every_iterations: iterations between checkpoints (>= 1).
        every_minutes: minutes between checkpoints (> 0; ``math.inf``: iterations only).
        clock: seconds, monotonic (tests pass a fake one).

    Examples:
        >>> now = [0.0]
        >>> schedule = CheckpointSchedule(100, 5.0, clock=lambda: now[0])
        >>> schedule.due(7)
        False
        >>> now[0] = 301.0
        >>> schedule.due(8)
        True
        >>> schedule.saved(); schedule.due(9), schedule.due(100)
        (False, True)
    """

    def __init__(
        self,
        every_iterations: int,
        every_minutes: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_iterations, self.every_s = every_iterations, every_minutes * 60.0
        self.clock = clock
        self.last = clock()

    def due(self, iteration: int) -> bool:
        """Whether the run should checkpoint after ``iteration``."""
        return iteration % self.every_iterations == 0 or self.clock() - self.last >= self.every_s

    def saved(self) -> None:
        """Records that a checkpoint was just written."""
        self.last = self.clock()


def _check_contents(path: Path, states: Mapping[str, Any], manifest: Mapping[str, Any]) -> None:
    """Raises ValueError unless ``states`` are what this package saved as ``path``."""
    step = int(_PATTERN.match(path.name).group(1))
    metadata = manifest["metadata"]
    if metadata.get("step") != step:
        raise ValueError(f"its contents are step {metadata.get('step')}, its name says {step}")
    bad = non_finite_entries(states.get("run", {}))
    if bad:
        raise ValueError(f"it holds non-finite values ({', '.join(bad[:3])})")
    digests = metadata.get("digests", {})
    changed = [name for name, state in states.items() if digests.get(name) != state_digest(state)]
    if changed:
        raise ValueError(f"its {', '.join(changed)} payload is not the one saved (digest)")


def _one_line(err: BaseException) -> str:
    for cause in (err, err.__cause__):
        blocked = cause is not None and blocked_global_reason(cause)
        if blocked:
            return blocked  # never torch's advice to load the file unsafely
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _fsync(path: Path) -> None:
    # Durable against a power loss too, not only a killed process: the rename is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
