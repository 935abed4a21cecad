"""InputNormalizer: SHAC's running observation normalisation in front of actor and critic."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import SoftUpdate

from torchrl_flowmbpo.modules import GaussianActor, VCritic
from torchrl_flowmbpo.modules.builders import build_critic
from torchrl_flowmbpo.modules.models import InputNormalizer
from torchrl_flowmbpo.objectives import PWMValueLoss


def _data() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(256, 5) * torch.tensor([1.0, 0.1, 3.0, 10.0, 0.5]) + 4.0


def test_statistics_are_the_data_moments_and_forward_never_changes_them() -> None:
    norm = InputNormalizer(5)
    data = _data()
    norm.update(data[:100])
    norm.update(data[100:])
    torch.testing.assert_close(norm.stats.mean.float(), data.mean(0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        norm.stats.var.float(), data.var(0, correction=0), rtol=1e-4, atol=1e-4
    )
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    out = norm(data)
    assert all(torch.equal(before[k], v) for k, v in norm.state_dict().items())
    torch.testing.assert_close(out.mean(0), torch.zeros(5), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(0, correction=0), torch.ones(5), atol=1e-3, rtol=0)


def test_clip_bounds_the_normalised_input() -> None:
    norm = InputNormalizer(1, clip=2.0)
    norm.update(torch.tensor([[-1.0], [1.0]]))
    assert norm(torch.tensor([[100.0], [-100.0]])).flatten().tolist() == [2.0, -2.0]


def test_actor_and_critic_read_the_normalised_input() -> None:
    norm = InputNormalizer(5)
    norm.update(_data())
    torch.manual_seed(1)
    actor = GaussianActor(5, 1, hidden=(16,), latent_key="observation", input_norm=norm)
    critic = VCritic(5, hidden=(16,), latent_key="observation", input_norm=norm)
    obs = _data()[:8]
    td = TensorDict(observation=obs, batch_size=[8])
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        action = actor(td.clone())["action"]
    expected = torch.tanh(actor.policy_net.mu_net(norm(obs)))
    torch.testing.assert_close(action, expected)
    value = critic(td.clone())["state_value"]
    torch.testing.assert_close(value, critic.net.ensemble(norm(obs)).min(0).values)


def test_gradient_reaches_the_raw_input_scaled_by_the_std() -> None:
    norm = InputNormalizer(5)
    norm.update(_data())
    obs = _data()[:4].requires_grad_(True)
    (grad,) = torch.autograd.grad(norm(obs).sum(), obs)
    expected = (norm.stats.var + norm.eps).rsqrt().float().expand(4, 5)
    inside = (norm(obs).abs() < norm.clip).detach()
    torch.testing.assert_close(grad[inside], expected[inside])


def test_statistics_travel_with_the_actor_state_dict() -> None:
    norm = InputNormalizer(5)
    norm.update(_data())
    actor = GaussianActor(5, 1, hidden=(16,), latent_key="observation", input_norm=norm)
    fresh = GaussianActor(
        5, 1, hidden=(16,), latent_key="observation", input_norm=InputNormalizer(5)
    )
    fresh.load_state_dict(actor.state_dict())
    torch.testing.assert_close(fresh.policy_net.input_norm.stats.mean, norm.stats.mean)


def test_bad_clip_is_refused() -> None:
    with pytest.raises(ValueError, match="clip must be > 0, got 0"):
        InputNormalizer(3, clip=0)


def test_target_critic_normalises_with_the_current_statistics() -> None:
    # A target critic is a copy of the critic's parameters and buffers that SoftUpdate averages
    # for parameters only: statistics held there would stay those of the day it was made.
    norm = InputNormalizer(5)
    critic = VCritic(5, hidden=(8,), latent_key="observation", input_norm=norm, num_members=1)
    loss = PWMValueLoss(critic, functional=True, target_critic=True)
    updater = SoftUpdate(loss, tau=0.1)
    assert not [key for key in critic.state_dict() if "input_norm" in key]
    norm.update(_data())
    updater.step()
    obs = _data()[:4]
    with loss.target_critic_network_params.to_module(loss.critic_network):
        target = loss.critic_network(TensorDict(observation=obs, batch_size=[4]))["state_value"]
    with loss.target_critic_network_params.to_module(critic):
        expected = critic.net.ensemble(norm(obs)).min(0).values
    torch.testing.assert_close(target, expected)


def test_critic_spec_with_normalised_input_needs_the_actors_normaliser() -> None:
    spec = {"hidden": [8], "latent_key": "observation", "input_norm": True}
    with pytest.raises(ValueError, match="needs the actor's InputNormalizer"):
        build_critic(spec, 5)
    norm = InputNormalizer(5)
    assert build_critic(spec, 5, input_norm=norm).net.input_norm is norm
