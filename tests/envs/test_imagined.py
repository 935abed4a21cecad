"""Tests for the imagined latent env: specs, batch shapes, plain-loop equivalence, gradients."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type
from torchrl.objectives import hold_out_net

from torchrl_flowmbpo.envs import ImaginedLatentEnv
from torchrl_flowmbpo.modules import FlowActor, GaussianActor
from torchrl_flowmbpo.modules.models import FlowWorldModel, LatentWorldModel, PWMWorldModel

OBS, ACT, LATENT = 5, 3, 16
SMALL = {"latent_dim": LATENT, "units": (32,), "encoder_units": (32,)}
WM_CLASSES = [PWMWorldModel, FlowWorldModel]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _make_wm(cls: type[LatentWorldModel], termination_head: bool = True) -> LatentWorldModel:
    wm = cls(OBS, ACT, termination_head=termination_head, **SMALL)
    # The heads start with a zero last layer (constant outputs), which would make any
    # "heads read z_t" comparison vacuous; give them input-dependent outputs.
    with torch.no_grad():
        for head in (wm.reward_head, wm.termination_head):
            if head is not None:
                head[-1].weight.normal_(0.0, 0.5)
    return wm


def _policy() -> TensorDictModule:
    """A deterministic actor: a = tanh(W z + b), a fixed function of the latent."""
    return TensorDictModule(
        nn.Sequential(nn.Linear(LATENT, ACT), nn.Tanh()), in_keys=["latent"], out_keys=["action"]
    )


def _start(wm: LatentWorldModel, batch_shape: tuple[int, ...]) -> TensorDict:
    latent = wm.encode(torch.randn(*batch_shape, OBS)).detach()
    return TensorDict(latent=latent, batch_size=batch_shape)


def _rollout(env: ImaginedLatentEnv, policy, start: TensorDict, horizon: int) -> TensorDict:
    return env.rollout(
        horizon,
        policy,
        tensordict=start,
        auto_reset=True,
        break_when_any_done=False,
        return_contiguous=True,
    )


@pytest.fixture(params=WM_CLASSES, ids=lambda c: c.__name__)
def wm_cls(request) -> type[LatentWorldModel]:
    return request.param


@pytest.mark.parametrize("termination_head", [True, False], ids=["term", "noterm"])
def test_check_env_specs(wm_cls, termination_head: bool) -> None:
    env = ImaginedLatentEnv(_make_wm(wm_cls, termination_head))
    check_env_specs(env)
    assert ("termination_logit" in env.observation_spec) == termination_head
    # Random starts (used when no latent is given) are on the SimNorm manifold.
    start = env.reset()
    torch.testing.assert_close(start["latent"].view(2, 8).sum(-1), torch.ones(2))


@pytest.mark.parametrize("batch_shape", [(5,), (3, 4)], ids=["B5", "B3x4"])
def test_rollout_batch_shapes(wm_cls, batch_shape: tuple[int, ...]) -> None:
    env = ImaginedLatentEnv(_make_wm(wm_cls))
    horizon = 4
    traj = _rollout(env, _policy(), _start(env.latent_world_model, batch_shape), horizon)
    assert traj.batch_size == (*batch_shape, horizon)
    assert traj["next", "reward"].shape == (*batch_shape, horizon, 1)
    assert traj["next", "latent"].shape == (*batch_shape, horizon, LATENT)
    assert traj["next", "termination_logit"].shape == (*batch_shape, horizon, 1)
    assert traj["action"].shape == (*batch_shape, horizon, ACT)


@pytest.mark.parametrize("termination_head", [True, False], ids=["term", "noterm"])
def test_rollout_matches_plain_loop(wm_cls, termination_head: bool) -> None:
    wm = _make_wm(wm_cls, termination_head)
    env, policy = ImaginedLatentEnv(wm), _policy()
    start, horizon = _start(wm, (6,)), 5
    traj = _rollout(env, policy, start, horizon)

    z = start["latent"]
    with torch.no_grad():
        for t in range(horizon):
            a = policy.module(z)
            torch.testing.assert_close(traj["latent"][:, t], z, rtol=0, atol=1e-6)
            torch.testing.assert_close(traj["action"][:, t], a, rtol=0, atol=1e-6)
            # Heads read the current latent z_t, before the transition (docs/algorithm.md).
            torch.testing.assert_close(
                traj["next", "reward"][:, t], wm.reward(z, a), rtol=0, atol=1e-6
            )
            if termination_head:
                torch.testing.assert_close(
                    traj["next", "termination_logit"][:, t],
                    wm.termination_logit(z, a),
                    rtol=0,
                    atol=1e-6,
                )
            z_next = wm.next(z, a)
            torch.testing.assert_close(traj["next", "latent"][:, t], z_next, rtol=0, atol=1e-6)
            # The check is discriminative: reading z_{t+1} would give a different reward.
            assert not torch.allclose(wm.reward(z_next, a), wm.reward(z, a), atol=1e-4)
            z = z_next
    if not termination_head:
        assert "termination_logit" not in traj["next"]


def test_rollout_never_done(wm_cls) -> None:
    wm = _make_wm(wm_cls)
    with torch.no_grad():
        # Even a head that is sure of termination must not end imagined episodes.
        wm.termination_head[-1].bias.fill_(20.0)
    traj = _rollout(ImaginedLatentEnv(wm), _policy(), _start(wm, (4,)), 6)
    for key in ("done", "terminated"):
        assert not traj[key].any()
        assert not traj["next", key].any()
    assert (traj["next", "termination_logit"] > 10).all()


def test_gradients_through_rollout(wm_cls) -> None:
    wm = _make_wm(wm_cls)
    env, policy = ImaginedLatentEnv(wm), _policy()
    start = _start(wm, (4,))
    z0 = start["latent"].requires_grad_(True)
    traj = _rollout(env, policy, start, 16)
    assert traj.batch_size == (4, 16)
    traj["next", "reward"].sum().backward()
    assert z0.grad is not None and z0.grad.abs().sum() > 0
    for name, p in policy.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # Without hold_out_net the world model is trained by this loss too.
    assert wm.reward_head[-1].weight.grad.abs().sum() > 0
    assert not traj["done"].any() and not traj["next", "terminated"].any()


def test_hold_out_net_freezes_world_model_only(wm_cls) -> None:
    wm = _make_wm(wm_cls)
    env, policy = ImaginedLatentEnv(wm), _policy()
    start = _start(wm, (4,))
    z0 = start["latent"].requires_grad_(True)
    with hold_out_net(env):
        traj = _rollout(env, policy, start, 16)
        traj["next", "reward"].sum().backward()
    # The PWM actor-loss pattern: gradients flow *through* the model into the actor and the
    # start latent, but none accumulate in the world-model parameters.
    for name, p in wm.named_parameters():
        assert p.grad is None, name
        assert p.requires_grad, name  # restored on exit
    for name, p in policy.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert z0.grad is not None and z0.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------
# imagine(): rollout()'s trajectory without EnvBase's per-step machinery.


def _trajectories_and_grads(env, actor, start, horizon):
    """(rollout, imagine) trajectories from one start and one RNG state, with the gradients of
    one scalar of each w.r.t. the actor's parameters and the start latent."""
    results = []
    for method in ("rollout", "imagine"):
        begin = start.clone()
        z0 = begin["latent"].requires_grad_(True)
        torch.manual_seed(1)
        with set_exploration_type(ExplorationType.RANDOM):
            if method == "rollout":
                traj = _rollout(env, actor, begin, horizon)
            else:
                traj = env.imagine(actor, begin, horizon)
        objective = traj["next", "reward"].sum() + traj["next", "latent"].pow(2).sum()
        if "termination_logit" in traj["next"]:
            objective = objective + traj["next", "termination_logit"].sigmoid().sum()
        grads = torch.autograd.grad(objective, [z0, *actor.parameters()])
        results.append((traj, grads))
    return results


@pytest.mark.parametrize("actor_cls", [GaussianActor, FlowActor], ids=["gaussian", "flow"])
@pytest.mark.parametrize("termination_head", [True, False], ids=["term", "noterm"])
@pytest.mark.parametrize("batch_shape", [(5,), (3, 4)], ids=["B5", "B3x4"])
def test_imagine_equals_rollout(wm_cls, actor_cls, termination_head, batch_shape) -> None:
    wm = _make_wm(wm_cls, termination_head)
    # FlowActor with PyTorch's init: its default zeroed last velocity layer gives zero gradients.
    init = {"velocity_init": "default"} if actor_cls is FlowActor else {}
    env, actor = ImaginedLatentEnv(wm), actor_cls(LATENT, ACT, hidden=(32,), **init)
    (expected, expected_grads), (traj, grads) = _trajectories_and_grads(
        env, actor, _start(wm, batch_shape), 4
    )
    assert traj.batch_size == expected.batch_size == (*batch_shape, 4)
    assert traj.device == expected.device
    assert set(traj.keys(True, True)) == set(expected.keys(True, True))
    for key in expected.keys(True, True):
        assert traj[key].dtype == expected[key].dtype, key
        # Bit-identical: the same operations on the same random draws.
        assert torch.equal(traj[key], expected[key]), key
    # The actor samples (RANDOM exploration), so equal actions mean equal random draws.
    assert traj["action"].std() > 0
    for got, want in zip(grads, expected_grads, strict=True):
        assert torch.equal(got, want)
        assert want.abs().sum() > 0


def test_imagine_rejects_a_non_positive_horizon() -> None:
    wm = _make_wm(PWMWorldModel)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        ImaginedLatentEnv(wm).imagine(_policy(), _start(wm, (2,)), 0)
