"""TensorDict operators around a :class:`~torchrl_flowmbpo.modules.models.LatentWorldModel`.

The operators map keys to the plain model's methods so that a world model plugs into TorchRL's
``WorldModelWrapper`` / ``ModelBasedEnvBase``. The transition operator computes the reward-head
output and termination logit from the **current** latent ``z_t`` before it overwrites
``"latent"`` with ``z_{t+1}``; the reward operator then only decodes that output. This keeps
TorchRL's transition-then-reward order while the heads read ``R(z_t, a_t)`` as the algorithm
requires.
"""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import WorldModelWrapper

from torchrl_flowmbpo.modules.models.world_model import LatentWorldModel

__all__ = ["encoder_operator", "reward_operator", "transition_operator", "world_model_wrapper"]


class _Transition(nn.Module):
    def __init__(self, world_model: LatentWorldModel) -> None:
        super().__init__()
        self.world_model = world_model

    def forward(self, latent: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, ...]:
        next_latent, reward_output, logit = self.world_model.transition(latent, action)
        if logit is None:
            return next_latent, reward_output
        return next_latent, reward_output, logit


def encoder_operator(
    world_model: LatentWorldModel,
    *,
    observation_key: NestedKey = "observation",
    latent_key: NestedKey = "latent",
) -> TensorDictModule:
    """``observation → latent`` with the world model's encoder.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_flowmbpo.modules.models import PWMWorldModel
        >>> wm = PWMWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> td = encoder_operator(wm)(TensorDict(observation=torch.randn(3, 4), batch_size=[3]))
        >>> td["latent"].shape
        torch.Size([3, 16])
    """
    return TensorDictModule(
        world_model, in_keys=[observation_key], out_keys=[latent_key], method="encode"
    )


def transition_operator(
    world_model: LatentWorldModel,
    *,
    latent_key: NestedKey = "latent",
    action_key: NestedKey = "action",
    reward_output_key: NestedKey = "reward_output",
    termination_key: NestedKey = "termination_logit",
) -> TensorDictModule:
    """``(latent, action) → (latent, reward_output[, termination_logit])``.

    The new latent overwrites ``latent_key`` (what ``ModelBasedEnvBase`` expects); the heads are
    evaluated on the input latent. ``termination_key`` is written only if the model has a
    termination head.
    """
    out_keys = [latent_key, reward_output_key]
    if world_model.has_termination:
        out_keys.append(termination_key)
    return TensorDictModule(
        _Transition(world_model), in_keys=[latent_key, action_key], out_keys=out_keys
    )


def reward_operator(
    world_model: LatentWorldModel,
    *,
    reward_output_key: NestedKey = "reward_output",
    reward_key: NestedKey = "reward",
) -> TensorDictModule:
    """``reward_output → reward``: decodes the reward head's output (symexp two-hot or scalar)."""
    return TensorDictModule(
        world_model, in_keys=[reward_output_key], out_keys=[reward_key], method="decode_reward"
    )


def world_model_wrapper(
    world_model: LatentWorldModel,
    *,
    latent_key: NestedKey = "latent",
    action_key: NestedKey = "action",
    reward_key: NestedKey = "reward",
    termination_key: NestedKey = "termination_logit",
) -> WorldModelWrapper:
    """A TorchRL ``WorldModelWrapper`` (transition then reward) for an imagined env.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_flowmbpo.modules.models import FlowWorldModel
        >>> wm = FlowWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> td = TensorDict(latent=wm.encode(torch.randn(3, 4)), action=torch.zeros(3, 2),
        ...                 batch_size=[3])
        >>> sorted(world_model_wrapper(wm)(td).keys())
        ['action', 'latent', 'reward', 'reward_output', 'termination_logit']
    """
    return WorldModelWrapper(
        transition_operator(
            world_model,
            latent_key=latent_key,
            action_key=action_key,
            termination_key=termination_key,
        ),
        reward_operator(world_model, reward_key=reward_key),
    )
