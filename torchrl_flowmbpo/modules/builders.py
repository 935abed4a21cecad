"""Build world models, actors and critics from plain keyword dictionaries.

The dictionaries are what a checkpoint stores (``{"type": ..., **kwargs}``), so a run is rebuilt
from the checkpoint alone, never by guessing a class from parameter names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torchrl_flowmbpo.modules.actors import FlowActor, GaussianActor
from torchrl_flowmbpo.modules.critic import VCritic
from torchrl_flowmbpo.modules.models.flow_world_model import FlowWorldModel
from torchrl_flowmbpo.modules.models.input_norm import InputNormalizer
from torchrl_flowmbpo.modules.models.world_model import LatentWorldModel, PWMWorldModel

__all__ = [
    "ACTOR_TYPES",
    "WORLD_MODEL_TYPES",
    "build_actor",
    "build_critic",
    "build_world_model",
]

WORLD_MODEL_TYPES: dict[str, type[LatentWorldModel]] = {
    "mlp": PWMWorldModel,
    "flow": FlowWorldModel,
}
ACTOR_TYPES: dict[str, type] = {"gaussian": GaussianActor, "flow": FlowActor}


def _lookup(kind: str, registry: Mapping[str, type], what: str) -> type:
    if kind not in registry:
        raise ValueError(f"Unknown {what} type {kind!r}; allowed: {sorted(registry)}.")
    return registry[kind]


def build_world_model(spec: Mapping[str, Any], obs_dim: int, action_dim: int) -> LatentWorldModel:
    """Builds a world model from ``{"type": "mlp" | "flow", "preset": ..., **kwargs}``.

    Args:
        spec: the type, an optional size ``preset`` and constructor keyword arguments.
        obs_dim: observation width.
        action_dim: action width.

    Examples:
        >>> wm = build_world_model({"type": "flow", "preset": "5M", "flow_steps": 4}, 37, 8)
        >>> type(wm).__name__, wm.latent_dim, wm.flow_steps
        ('FlowWorldModel', 512, 4)
    """
    kwargs = dict(spec)
    cls = _lookup(kwargs.pop("type", None), WORLD_MODEL_TYPES, "world-model")
    preset = kwargs.pop("preset", None)
    if preset is None:
        return cls(obs_dim, action_dim, **kwargs)
    return cls.from_preset(preset, obs_dim, action_dim, **kwargs)


def _with_input_norm(
    kwargs: dict[str, Any], dim: int, input_norm: InputNormalizer | None
) -> dict[str, Any]:
    # A spec stores ``input_norm: true`` (a checkpoint holds the statistics in the state dict).
    if kwargs.pop("input_norm", False):
        kwargs["input_norm"] = input_norm if input_norm is not None else InputNormalizer(dim)
    return kwargs


def build_actor(
    spec: Mapping[str, Any],
    latent_dim: int,
    action_dim: int,
    *,
    input_norm: InputNormalizer | None = None,
):
    """Builds an actor from ``{"type": "gaussian" | "flow", **kwargs}``.

    ``"input_norm": true`` in the spec puts an :class:`InputNormalizer` in front of the network:
    ``input_norm`` if given (to share one with the critic), else a new one.

    Examples:
        >>> actor = build_actor({"type": "gaussian", "hidden": [8], "input_norm": True}, 5, 1)
        >>> type(actor.policy_net.input_norm).__name__
        'InputNormalizer'
    """
    kwargs = dict(spec)
    cls = _lookup(kwargs.pop("type", None), ACTOR_TYPES, "actor")
    return cls(latent_dim, action_dim, **_with_input_norm(kwargs, latent_dim, input_norm))


def build_critic(
    spec: Mapping[str, Any], latent_dim: int, *, input_norm: InputNormalizer | None = None
) -> VCritic:
    """Builds the V-critic ensemble from its keyword arguments.

    A spec with ``"input_norm": true`` needs ``input_norm``, the actor's normaliser: the critic
    reads it without owning it (its statistics are saved with the actor).

    Raises:
        ValueError: ``"input_norm": true`` without ``input_norm``.
    """
    if spec.get("input_norm") and input_norm is None:
        raise ValueError(
            "A critic spec with input_norm: true needs the actor's InputNormalizer "
            "(build_critic(..., input_norm=actor.policy_net.input_norm))."
        )
    return VCritic(latent_dim, **_with_input_norm(dict(spec), latent_dim, input_norm))
