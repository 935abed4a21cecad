"""Shared builders for the objective tests: tiny world models, actors, critics and batches.

The test files are imported with ``--import-mode=importlib``, so they cannot import helpers from
this file; the builders are exposed through the ``models`` fixture (a :class:`Builders`) and the
small stand-in modules through fixtures of their own.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn

from torchrl_flowmbpo.modules.actors import FlowActor, GaussianActor
from torchrl_flowmbpo.modules.critic import VCritic
from torchrl_flowmbpo.modules.models import FlowWorldModel, LatentWorldModel, PWMWorldModel

WM_KINDS = {"mlp": PWMWorldModel, "flow": FlowWorldModel}
ACTOR_KINDS = {"gaussian": GaussianActor, "flow": FlowActor}


@pytest.fixture(autouse=True)
def _seed_and_single_thread():
    # Tests share a 2-core machine; tiny tensors gain nothing from intra-op threads.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(previous)


class Builders:
    """Tiny-width factories (every test file < ~30 s on a shared 2-core CPU)."""

    obs_dim, action_dim, latent_dim = 4, 2, 16
    horizon = 3

    def wm(
        self,
        kind: str = "mlp",
        *,
        randomize_heads: bool = False,
        reward_head: str = "scalar",
        termination_head: bool = True,
        **kwargs,
    ) -> LatentWorldModel:
        """A world model; ``randomize_heads`` gives the (zero-initialised) last layers of the
        reward and termination heads random weights, so their outputs depend on ``(z, a)``."""
        wm = WM_KINDS[kind](
            self.obs_dim,
            self.action_dim,
            latent_dim=self.latent_dim,
            units=(32,),
            encoder_units=(32,),
            reward_head=reward_head,
            termination_head=termination_head,
            **kwargs,
        )
        if randomize_heads:
            with torch.no_grad():
                for head in (wm.reward_head, wm.termination_head):
                    if head is not None:
                        head[-1].weight.normal_(0.0, 0.5)
        return wm

    def actor(self, kind: str = "gaussian", **kwargs) -> GaussianActor | FlowActor:
        if kind == "flow":
            # PyTorch's initialisation, not FlowActor's default zeroed last velocity layer, which
            # passes no gradient below itself at init (tests pass velocity_init="zero" for it).
            kwargs.setdefault("velocity_init", "default")
        return ACTOR_KINDS[kind](self.latent_dim, self.action_dim, hidden=(16,), **kwargs)

    def critic(self, *, detach_latent: bool = False, **kwargs) -> VCritic:
        # The actor loss needs d V / d z_H, hence detach_latent=False passed explicitly (the
        # default may change; see modules/critic.py).
        return VCritic(self.latent_dim, hidden=(16,), detach_latent=detach_latent, **kwargs)

    def slices(self, batch: int = 8, steps: int | None = None) -> TensorDict:
        """Random replay slices ``[B, T]`` (``T = horizon + 1`` by default) with all WM keys.

        ``("next", "done")`` and ``("next", "truncated")`` are present (random) so that tests can
        check the loss never reads them.
        """
        steps = self.horizon + 1 if steps is None else steps
        shape = (batch, steps)
        terminated = torch.rand(*shape, 1) < 0.3
        truncated = torch.rand(*shape, 1) < 0.5
        return TensorDict(
            {
                "observation": torch.randn(*shape, self.obs_dim),
                "action": torch.rand(*shape, self.action_dim) * 2 - 1,
                ("next", "observation"): torch.randn(*shape, self.obs_dim),
                ("next", "reward"): torch.randn(*shape, 1),
                ("next", "terminated"): terminated,
                ("next", "truncated"): truncated,
                ("next", "done"): terminated | truncated,
            },
            batch_size=shape,
        )

    def starts(self, batch: int = 6) -> TensorDict:
        """Start observations ``[B]`` for the actor loss."""
        return TensorDict({"observation": torch.randn(batch, self.obs_dim)}, batch_size=[batch])


@pytest.fixture
def models() -> Builders:
    return Builders()


class LinearCriticNet(nn.Module):
    """``V(z) = w·z[..., 0] + b`` with members ``V + offsets`` (so the minimum is ``V`` itself).

    A stand-in critic whose values the hand derivations can write down: put the wanted value in
    the first latent coordinate (``w = 1, b = 0``), or use ``w = 0`` for a constant critic.
    """

    def __init__(self, w: float = 1.0, b: float = 0.0, offsets=(0.0, 0.5, 1.0)) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w)))
        self.b = nn.Parameter(torch.tensor(float(b)))
        self.register_buffer("offsets", torch.tensor(offsets).unsqueeze(-1))

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value = (self.w * latent[..., :1] + self.b).unsqueeze(-2)  # [..., 1, 1]
        members = value + self.offsets  # [..., M, 1]
        return members, members.min(dim=-2).values


@pytest.fixture
def linear_critic():
    """Factory of :class:`LinearCriticNet` critics wrapped with the VCritic keys."""

    def _make(w: float = 1.0, b: float = 0.0, **kwargs) -> TensorDictModule:
        return TensorDictModule(
            LinearCriticNet(w, b, **kwargs),
            in_keys=["latent"],
            out_keys=["state_value_members", "state_value"],
        )

    return _make


def _snapshot(td: TensorDictBase) -> TensorDictBase:
    return td.detach().clone()


@pytest.fixture
def assert_unchanged():
    """``assert_unchanged(before, after)``: same keys (nested), dtypes and values."""

    def _check(before: TensorDictBase, after: TensorDictBase) -> None:
        keys_before = set(before.keys(include_nested=True, leaves_only=True))
        keys_after = set(after.keys(include_nested=True, leaves_only=True))
        assert keys_after == keys_before
        assert after.batch_size == before.batch_size
        for key in keys_before:
            assert after.get(key).dtype == before.get(key).dtype, key
            torch.testing.assert_close(after.get(key), before.get(key), rtol=0, atol=0, msg=key)

    return _check


@pytest.fixture
def snapshot():
    return _snapshot


def grads(module: nn.Module) -> dict[str, torch.Tensor | None]:
    return {name: p.grad for name, p in module.named_parameters()}


@pytest.fixture
def param_grads():
    """``param_grads(module)``: ``{name: grad or None}`` of every parameter."""
    return grads


@pytest.fixture
def param_values():
    """``param_values(module)``: detached clones of every parameter, to compare after a step."""

    def _values(module: nn.Module) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in module.named_parameters()}

    return _values
