"""diagnostics.warm_start: the controller prefill of the sampling policy and actor cloning."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from torchrl_flowmbpo.diagnostics import warm_start as warm_start_module
from torchrl_flowmbpo.modules.builders import build_actor, build_world_model


@pytest.fixture(scope="module")
def warm_start():
    return warm_start_module


def test_controller_prefill_replaces_actions_for_its_frames_only(warm_start):
    policy = TensorDictModule(lambda obs: obs[..., :2] * 0 - 0.5, ["observation"], ["action"])
    calls = []

    def controller(obs: torch.Tensor) -> torch.Tensor:
        calls.append(obs.shape[0])
        return torch.full((obs.shape[0], 2), 0.25)

    prefill = warm_start.ControllerPrefill(policy, controller, frames=6)
    actions = []
    for _ in range(4):  # batches of 3 envs: frames 0-2 and 3-5 scripted, then the policy
        td = prefill(TensorDict(observation=torch.ones(3, 4), batch_size=[3]))
        actions.append(float(td["action"].unique()))
    assert actions == [0.25, 0.25, -0.5, -0.5]
    assert calls == [3, 3] and prefill.frames_done == 6
    assert (prefill.in_keys, prefill.out_keys) == (["observation"], ["action"])


def test_controller_noise_is_gaussian_about_the_scripted_action_and_clipped(warm_start):
    torch.manual_seed(0)
    policy = TensorDictModule(lambda obs: obs[..., :2] * 0, ["observation"], ["action"])
    targets = torch.tensor([0.1, 0.9])
    prefill = warm_start.ControllerPrefill(
        policy, lambda obs: targets.expand(obs.shape[0], 2), frames=20_000, noise_std=0.3
    )
    action = prefill(TensorDict(observation=torch.ones(20_000, 4), batch_size=[20_000]))["action"]
    # Far from the bounds the noise is N(0, 0.3^2); near +1 the clip cuts the upper tail.
    torch.testing.assert_close(action[:, 0].mean(), torch.tensor(0.1), atol=0.01, rtol=0)
    torch.testing.assert_close(action[:, 0].std(), torch.tensor(0.3), atol=0.01, rtol=0)
    assert action.max() == 1.0 and action.min() >= -1.0
    assert (action[:, 1] == 1.0).float().mean() > 0.3  # P(0.9 + 0.3 eps > 1) = 0.37


def test_controller_noise_must_not_be_negative(warm_start):
    policy = TensorDictModule(lambda obs: obs, ["observation"], ["action"])
    with pytest.raises(ValueError, match=r"noise_std=-0\.1 must be >= 0"):
        warm_start.ControllerPrefill(policy, lambda obs: obs, frames=1, noise_std=-0.1)


def test_behaviour_cloning_fits_the_actions_and_leaves_the_world_model(warm_start):
    torch.manual_seed(0)
    spec = {"type": "mlp", "latent_dim": 16, "units": [32], "encoder_units": [32]}
    world_model = build_world_model(spec, 5, 2)
    actor = build_actor({"type": "gaussian", "hidden": [32]}, world_model.latent_dim, 2)
    optimizer = torch.optim.Adam(actor.parameters(), lr=1e-2)
    obs = torch.randn(64, 5)
    # A smooth target the actor can represent: a fixed map of the observation into (-1, 1).
    batch = TensorDict(observation=obs, action=0.8 * torch.tanh(obs[:, :2]), batch_size=[64])
    before = {k: v.clone() for k, v in world_model.state_dict().items()}
    losses = [
        warm_start.behaviour_cloning_step(world_model, actor, optimizer, batch) for _ in range(300)
    ]
    assert losses[-1] < 0.1 * losses[0]
    for key, value in world_model.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)
