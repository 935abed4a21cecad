"""Hook stages of the training loops, named as :class:`torchrl.trainers.Trainer` names them.

Our loops are not TorchRL ``Trainer`` subclasses (CONTRIBUTING.md, "Layout", says why); they keep
its registration API, ``register_op(stage, op)``, and its stage names where a stage means the
same thing, so that a hook reads like a TorchRL hook and could move to a TorchRL ``Trainer``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["HOOK_STAGES", "HookedLoop"]

#: Stages and when they run in one iteration of a loop. ``batch_process``, ``post_optim``,
#: ``post_steps_log`` and ``shutdown`` are TorchRL's stages; ``warm_up`` and ``post_eval`` are
#: ours (TorchRL's ``Trainer`` has no one-off warm-up after the random frames, and no evaluation
#: of its own).
HOOK_STAGES = {
    "batch_process": "on the fresh batch (SHAC's: its rollout), before a replay buffer sees it",
    "warm_up": "once, after the world model's warm-up and before the first actor step",
    "post_optim": "after the iteration's optimisation steps, with its metrics",
    "post_eval": "after an evaluation during training, with the iteration's metrics",
    "post_steps_log": "with the iteration's metrics, before they are logged",
    "shutdown": "once, when the loop ends",
}


class HookedLoop:
    """A training loop with TorchRL-style hooks: ``register_op(stage, op)``.

    Every op of a stage is called in registration order as ``op(*args)`` with the stage's
    arguments (see each loop's docstring); a ``dict`` returned by an op is merged into the
    iteration's metrics where the stage passes them.

    Examples:
        >>> loop = HookedLoop()
        >>> loop.register_op("post_steps_log", lambda metrics: {"extra": 1.0})
        >>> metrics = {"loss": 0.5}
        >>> loop.call_hooks("post_steps_log", metrics, merge_into=metrics)
        >>> metrics
        {'loss': 0.5, 'extra': 1.0}
    """

    def __init__(self) -> None:
        self._ops: dict[str, list[Callable[..., Any]]] = {stage: [] for stage in HOOK_STAGES}

    def register_op(self, dest: str, op: Callable[..., Any]) -> None:
        """Appends ``op`` to the hooks of stage ``dest``.

        Raises:
            ValueError: for a stage not in :data:`HOOK_STAGES`.
        """
        if dest not in self._ops:
            raise ValueError(f"Unknown hook stage {dest!r}; allowed: {sorted(self._ops)}.")
        self._ops[dest].append(op)

    def call_hooks(self, dest: str, *args: Any, merge_into: dict | None = None) -> None:
        """Calls the hooks of ``dest``; merges returned dicts into ``merge_into``."""
        for op in self._ops[dest]:
            out = op(*args)
            if merge_into is not None and isinstance(out, dict):
                merge_into.update(out)
