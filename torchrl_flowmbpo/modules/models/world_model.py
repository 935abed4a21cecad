"""Latent world models as plain ``nn.Module`` maths (no TensorDict keys).

:class:`LatentWorldModel` holds what every model shares (encoder, reward head, termination head);
:class:`PWMWorldModel` adds the PWM / TD-MPC2 MLP dynamics. The flow model lives in
:mod:`torchrl_flowmbpo.modules.models.flow_world_model`.

Shapes: observations ``[..., obs_dim]``, latents ``[..., latent_dim]``, actions
``[..., action_dim]``, rewards and termination logits ``[..., 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from torchrl_flowmbpo.functional import (
    soft_cross_entropy,
    symlog_two_hot_decode,
    symlog_two_hot_encode,
    two_hot_support,
)
from torchrl_flowmbpo.modules.models.layers import SimNorm, mlp, trunc_normal_init_

__all__ = ["PRESETS", "REWARD_HEADS", "LatentWorldModel", "PWMWorldModel"]

#: Network sizes: the reference's "5M" and "48M" presets (TD-MPC2's multitask names), and a
#: "small" one sized for quick CPU runs.
PRESETS: dict[str, dict[str, Any]] = {
    "small": {"encoder_units": (256,), "units": (256, 256), "latent_dim": 128},
    "5M": {"encoder_units": (256,), "units": (512, 512), "latent_dim": 512},
    "48M": {"encoder_units": (1792, 1792, 1792), "units": (1792, 1792), "latent_dim": 768},
}
REWARD_HEADS = ("scalar", "twohot")


class LatentWorldModel(nn.Module):
    """Encoder, reward head and optional termination head shared by all latent world models.

    Subclasses implement :meth:`next` (the latent transition) and :meth:`dynamics_error` (their
    dynamics training signal).

    Args:
        obs_dim: observation width.
        action_dim: action width.

    Keyword Args:
        latent_dim: latent width L, a multiple of ``simnorm_group``.
        encoder_units: hidden widths of the encoder.
        units: hidden widths of the dynamics / velocity net and of the heads.
        simnorm_group: SimNorm group size V.
        reward_head: ``"twohot"`` (default, as ``configs/world_model/*.yaml``: soft cross-entropy
            on a symlog-space two-hot of ``num_bins`` bins over ``reward_range``) or
            ``"scalar"`` (MSE on the reward, PWM's).
        num_bins: two-hot bins.
        reward_range: two-hot support bounds, in symlog space.
        termination_head: whether to model ``P(terminated | z, a)``.
        term_bias_init: initial bias of the termination logit (−5 gives P ≈ 0.007).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        *,
        latent_dim: int = 512,
        encoder_units: Sequence[int] = (256,),
        units: Sequence[int] = (512, 512),
        simnorm_group: int = 8,
        reward_head: str = "twohot",
        num_bins: int = 101,
        reward_range: tuple[float, float] = (-10.0, 10.0),
        termination_head: bool = True,
        term_bias_init: float = -5.0,
    ) -> None:
        super().__init__()
        if reward_head not in REWARD_HEADS:
            raise ValueError(f"Unknown reward_head {reward_head!r}; allowed: {REWARD_HEADS}.")
        if latent_dim % simnorm_group:
            raise ValueError(
                f"latent_dim={latent_dim} must be a multiple of simnorm_group={simnorm_group}."
            )
        self.obs_dim, self.action_dim, self.latent_dim = obs_dim, action_dim, latent_dim
        self.simnorm_group = simnorm_group
        self.reward_head_type = reward_head
        self.encoder = mlp(obs_dim, encoder_units, latent_dim, last_act=SimNorm(simnorm_group))
        reward_out = 1 if reward_head == "scalar" else num_bins
        self.reward_head = mlp(latent_dim + action_dim, units, reward_out)
        self.termination_head = mlp(latent_dim + action_dim, units, 1) if termination_head else None
        support = two_hot_support(*reward_range, num_bins)
        self.register_buffer("reward_support", support, persistent=False)
        self._init_heads(term_bias_init)

    def _init_heads(self, term_bias_init: float) -> None:
        trunc_normal_init_(self)
        nn.init.zeros_(self.reward_head[-1].weight)
        if self.termination_head is not None:
            nn.init.zeros_(self.termination_head[-1].weight)
            nn.init.constant_(self.termination_head[-1].bias, term_bias_init)

    @classmethod
    def from_preset(cls, preset: str, obs_dim: int, action_dim: int, **kwargs: Any):
        """Builds the model at a named size (``"5M"`` or ``"48M"``); ``kwargs`` override it."""
        if preset not in PRESETS:
            raise ValueError(f"Unknown world-model preset {preset!r}; allowed: {list(PRESETS)}.")
        return cls(obs_dim, action_dim, **{**PRESETS[preset], **kwargs})

    @property
    def has_termination(self) -> bool:
        return self.termination_head is not None

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Maps observations to SimNorm latents."""
        return self.encoder(obs)

    def next(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Predicts the next latent ``z_{t+1}`` from ``(z_t, a_t)``."""
        raise NotImplementedError

    def dynamics_error(
        self,
        latent: torch.Tensor,
        action: torch.Tensor,
        target: torch.Tensor,
        *,
        next_latent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-sample dynamics training error ``[...]`` for the transition ``latent → target``.

        ``next_latent`` is ``next(latent, action)`` when the caller already computed it (the
        world-model loss does, to continue its rollout); models that need it reuse it.
        """
        raise NotImplementedError

    def reward_output(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Raw reward-head output: ``[..., 1]`` (scalar) or ``[..., num_bins]`` logits."""
        return self.reward_head(torch.cat([latent, action], dim=-1))

    def decode_reward(self, output: torch.Tensor) -> torch.Tensor:
        """Turns a raw reward-head output into a reward ``[..., 1]`` (symexp of two-hot mean)."""
        if self.reward_head_type == "scalar":
            return output
        return symlog_two_hot_decode(output, self.reward_support).unsqueeze(-1)

    def reward(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Predicted reward ``r̂(z_t, a_t)``, shape ``[..., 1]``."""
        return self.decode_reward(self.reward_output(latent, action))

    def reward_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample reward loss ``[...]`` of a raw head output against rewards ``[..., 1]``.

        Squared error for the scalar head; soft cross-entropy against the symlog two-hot target
        for the two-hot head (never an MSE on logits, which decodes to 0).
        """
        if self.reward_head_type == "scalar":
            return (output - target).pow(2).squeeze(-1)
        target_probs = symlog_two_hot_encode(target.squeeze(-1), self.reward_support)
        return soft_cross_entropy(output, target_probs)

    def termination_logit(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Logit that the transition ``(z_t, a_t)`` terminates, ``[..., 1]``.

        Raises:
            RuntimeError: if the model was built without a termination head.
        """
        if self.termination_head is None:
            raise RuntimeError("This world model has no termination head (termination_head=False).")
        return self.termination_head(torch.cat([latent, action], dim=-1))

    def transition(
        self, latent: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One imagined step from ``(z_t, a_t)``: ``(z_{t+1}, reward output, termination logit)``.

        The heads read ``z_t``, not ``z_{t+1}``. The termination logit is ``None`` without a
        termination head. The three are computed in this order, which fixes the order of random
        draws and of the autograd graph for every imagination path (the transition operator and
        ``ImaginedLatentEnv.imagine``).

        Examples:
            >>> wm = PWMWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
            >>> z = wm.encode(torch.randn(5, 4))
            >>> next_latent, reward_output, logit = wm.transition(z, torch.zeros(5, 2))
            >>> next_latent.shape, reward_output.shape, logit.shape  # 101 two-hot logits
            (torch.Size([5, 16]), torch.Size([5, 101]), torch.Size([5, 1]))
        """
        next_latent = self.next(latent, action)
        reward_output = self.reward_output(latent, action)
        logit = self.termination_logit(latent, action) if self.has_termination else None
        return next_latent, reward_output, logit

    def continue_prob(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``c_t = 1 − σ(termination logit)``, or ones without a termination head."""
        if self.termination_head is None:
            return latent.new_ones(*latent.shape[:-1], 1)
        return 1.0 - torch.sigmoid(self.termination_logit(latent, action))


class PWMWorldModel(LatentWorldModel):
    """PWM / TD-MPC2 latent world model with MLP dynamics ``z_{t+1} = F(z_t, a_t)``.

    The dynamics net ends in NormedLinear + SimNorm, so predicted latents stay on the encoder's
    manifold. All keyword arguments are those of :class:`LatentWorldModel`.

    Examples:
        >>> wm = PWMWorldModel(obs_dim=37, action_dim=8, latent_dim=64, units=(64, 64))
        >>> z = wm.encode(torch.randn(5, 37))
        >>> wm.next(z, torch.zeros(5, 8)).shape, wm.reward(z, torch.zeros(5, 8)).shape
        (torch.Size([5, 64]), torch.Size([5, 1]))
    """

    def __init__(self, obs_dim: int, action_dim: int, **kwargs: Any) -> None:
        super().__init__(obs_dim, action_dim, **kwargs)
        units = kwargs.get("units", (512, 512))
        self.dynamics = mlp(
            self.latent_dim + action_dim,
            units,
            self.latent_dim,
            last_act=SimNorm(self.simnorm_group),
        )
        trunc_normal_init_(self.dynamics)

    def next(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.dynamics(torch.cat([latent, action], dim=-1))

    def dynamics_error(
        self,
        latent: torch.Tensor,
        action: torch.Tensor,
        target: torch.Tensor,
        *,
        next_latent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Latent consistency: ``mean_d (F(z_t, a_t) − target)²``."""
        if next_latent is None:
            next_latent = self.next(latent, action)
        return (next_latent - target).pow(2).mean(-1)
