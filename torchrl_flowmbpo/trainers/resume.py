"""The resume contract of a training run: which config changes a rerun in the same run directory
may make (:class:`~torchrl_flowmbpo.trainers.run_checkpointer.RunCheckpointer` refuses the
others, naming them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["RESUMABLE_CHANGES", "config_changes"]

#: Config keys (or key prefixes) a rerun may change when it resumes a run: how and how long it
#: runs, not what an update computes. Raising ``collector.total_frames`` extends a run.
RESUMABLE_CHANGES = ("threads", "device", "logger", "checkpoint", "collector.total_frames")

#: Mappings compared as one value: a task's keyword arguments are the user's, never a library
#: default, so one added or removed changes the task.
WHOLE_MAPPINGS = ("env.kwargs",)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and path not in WHOLE_MAPPINGS:
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = dict(value) if isinstance(value, Mapping) else value
    return out


def config_changes(
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    may_change: tuple[str, ...] = RESUMABLE_CHANGES,
) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (saved, current)}`` for the keys of both configs whose values differ.

    Keys under ``may_change`` are left out, and so are keys only one config has (options added
    or removed between versions of the library); ``env.kwargs`` is compared as a whole.

    Examples:
        >>> saved = {"seed": 0, "threads": 1, "algo": {"gamma": 0.99}}
        >>> config_changes(saved, {"seed": 1, "threads": 2, "algo": {"gamma": 0.99}})
        {'seed': (0, 1)}
    """
    old, new = _flatten(saved), _flatten(current)
    return {
        key: (old[key], new[key])
        for key in sorted(old.keys() & new.keys())
        if old[key] != new[key] and not any(key == k or key.startswith(f"{k}.") for k in may_change)
    }
