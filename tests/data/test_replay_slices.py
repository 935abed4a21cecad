"""The training replay buffer (``make_slice_replay_buffer``) must feed the world
model its episodes' terminal transitions: a fall is the last row of its episode, and a buffer of
H + 1-row slices held it only in the row the loss drops, so the termination head learned
P(fall) = 0 (seen on Ant: predicted falls 250x too rare)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict

from torchrl_flowmbpo.data import make_slice_replay_buffer, sample_start_observations
from torchrl_flowmbpo.modules.models import PWMWorldModel
from torchrl_flowmbpo.objectives import WorldModelLoss
from torchrl_flowmbpo.trainers.factories import make_reward_normalization

H = 4
EPISODE = 8  # every episode: 8 transitions, the last one terminated
ENVS, STEPS = 4, 64
OBS, ACT = 3, 2


def falling_episodes() -> TensorDict:
    """A collector-style ``[ENVS, STEPS]`` batch of back-to-back 8-step episodes that end in
    ``terminated``; the observation is the step index, so a slice's order can be checked."""
    step = torch.arange(STEPS).remainder(EPISODE).expand(ENVS, STEPS)
    traj = torch.arange(ENVS).unsqueeze(1) * 100 + torch.arange(STEPS).div(
        EPISODE, rounding_mode="floor"
    )
    obs = step.unsqueeze(-1).float().expand(ENVS, STEPS, OBS)
    terminated = (step == EPISODE - 1).unsqueeze(-1)
    return TensorDict(
        {
            "observation": obs,
            "action": torch.zeros(ENVS, STEPS, ACT),
            ("collector", "traj_ids"): traj,
            ("next", "observation"): obs + 1,
            ("next", "reward"): torch.ones(ENVS, STEPS, 1),
            ("next", "terminated"): terminated,
            ("next", "truncated"): torch.zeros_like(terminated),
            ("next", "done"): terminated,
        },
        batch_size=[ENVS, STEPS],
    )


@pytest.fixture(scope="module")
def buffer():
    """The training replay buffer (H-row slices, 512 per sample) holding the falling episodes."""
    cfg = OmegaConf.create(
        {
            "algo": {
                "horizon": H,
                "wm_batch_slices": 512,
                "reward_norm": "none",
                "reward_clip": None,
            },
            "replay_buffer": {"size": 10_000},
        }
    )
    buffer = make_slice_replay_buffer(
        cfg.replay_buffer.size, H, transform=make_reward_normalization(cfg), device="cpu"
    )
    buffer.extend(falling_episodes())
    return buffer


@pytest.fixture(scope="module")
def slices(buffer):
    torch.manual_seed(0)
    return buffer.sample(batch_size=512 * H).reshape(-1, H)


def test_slices_hold_h_consecutive_transitions_of_one_episode(slices):
    assert slices.shape == (512, H)
    index = slices.get("observation")[..., 0]
    assert torch.equal(index.diff(dim=1), torch.ones(512, H - 1))
    assert int(slices.get(("collector", "traj_ids")).unique(dim=1).shape[1]) == 1


def test_terminal_transitions_reach_the_world_model_loss(slices):
    # Starts 0..EPISODE-H are equally likely; only the last one holds the fall: 1 slice in 5.
    holds_fall = slices.get(("next", "terminated")).any(dim=1).squeeze(-1).float()
    assert holds_fall.mean().item() == pytest.approx(1 / (EPISODE - H + 1), abs=0.05)
    world_model = PWMWorldModel(OBS, ACT, latent_dim=16, units=(16, 16))
    out = WorldModelLoss(world_model, horizon=H)(slices)
    assert out["termination_rate"].item() == pytest.approx(holds_fall.mean().item() / H)


@pytest.mark.parametrize("count", [3, 700])  # fewer and more than the WM batch's 512 slices
def test_actor_start_states_are_slice_starts(buffer, count):
    torch.manual_seed(0)
    start = sample_start_observations(buffer, count, H)
    assert start.batch_size == torch.Size([count])
    assert list(start.keys()) == ["observation"]
    # An H-row slice starts at most EPISODE - H steps into its episode: never at the fall.
    steps = set(start.get("observation")[:, 0].int().tolist())
    assert steps <= set(range(EPISODE - H + 1))
    if count > 100:
        assert steps == set(range(EPISODE - H + 1))
