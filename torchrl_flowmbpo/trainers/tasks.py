"""What a run's outputs call its task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["TASK_VARIANTS", "task_label"]

#: Tasks named by the config rather than by the simulator: ``label: (task, keyword arguments
#: that make it)``. ``env=cartpole_balance`` builds the ``cartpole`` task with ``start_angle=0``.
TASK_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "cartpole_balance": ("cartpole", {"start_angle": 0.0}),
}


def task_label(name: str, kwargs: Mapping[str, Any] | None = None) -> str:
    """The task as configured: ``"cartpole_balance"`` for the cartpole started upright, else
    the task name (``"cartpole"`` is the swing-up), as run folders, logs and evaluation rows
    name it.

    Examples:
        >>> task_label("cartpole", {"start_angle": 0.0}), task_label("cartpole")
        ('cartpole_balance', 'cartpole')
    """
    kwargs = dict(kwargs or {})
    for label, (task, defining) in TASK_VARIANTS.items():
        if name == task and all(k in kwargs and kwargs[k] == v for k, v in defining.items()):
            return label
    return name
