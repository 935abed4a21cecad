"""Tests for the plain building blocks: SimNorm and its projection, MLPs, init, Ensemble."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchrl_flowmbpo.modules.models import (
    Ensemble,
    NormedLinear,
    SimNorm,
    act_norm_mlp,
    mlp,
    simnorm_project,
    trunc_normal_init_,
)

GROUP = 8


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _groups(x: torch.Tensor, group: int = GROUP) -> torch.Tensor:
    return x.reshape(*x.shape[:-1], -1, group)


def _on_manifold(z: torch.Tensor, *, atol: float = 1e-5, group: int = GROUP) -> bool:
    g = _groups(z, group)
    return bool(
        (g >= 0).all()
        and (g <= 1).all()
        and torch.allclose(g.sum(-1), torch.ones_like(g[..., 0]), atol=atol)
    )


# --------------------------------------------------------------------------------------------
# SimNorm
# --------------------------------------------------------------------------------------------
class TestSimNorm:
    def test_entries_in_open_unit_interval_and_groups_sum_to_one(self) -> None:
        z = SimNorm(GROUP)(torch.randn(4, 5, 32))
        assert z.shape == (4, 5, 32)
        assert (z > 0).all() and (z < 1).all()
        torch.testing.assert_close(_groups(z).sum(-1), torch.ones(4, 5, 4))
        # ‖z‖₁ = L / V on the manifold.
        torch.testing.assert_close(z.abs().sum(-1), torch.full((4, 5), 32 / GROUP))

    def test_equals_manual_per_group_softmax(self) -> None:
        x = torch.randn(3, 16) * 3
        manual = torch.cat([torch.softmax(x[:, :8], -1), torch.softmax(x[:, 8:], -1)], -1)
        torch.testing.assert_close(SimNorm(8)(x), manual, rtol=0, atol=1e-7)
        # A different group size groups differently: 4 groups of 4.
        manual4 = torch.cat([torch.softmax(x[:, i : i + 4], -1) for i in range(0, 16, 4)], -1)
        torch.testing.assert_close(SimNorm(4)(x), manual4, rtol=0, atol=1e-7)

    def test_bad_group_size_raises_with_numbers(self) -> None:
        with pytest.raises(ValueError, match=r"10.*8"):
            SimNorm(8)(torch.randn(2, 10))
        with pytest.raises(ValueError, match="0"):
            SimNorm(0)


class TestSimNormProject:
    def test_maps_arbitrary_signed_vectors_onto_manifold(self) -> None:
        x = torch.randn(6, 32) * 5
        assert (x < 0).any()
        p = simnorm_project(x, GROUP)
        assert p.shape == x.shape
        assert _on_manifold(p, atol=1e-6)
        assert (p > 0).all()  # the eps floor keeps every entry strictly positive

    def test_idempotent(self) -> None:
        p = simnorm_project(torch.randn(6, 32) * 5, GROUP)
        # Exact up to the eps floor: entries clamped to eps come out as eps / Σ, which a second
        # pass may clamp again, so the tolerance is O(V·eps).
        torch.testing.assert_close(simnorm_project(p, GROUP), p, rtol=0, atol=1e-5)

    def test_identity_on_manifold(self) -> None:
        z = SimNorm(GROUP)(torch.randn(6, 32))
        torch.testing.assert_close(simnorm_project(z, GROUP), z, rtol=0, atol=1e-5)

    def test_one_hot_group_stays_one_hot_unlike_softmax(self) -> None:
        one_hot = torch.zeros(2, 16)
        one_hot[0, 3] = one_hot[0, 8] = one_hot[1, 7] = one_hot[1, 15] = 1.0
        torch.testing.assert_close(simnorm_project(one_hot, GROUP), one_hot, rtol=0, atol=1e-5)
        # The pitfall (docs/algorithm.md, "Flow world model"): a softmax "projection" is not the
        # identity on the manifold; it flattens a one-hot group to (e/(e+7), 1/(e+7), ...) ≈
        # (0.28, 0.10, ...).
        flattened = SimNorm(GROUP)(one_hot)
        assert _groups(flattened).max(-1).values.max() < 0.3
        torch.testing.assert_close(
            _groups(flattened)[0, 0, 3], torch.tensor(math.e / (math.e + 7)), rtol=1e-6, atol=0
        )
        assert not torch.allclose(flattened, one_hot, atol=0.5)

    def test_bad_group_size_raises_with_numbers(self) -> None:
        with pytest.raises(ValueError, match=r"12.*8"):
            simnorm_project(torch.rand(3, 12), 8)


# --------------------------------------------------------------------------------------------
# NormedLinear, mlp, act_norm_mlp
# --------------------------------------------------------------------------------------------
def _mish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tanh(F.softplus(x))


def test_normed_linear_is_linear_layernorm_mish() -> None:
    layer = NormedLinear(5, 7)
    # Non-default LayerNorm affine parameters make the check sensitive to their use and order.
    with torch.no_grad():
        layer.ln.weight.uniform_(0.5, 1.5)
        layer.ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(4, 5)
    h = x @ layer.weight.T + layer.bias
    mu = h.mean(-1, keepdim=True)
    var = h.var(-1, unbiased=False, keepdim=True)
    h = (h - mu) / torch.sqrt(var + layer.ln.eps) * layer.ln.weight + layer.ln.bias
    torch.testing.assert_close(layer(x), _mish(h), rtol=1e-5, atol=1e-6)
    assert isinstance(layer.act, nn.Mish)


def test_normed_linear_custom_activation() -> None:
    layer = NormedLinear(5, 16, act=SimNorm(GROUP))
    assert _on_manifold(layer(torch.randn(3, 5)))


def test_mlp_without_last_act_ends_in_plain_linear() -> None:
    net = mlp(6, [16, 12], 4)
    types = [type(m) for m in net]
    # NormedLinear subclasses nn.Linear, so compare exact types: the head must be unnormalised.
    assert types == [NormedLinear, NormedLinear, nn.Linear]
    assert [m.out_features for m in net] == [16, 12, 4]
    assert all(isinstance(m.act, nn.Mish) for m in net[:-1])
    out = net(torch.randn(3, 6))
    assert out.shape == (3, 4)


def test_mlp_with_last_act_ends_in_normed_linear() -> None:
    net = mlp(6, [16], 16, last_act=SimNorm(GROUP))
    assert [type(m) for m in net] == [NormedLinear, NormedLinear]
    assert isinstance(net[-1].act, SimNorm)
    assert _on_manifold(net(torch.randn(3, 6)))


def test_act_norm_mlp_order() -> None:
    net = act_norm_mlp(6, [16, 12], 3)
    expected = [nn.Linear, nn.Mish, nn.LayerNorm, nn.Linear, nn.Mish, nn.LayerNorm, nn.Linear]
    assert [type(m) for m in net] == expected
    assert net[2].normalized_shape == (16,) and net[5].normalized_shape == (12,)
    assert net(torch.randn(2, 6)).shape == (2, 3)


# --------------------------------------------------------------------------------------------
# trunc_normal_init_
# --------------------------------------------------------------------------------------------
def test_trunc_normal_init_statistics() -> None:
    std = 0.02
    net = nn.Sequential(nn.Linear(1024, 1024), nn.LayerNorm(1024), NormedLinear(1024, 64))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)  # make sure every value is overwritten
    trunc_normal_init_(net, std=std)
    w = net[0].weight
    assert w.abs().max() <= 2 * std  # truncated at ±2 std
    # torch's ``std`` is that of the normal *before* truncation; truncating at ±2σ shrinks the
    # empirical std by sqrt(1 − 2·2φ(2) / (2Φ(2) − 1)) ≈ 0.8796. Check both "≈ 0.02" loosely and
    # the exact truncated value tightly (1M samples: relative standard error ≈ 0.1 %).
    phi2 = math.exp(-2) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    truncated_std = std * math.sqrt(1 - 4 * phi2 / mass)
    assert abs(w.std().item() - std) < 0.15 * std
    assert abs(w.std().item() - truncated_std) < 0.01 * truncated_std
    assert abs(w.mean().item()) < 1e-4
    for lin in (net[0], net[2]):
        assert torch.equal(lin.bias, torch.zeros_like(lin.bias))
        assert lin.weight.abs().max() <= 2 * std
    # LayerNorms are not Linear and are left alone.
    assert torch.equal(net[1].weight, torch.ones(1024))
    assert torch.equal(net[2].ln.bias, torch.ones(64))


# --------------------------------------------------------------------------------------------
# Ensemble
# --------------------------------------------------------------------------------------------
def _member() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Mish(), nn.Linear(8, 3))


@pytest.fixture
def members() -> list[nn.Module]:
    return [_member() for _ in range(3)]


class TestEnsemble:
    def test_output_shape_and_member_equivalence(self, members: list[nn.Module]) -> None:
        ens = Ensemble(members)
        x = torch.randn(5, 4)
        out = ens(x)
        assert out.shape == (3, 5, 3)
        for m, module in enumerate(members):
            torch.testing.assert_close(out[m], module(x), rtol=1e-6, atol=1e-6)
        # Members are distinct (otherwise the equivalence above would be vacuous).
        assert not torch.allclose(out[0], out[1])

    def test_extra_batch_dims(self, members: list[nn.Module]) -> None:
        out = Ensemble(members)(torch.randn(2, 5, 4))
        assert out.shape == (3, 2, 5, 3)

    def test_parameters_are_stacked(self, members: list[nn.Module]) -> None:
        ens = Ensemble(members)
        n_member = sum(p.numel() for p in members[0].parameters())
        assert sum(p.numel() for p in ens.parameters()) == 3 * n_member
        assert all(p.shape[0] == 3 for p in ens.parameters())

    def test_deepcopy_round_trip(self, members: list[nn.Module]) -> None:
        ens = Ensemble(members)
        clone = copy.deepcopy(ens)
        x = torch.randn(5, 4)
        torch.testing.assert_close(clone(x), ens(x), rtol=0, atol=0)
        # The copy owns its parameters: changing it leaves the original untouched.
        with torch.no_grad():
            for p in clone.parameters():
                p.add_(1.0)
        assert not torch.allclose(clone(x), ens(x))

    def test_state_dict_round_trip(self, members: list[nn.Module]) -> None:
        ens = Ensemble(members)
        fresh = Ensemble([_member() for _ in range(3)])
        x = torch.randn(5, 4)
        assert not torch.allclose(fresh(x), ens(x))
        fresh.load_state_dict(ens.state_dict())
        torch.testing.assert_close(fresh(x), ens(x), rtol=0, atol=0)
        for key, value in ens.state_dict().items():
            torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)

    def test_gradients_reach_all_members(self, members: list[nn.Module]) -> None:
        ens = Ensemble(members)
        ens(torch.randn(5, 4)).sum().backward()
        params = list(ens.parameters())
        assert params
        for p in params:
            assert p.grad is not None
            per_member = p.grad.reshape(3, -1).abs().sum(-1)
            assert (per_member > 0).all()

    def test_empty_raises(self) -> None:
        with pytest.raises(ValueError):
            Ensemble([])
