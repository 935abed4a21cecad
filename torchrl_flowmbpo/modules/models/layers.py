"""Plain ``nn.Module`` building blocks (no TensorDict keys).

The world-model layers follow TD-MPC2 / PWM: ``NormedLinear`` is Linear → LayerNorm → activation,
``SimNorm`` keeps latents on a product of simplices. The actor and critic use the opposite hidden
order (Linear → Mish → LayerNorm), built by :func:`act_norm_mlp`.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

__all__ = [
    "NormedLinear",
    "SimNorm",
    "act_norm_mlp",
    "mlp",
    "simnorm_project",
    "trunc_normal_init_",
]


class SimNorm(nn.Module):
    """Softmax over consecutive groups of ``group_size`` entries of the last dimension.

    A SimNorm latent has entries in (0, 1), each group sums to 1 and ``‖z‖₁ = L / group_size``.

    Args:
        group_size: entries per simplex group; the last input dimension must be a multiple of it.

    Examples:
        >>> z = SimNorm(8)(torch.randn(3, 16))
        >>> torch.allclose(z.view(3, 2, 8).sum(-1), torch.ones(3, 2))
        True
    """

    def __init__(self, group_size: int = 8) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"SimNorm group_size must be >= 1, got {group_size}.")
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = _split_groups(x, self.group_size)
        return torch.softmax(groups, dim=-1).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


def simnorm_project(z: torch.Tensor, group_size: int = 8, eps: float = 1e-6) -> torch.Tensor:
    """Project ``z`` back onto the SimNorm manifold by clamp-and-renormalise per group.

    ``P(z)_g = max(z_g, eps) / Σ max(z_g, eps)``. Unlike a softmax this is the identity on the
    manifold (up to ``eps``), so a one-hot group stays one-hot.

    Args:
        z: tensor whose last dimension is a multiple of ``group_size``.
        group_size: entries per simplex group.
        eps: floor applied before renormalising.

    Examples:
        >>> z = torch.tensor([[0.5, 0.5, 0.0, 1.0]])
        >>> torch.allclose(simnorm_project(z, group_size=2), z, atol=1e-5)
        True
    """
    groups = _split_groups(z, group_size).clamp_min(eps)
    return (groups / groups.sum(dim=-1, keepdim=True)).reshape(z.shape)


def _split_groups(x: torch.Tensor, group_size: int) -> torch.Tensor:
    if x.shape[-1] % group_size:
        raise ValueError(
            f"last dimension {x.shape[-1]} is not a multiple of the SimNorm group size "
            f"{group_size}."
        )
    return x.reshape(*x.shape[:-1], x.shape[-1] // group_size, group_size)


class NormedLinear(nn.Linear):
    """Linear → LayerNorm → activation (Mish by default), the TD-MPC2 hidden layer.

    Args:
        in_features: input width.
        out_features: output width.
        act: activation applied after the LayerNorm; ``None`` means Mish.

    Examples:
        >>> NormedLinear(4, 8)(torch.randn(2, 4)).shape
        torch.Size([2, 8])
    """

    def __init__(self, in_features: int, out_features: int, act: nn.Module | None = None) -> None:
        super().__init__(in_features, out_features)
        self.ln = nn.LayerNorm(out_features)
        self.act = nn.Mish() if act is None else act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.ln(super().forward(x)))


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    *,
    last_act: nn.Module | None = None,
) -> nn.Sequential:
    """TD-MPC2 MLP: a ``NormedLinear`` per hidden width, then the head's last layer.

    Args:
        in_features: input width.
        hidden: hidden widths.
        out_features: output width.
        last_act: if given, the last layer is a ``NormedLinear`` with this activation (e.g.
            ``SimNorm`` for latents); otherwise it is a plain, unconstrained ``nn.Linear``.

    Examples:
        >>> net = mlp(10, [32, 32], 16, last_act=SimNorm(8))
        >>> net(torch.randn(5, 10)).view(5, 2, 8).sum(-1).allclose(torch.ones(5, 2))
        True
    """
    widths = [in_features, *hidden]
    layers: list[nn.Module] = [NormedLinear(i, o) for i, o in pairwise(widths)]
    if last_act is None:
        layers.append(nn.Linear(widths[-1], out_features))
    else:
        layers.append(NormedLinear(widths[-1], out_features, act=last_act))
    return nn.Sequential(*layers)


def act_norm_mlp(in_features: int, hidden: Sequence[int], out_features: int) -> nn.Sequential:
    """Actor/critic MLP: Linear → Mish → LayerNorm per hidden width, then a plain Linear.

    Args:
        in_features: input width.
        hidden: hidden widths.
        out_features: output width.

    Examples:
        >>> act_norm_mlp(8, [400, 200, 100], 3)(torch.randn(2, 8)).shape
        torch.Size([2, 3])
    """
    widths = [in_features, *hidden]
    layers: list[nn.Module] = []
    for i, o in pairwise(widths):
        layers += [nn.Linear(i, o), nn.Mish(), nn.LayerNorm(o)]
    layers.append(nn.Linear(widths[-1], out_features))
    return nn.Sequential(*layers)


def trunc_normal_init_(module: nn.Module, std: float = 0.02) -> None:
    """TD-MPC2 initialisation: truncated-normal Linear weights (std 0.02), zero biases.

    LayerNorms keep their default weight 1 / bias 0.

    Args:
        module: module whose ``nn.Linear`` submodules are re-initialised in place.
        std: standard deviation of the truncated normal (truncated at ±2 std).
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.zeros_(m.bias)
