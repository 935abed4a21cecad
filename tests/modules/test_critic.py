"""Tests for the critic ensemble (torchrl_flowmbpo.modules.critic)."""

from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict

from torchrl_flowmbpo.modules.critic import VCritic

LATENT, HIDDEN = 32, (16, 8)


def _make(seed: int = 0, **kwargs) -> VCritic:
    torch.manual_seed(seed)
    return VCritic(LATENT, hidden=HIDDEN, **kwargs)


def _td(latent: torch.Tensor) -> TensorDict:
    return TensorDict({"latent": latent}, batch_size=latent.shape[:-1])


def test_parameter_count_matches_reference():
    # Per member 512·400+400 + LN 800 + 400·200+200 + LN 400 + 200·1+1
    # = 286,801; three members = 860,403.
    assert sum(p.numel() for p in VCritic(512).parameters()) == 860_403


def test_members_shape_min_and_independent_members():
    critic = _make()
    td = critic(_td(torch.randn(6, LATENT)))
    members, value = td["state_value_members"], td["state_value"]
    assert members.shape == (6, 3, 1) and value.shape == (6, 1)
    expected = torch.minimum(torch.minimum(members[:, 0], members[:, 1]), members[:, 2])
    assert torch.equal(value, expected)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert (members[:, i] - members[:, j]).abs().min() > 1e-4
    # Batch dims stay leading: [B, T, L] -> [B, T, M, 1].
    td = critic(_td(torch.randn(2, 5, LATENT)))
    assert td["state_value_members"].shape == (2, 5, 3, 1)
    assert td["state_value"].shape == (2, 5, 1)


def test_orthogonal_init_with_gain_sqrt2_and_zero_bias():
    params = _make().net.ensemble.params
    # act_norm_mlp indices: Linear 0 (32->16), Linear 3 (16->8), last Linear 6 (8->1); every
    # weight has rows <= cols, so W Wᵀ = gain² I = 2 I.
    for index, rows in (("0", 16), ("3", 8), ("6", 1)):
        weight, bias = params[index, "weight"], params[index, "bias"]
        assert weight.shape[:2] == (3, rows)
        gram = weight @ weight.transpose(-1, -2)
        assert torch.allclose(gram, 2 * torch.eye(rows).expand(3, rows, rows), atol=1e-5)
        assert not bias.any()
    # LayerNorms keep their default affine parameters.
    assert torch.equal(params["2", "weight"], torch.ones(3, 16))


@pytest.mark.parametrize("detach_latent", (True, False))
def test_latent_gets_gradient_only_if_not_detached(detach_latent):
    critic = _make(detach_latent=detach_latent)
    latent = torch.randn(6, LATENT).requires_grad_()
    critic(_td(latent))["state_value"].sum().backward()
    if detach_latent:
        assert latent.grad is None
    else:
        assert latent.grad.abs().sum() > 0


def test_gradients_reach_every_parameter_of_every_member():
    critic = _make()
    critic(_td(torch.randn(6, LATENT)))["state_value_members"].sum().backward()
    for name, param in critic.named_parameters():
        assert param.grad is not None, name
        per_member = param.grad.reshape(3, -1).abs().sum(-1)
        assert (per_member > 0).all(), name


def test_state_dict_and_deepcopy_round_trips(tmp_path):
    critic = _make(seed=0)
    td = _td(torch.randn(6, LATENT))
    expected = critic(td.copy())["state_value_members"]
    torch.save(critic.state_dict(), tmp_path / "critic.pt")
    loaded = _make(seed=1)
    loaded.load_state_dict(torch.load(tmp_path / "critic.pt", weights_only=True))
    clone = copy.deepcopy(critic)
    for other in (loaded, clone):
        assert torch.equal(other(td.copy())["state_value_members"], expected)
    with torch.no_grad():
        clone.net.ensemble.params["6", "bias"].add_(1.0)
    assert torch.equal(critic(td.copy())["state_value_members"], expected)
