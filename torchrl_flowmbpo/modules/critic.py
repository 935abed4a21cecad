"""TensorDict-level critic: an ensemble of state-value functions ``V_k(z)`` and their minimum."""

from __future__ import annotations

from collections.abc import Sequence

from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import ValueOperator

from torchrl_flowmbpo.modules.models.policy_nets import CriticEnsembleNet

__all__ = ["VCritic"]


class VCritic(ValueOperator):
    """PWM's critic: ``M`` members ``V_k(z)`` (default 3) and the bootstrap value ``min_k V_k(z)``.

    A named :class:`~torchrl.modules.ValueOperator` subclass rather than a factory, so that a
    checkpoint can record the critic's type alongside the actor's.

    Reads ``latent_key`` and writes ``"state_value_members"`` (``[*batch, M, 1]``) and
    ``"state_value"`` (``[*batch, 1]``, the minimum over members).

    Args:
        latent_dim: latent width ``L``.

    Keyword Args:
        num_members: ensemble size ``M``.
        hidden: hidden widths of each member.
        detach_latent: stop the gradient into the latent; see
            :class:`~torchrl_flowmbpo.modules.models.CriticEnsembleNet` for when it matters.
        input_norm: a module applied to the input first, e.g. an
            :class:`~torchrl_flowmbpo.modules.models.InputNormalizer` shared with the actor.
        latent_key: input key.
        members_key: output key of the per-member values.
        value_key: output key of the minimum over members.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> critic = VCritic(32, hidden=(64, 64))
        >>> td = critic(TensorDict({"latent": torch.randn(5, 32)}, batch_size=[5]))
        >>> td["state_value_members"].shape, td["state_value"].shape
        (torch.Size([5, 3, 1]), torch.Size([5, 1]))
    """

    def __init__(
        self,
        latent_dim: int,
        *,
        num_members: int = 3,
        hidden: Sequence[int] = (400, 200),
        detach_latent: bool = False,
        input_norm: nn.Module | None = None,
        latent_key: NestedKey = "latent",
        members_key: NestedKey = "state_value_members",
        value_key: NestedKey = "state_value",
    ) -> None:
        net = CriticEnsembleNet(
            latent_dim,
            num_members=num_members,
            hidden=hidden,
            detach_latent=detach_latent,
            input_norm=input_norm,
        )
        super().__init__(net, in_keys=[latent_key], out_keys=[members_key, value_key])

    @property
    def net(self) -> CriticEnsembleNet:
        """The wrapped :class:`CriticEnsembleNet`."""
        return self.module
