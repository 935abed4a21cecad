"""Config keys that were renamed, and the upgrade of checkpoints that still use the old names.

A checkpoint stores the resolved config and the constructor specs of its models
(``{"world_model": {"type": "flow", "flow_steps": 2, ...}, "env": {"kwargs": {...}}}``), so a
key renamed in ``configs/`` is renamed in both when a checkpoint is loaded.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

__all__ = ["RENAMED_KEYS", "upgrade_checkpoint"]

#: Old dotted key -> new dotted key (``substeps`` meant two things: the flow integrator's step
#: count and the simulator's physics substeps).
RENAMED_KEYS: dict[str, str] = {
    "world_model.substeps": "world_model.flow_steps",
    "actor.substeps": "actor.flow_steps",
    "env.kwargs.substeps": "env.kwargs.sim_substeps",
}


def _rename(tree: MutableMapping[str, Any], old: str, new: str) -> None:
    *parents, leaf = old.split(".")
    node: Any = tree
    for part in parents:
        node = node.get(part) if isinstance(node, MutableMapping) else None
    if not isinstance(node, MutableMapping) or leaf not in node:
        return
    new_leaf = new.rpartition(".")[2]
    if new_leaf in node:
        raise ValueError(f"Checkpoint holds both {old} (its old name) and {new}; remove {old}.")
    node[new_leaf] = node.pop(leaf)


def upgrade_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """Renames the old keys of :data:`RENAMED_KEYS` in a checkpoint's specs and config, in place.

    Args:
        state: a loaded checkpoint; its ``"specs"`` and ``"config"`` entries, where present,
            are upgraded.

    Returns:
        ``state``, upgraded.

    Raises:
        ValueError: if an entry holds a key under both its old and its new name.

    Examples:
        >>> state = {"specs": {"world_model": {"type": "flow", "substeps": 4}}}
        >>> upgrade_checkpoint(state)["specs"]["world_model"]
        {'type': 'flow', 'flow_steps': 4}
    """
    for entry in ("specs", "config"):
        tree = state.get(entry)
        if isinstance(tree, MutableMapping):
            for old, new in RENAMED_KEYS.items():
                _rename(tree, old, new)
    return state
