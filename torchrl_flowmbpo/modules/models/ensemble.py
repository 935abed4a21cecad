"""A vectorised ensemble of identically shaped modules (one ``torch.vmap`` call)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictParams
from torch import nn

__all__ = ["Ensemble"]


class Ensemble(nn.Module):
    """Evaluates ``M`` modules of identical structure in one vectorised call.

    The members' parameters are stacked along a leading dimension (a ``TensorDictParams``, so they
    appear in ``parameters()`` and ``state_dict()``) and evaluated with ``torch.vmap`` over a
    parameter-free copy of the first member.

    Args:
        modules: the members; they must share the same architecture.

    Examples:
        >>> ens = Ensemble([nn.Linear(4, 1) for _ in range(3)])
        >>> ens(torch.randn(5, 4)).shape
        torch.Size([3, 5, 1])
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(modules) < 1:
            raise ValueError("Ensemble needs at least one module.")
        self.params = TensorDictParams(TensorDict.from_modules(*modules, as_module=True))
        # The vmapped call swaps the member parameters into this skeleton; it owns none itself.
        skeleton = copy.deepcopy(modules[0])
        TensorDict.from_module(skeleton).data.to("meta").to_module(skeleton)
        self._skeleton = [skeleton]
        self.num_members = len(modules)

    def _member_forward(self, params: TensorDictBase, *args: torch.Tensor) -> torch.Tensor:
        with params.to_module(self._skeleton[0]):
            return self._skeleton[0](*args)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        in_dims = (0,) + (None,) * len(args)
        return torch.vmap(self._member_forward, in_dims, randomness="different")(self.params, *args)

    def extra_repr(self) -> str:
        return f"num_members={self.num_members}, member={self._skeleton[0]}"
