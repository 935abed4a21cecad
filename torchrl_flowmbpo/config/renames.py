"""Config keys that were renamed or added, and the upgrade of checkpoints written before.

A checkpoint stores the resolved config and the constructor specs of its models
(``{"world_model": {"type": "flow", "flow_steps": 2, ...}, "env": {"kwargs": {...}}}``), so a
key renamed in ``configs/`` is renamed in both when a checkpoint is loaded. A model spec
written before a key existed gets the value its model was built with (the constructor default
of that time), not today's default.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

__all__ = ["ADDED_KEYS", "RENAMED_KEYS", "upgrade_checkpoint"]

#: Old dotted key -> new dotted key (``substeps`` meant two things: the flow integrator's step
#: count and the simulator's physics substeps).
RENAMED_KEYS: dict[str, str] = {
    "world_model.substeps": "world_model.flow_steps",
    "actor.substeps": "actor.flow_steps",
    "env.kwargs.substeps": "env.kwargs.sim_substeps",
}

#: Spec key -> the value a model had before the key existed (both actors detached their input,
#: PWM's stop-gradient; the FlowActor's velocity net had PyTorch's initialisation).
ADDED_KEYS: dict[str, Any] = {
    "actor.detach_latent": True,
    "actor.velocity_init": "default",
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
    """Renames the old keys of :data:`RENAMED_KEYS` in a checkpoint's specs and config, and
    gives its model specs the :data:`ADDED_KEYS` they lack, in place (``velocity_init`` for a
    flow actor only).

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
    actor = (state.get("specs") or {}).get("actor")
    if isinstance(actor, MutableMapping):
        actor.setdefault("detach_latent", ADDED_KEYS["actor.detach_latent"])
        if actor.get("type") == "flow":
            actor.setdefault("velocity_init", ADDED_KEYS["actor.velocity_init"])
    return state
