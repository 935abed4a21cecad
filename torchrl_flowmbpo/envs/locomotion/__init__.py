"""Newton tasks as batched TorchRL envs: locomotion (Ant, Anymal, Humanoid) and a cartpole.

Importing this package does not import ``newton`` or ``warp``: they load when an env is built.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

import torch
from torchrl.envs import EnvBase

from torchrl_flowmbpo.envs.locomotion.ant import AntEnv
from torchrl_flowmbpo.envs.locomotion.anymal import AnymalEnv
from torchrl_flowmbpo.envs.locomotion.base import LocomotionEnv
from torchrl_flowmbpo.envs.locomotion.cartpole import CartPoleEnv
from torchrl_flowmbpo.envs.locomotion.humanoid import HumanoidEnv

__all__ = [
    "TASKS",
    "AntEnv",
    "AnymalEnv",
    "CartPoleEnv",
    "HumanoidEnv",
    "LocomotionEnv",
    "make_env",
    "task_kwarg_types",
    "task_kwargs",
]

#: Task name -> env class.
TASKS: dict[str, type[EnvBase]] = {
    "ant": AntEnv,
    "anymal": AnymalEnv,
    "cartpole": CartPoleEnv,
    "humanoid": HumanoidEnv,
}

# Set by make_env itself, so not accepted in **task_kwargs.
_FACTORY_ARGS = ("num_envs", "device", "seed")


def task_kwargs(name: str) -> tuple[str, ...]:
    """Names of the keyword arguments a task accepts (besides ``num_envs``/``device``/``seed``).

    Args:
        name: task name, a key of :data:`TASKS`.
    """
    return tuple(sorted(task_kwarg_types(name)))


def task_kwarg_types(name: str) -> dict[str, Any]:
    """The keyword arguments of :func:`task_kwargs` and their annotated types.

    Args:
        name: task name, a key of :data:`TASKS`.

    Examples:
        >>> task_kwarg_types("cartpole")["episode_length"]
        <class 'int'>
    """
    types: dict[str, Any] = {}
    # The task class and its own bases (e.g. LocomotionEnv), up to TorchRL's EnvBase.
    for klass in _task_class(name).__mro__:
        if klass is EnvBase:
            break
        if "__init__" not in vars(klass):
            continue
        hints = typing.get_type_hints(klass.__init__)
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _FACTORY_ARGS:
                types.setdefault(p.name, hints.get(p.name, Any))
    return types


def _task_class(name: str) -> type[EnvBase]:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"Unknown task {name!r}; available tasks: {sorted(TASKS)}.") from None


def make_env(
    name: str,
    *,
    num_envs: int,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    **task_kwargs_: Any,
) -> EnvBase:
    """Build a batched Newton task env.

    Args:
        name: task name: ``"ant"``, ``"anymal"``, ``"cartpole"`` or ``"humanoid"``.

    Keyword Args:
        num_envs: number of parallel worlds; the env's ``batch_size`` is ``[num_envs]``.
        device: device of the simulator and of every tensor (``"cpu"`` or ``"cuda:N"``).
        seed: seed of the env's generator; ``None`` draws a random one.
        **task_kwargs_: task parameters (see the task classes and :func:`task_kwargs`), e.g.
            ``episode_length``, ``termination_height``, ``action_scale``, ``reset_noise``
            (the cartpole has no ``termination_height``).

    Returns:
        A TorchRL ``EnvBase`` with keys ``"observation"``, ``"action"`` (bounded to [-1, 1]),
        ``("next", "reward")`` and ``"done"``/``"terminated"``/``"truncated"``.

    Raises:
        ValueError: for an unknown task name or an unknown task keyword argument.

    Examples:
        >>> import torch
        >>> from torchrl_flowmbpo.envs.locomotion import make_env
        >>> env = make_env("ant", num_envs=4, seed=0)
        >>> td = env.rollout(3, break_when_any_done=False)
        >>> td["next", "observation"].shape
        torch.Size([4, 3, 37])
        >>> td["next", "reward"].dtype
        torch.float32
    """
    allowed = task_kwargs(name)
    unknown = sorted(set(task_kwargs_) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown keyword argument(s) {unknown} for task {name!r}; allowed: {list(allowed)}."
        )
    return TASKS[name](num_envs, device=device, seed=seed, **task_kwargs_)
