"""Which term of the imagined return drives the actor: the model's rewards or the critic's slope.

PWM's actor ascends ``J = Σ_t γ^t Γ_t r̂_t + γ^P Γ_H min_k V_k(z_H)`` through the world model.
Its gradient is the sum of two gradients: the rewards' (the model's slope along the horizon) and
the bootstrap's (the critic's slope at ``z_H``). When the second is the larger and points against
the first, the critic, not the model, steers the policy. :func:`actor_gradient_split` measures
both on one imagined rollout. Unlike the other diagnostics it differentiates (the actor's
parameters only, with ``torch.autograd.grad``: no ``.grad`` is written anywhere); its results are
plain Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase

if TYPE_CHECKING:
    from torchrl_flowmbpo.objectives import PWMActorLoss

__all__ = ["actor_gradient_split"]


def _flat_grad(
    output: torch.Tensor, params: Sequence[torch.nn.Parameter], *, retain_graph: bool
) -> torch.Tensor:
    """``∂ output / ∂ params`` flattened into one float64 vector (zeros where unreachable)."""
    if not output.requires_grad:  # e.g. a constant critic and no termination head
        return torch.zeros(sum(p.numel() for p in params), dtype=torch.float64)
    # allow_unused: a parameter the part does not reach has a zero gradient, not an error.
    grads = torch.autograd.grad(output, params, retain_graph=retain_graph, allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1).double().cpu()
            for g, p in zip(grads, params, strict=True)
        ]
    )


def actor_gradient_split(actor_loss: PWMActorLoss, start: TensorDictBase) -> dict[str, float]:
    """The gradients of the imagined return's reward part and bootstrap part w.r.t. the actor.

    One imagined rollout from the start observations ``start`` ``[B]`` (``actor_loss``'s
    :meth:`~torchrl_flowmbpo.objectives.PWMActorLoss.return_parts`: the same sampling, horizon,
    discount, survival and bootstrap critic as its ``forward``) gives per start state

    - ``R_b = Σ_{t<H} γ^t Γ_t r̂_t`` (reward part) and
    - ``V_b = γ^P Γ_H min_k V_k(z_H)`` (bootstrap part; ``P = H``, or ``H + 1`` with
      ``bootstrap_extra_gamma``),

    with ``J_b = R_b + V_b``. With θ the actor's trainable parameters (flattened), both gradients
    are taken on the **same** sampled actions (one graph, two ``torch.autograd.grad`` calls):

    - ``g_R = ∂ mean_b R_b / ∂θ``, ``g_V = ∂ mean_b V_b / ∂θ``; the actor loss's gradient is
      ``−(g_R + g_V) / H`` (``ret_rms`` off) or ``−(g_R + g_V) / sqrt(var + 1e-5)``;
    - ``reward_grad_norm = |g_R|``, ``bootstrap_grad_norm = |g_V|``;
    - ``grad_cosine = g_R·g_V / (|g_R| |g_V|)``: −1, the critic pulls the policy exactly against
      the model's rewards; NaN when either gradient is zero;
    - ``bootstrap_share = |g_V|² / (|g_R|² + |g_V|²)`` in [0, 1]: 0.5 for equal norms, above
      it the critic's slope dominates; NaN when both are zero;
    - ``grad_norm_ratio = |g_V| / |g_R|``; NaN when ``g_R`` is zero;
    - ``reward_part_mean = mean_b R_b``, ``bootstrap_part_mean = mean_b V_b`` (normalised reward
      units; their sum is ``actor/imagined_return`` on the same rollout).

    Nothing is updated: no optimiser step, no ``.grad`` on the actor, world model or critic, no
    ``ret_rms`` update; the modules' ``requires_grad`` flags are restored by ``hold_out_net``.
    The rollout draws from the global RNG, as an actor step does. Works inside
    ``torch.no_grad()``.

    Args:
        actor_loss: the actor loss whose return is split.
        start: start observations ``[B]`` under its observation key (e.g. replay slices' first
            observations).

    Returns:
        The floats above.

    Raises:
        ValueError: if the actor has no trainable parameter.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl_flowmbpo.modules import GaussianActor, VCritic
        >>> from torchrl_flowmbpo.modules.models import PWMWorldModel
        >>> from torchrl_flowmbpo.objectives import PWMActorLoss
        >>> _ = torch.manual_seed(0)
        >>> wm = PWMWorldModel(4, 2, latent_dim=16, units=(32,), encoder_units=(32,))
        >>> _ = torch.nn.init.normal_(wm.reward_head[-1].weight)  # a fresh head is constant
        >>> actor, critic = GaussianActor(16, 2, hidden=(32,)), VCritic(16, hidden=(32,))
        >>> loss = PWMActorLoss(actor, critic, wm, horizon=5)
        >>> out = actor_gradient_split(loss, TensorDict(observation=torch.randn(8, 4),
        ...                                             batch_size=[8]))
        >>> -1 <= out["grad_cosine"] <= 1, 0 <= out["bootstrap_share"] <= 1
        (True, True)
        >>> any(p.grad is not None for p in actor.parameters())
        False
    """
    params = [p for p in actor_loss.actor_network.parameters() if p.requires_grad]
    if not params:
        raise ValueError("actor_gradient_split: the actor has no trainable parameter.")
    with torch.enable_grad():
        reward_part, bootstrap_part, _ = actor_loss.return_parts(start)
        # retain_graph: the bootstrap's gradient reuses the rollout (same sampled actions).
        g_reward = _flat_grad(reward_part.mean(), params, retain_graph=True)
        g_bootstrap = _flat_grad(bootstrap_part.mean(), params, retain_graph=False)
    reward_sq, bootstrap_sq = float(g_reward @ g_reward), float(g_bootstrap @ g_bootstrap)
    reward_norm, bootstrap_norm = math.sqrt(reward_sq), math.sqrt(bootstrap_sq)
    both = reward_norm * bootstrap_norm
    # Clamped: round-off can put a perfectly (anti-)aligned pair a hair outside [-1, 1].
    cosine = max(-1.0, min(1.0, float(g_reward @ g_bootstrap) / both)) if both > 0 else math.nan
    total_sq = reward_sq + bootstrap_sq
    return {
        "reward_grad_norm": reward_norm,
        "bootstrap_grad_norm": bootstrap_norm,
        "grad_cosine": cosine,
        "bootstrap_share": bootstrap_sq / total_sq if total_sq > 0 else math.nan,
        "grad_norm_ratio": bootstrap_norm / reward_norm if reward_norm > 0 else math.nan,
        "reward_part_mean": float(reward_part.detach().double().mean()),
        "bootstrap_part_mean": float(bootstrap_part.detach().double().mean()),
    }
