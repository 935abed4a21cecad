"""Tests for the Gaussian actor and the FlowActor (torchrl_flowmbpo.modules.actors)."""

from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_flowmbpo.flows import integrate
from torchrl_flowmbpo.modules.actors import (
    FlowActor,
    GaussianActor,
    empirical_action_std,
)

LATENT, ACTION, HIDDEN = 16, 3, (32, 16)
NON_RANDOM = (ExplorationType.DETERMINISTIC, ExplorationType.MODE, ExplorationType.MEAN)
ACTORS = (GaussianActor, FlowActor)


def _make(actor_cls, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    if actor_cls is FlowActor:
        # PyTorch's initialisation, not FlowActor's default zeroed last velocity layer: these
        # tests need a velocity field that is not 0 (a zero field makes the ODE the identity,
        # its deterministic action tanh(0), and passes no gradient below the last layer).
        kwargs.setdefault("velocity_init", "default")
    return actor_cls(LATENT, ACTION, hidden=HIDDEN, **kwargs)


def _td(batch: int = 8, seed: int = 1, latent: torch.Tensor | None = None) -> TensorDict:
    if latent is None:
        latent = torch.randn(batch, LATENT, generator=torch.Generator().manual_seed(seed))
    return TensorDict({"latent": latent}, batch_size=latent.shape[:-1])


def _act(actor, td: TensorDict, mode: ExplorationType) -> torch.Tensor:
    with set_exploration_type(mode):
        return actor(td.copy())["action"]


def _last_linear(actor) -> torch.nn.Linear:
    net = actor.policy_net
    return net.mu_net[-1] if isinstance(actor, GaussianActor) else net.velocity_net[-1]


def test_parameter_counts_match_reference():
    numel = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # Latent 512, Ant's 8 actions. 512·400+400 + LN 800 + 400·200+200 + LN 400
    # + 200·100+100 + LN 200 + 100·8+8 + log σ 8 = 307,716.
    assert numel(GaussianActor(512, 8)) == 307_716
    # FlowActor input [z, a, tau] is 512+8+1 = 521: 521·400+400 = 208,800, + LN 800 + 80,200
    # + LN 400 + 20,100 + LN 200 + 808 + log σ 8 = 311,316. Two time frequencies add 4 inputs
    # (sin, cos each), i.e. 4·400 = 1,600 weights.
    assert numel(FlowActor(512, 8)) == 311_316
    assert numel(FlowActor(512, 8, time_embed_freqs=2)) == 312_916


@pytest.mark.parametrize("actor_cls", ACTORS)
@pytest.mark.parametrize("mode", (ExplorationType.RANDOM, *NON_RANDOM))
def test_actions_in_bounds_for_every_interaction_type(actor_cls, mode):
    actor = _make(actor_cls)
    td = _td()
    assert _act(actor, td, mode).abs().max() <= 1
    # Push the pre-tanh action to about ±20 so tanh saturates: still within [-1, 1].
    with torch.no_grad():
        _last_linear(actor).bias.copy_(torch.tensor([20.0, -20.0, 0.0]))
    action = _act(actor, td, mode)
    assert action.isfinite().all() and action.abs().max() <= 1
    assert action[:, 0].min() > 0.999 and action[:, 1].max() < -0.999


@pytest.mark.parametrize("mode", NON_RANDOM)
def test_gaussian_deterministic_is_exactly_tanh_loc(mode):
    actor = _make(GaussianActor)
    td = _td()
    with torch.no_grad():
        _last_linear(actor).bias.copy_(torch.tensor([20.0, -20.0, 0.0]))
    loc, _ = actor.policy_net(td["latent"])
    first, second = _act(actor, td, mode), _act(actor, td, mode)
    assert torch.equal(first, second)
    # Exact, also where tanh saturates to ±1.0 (TanhNormal's safe_tanh would give ±(1 - 1e-6)).
    assert torch.equal(first, torch.tanh(loc))


@pytest.mark.parametrize("mode", NON_RANDOM)
def test_flow_deterministic_is_the_zero_noise_ode(mode):
    actor = _make(FlowActor, integrator="heun", flow_steps=2)
    td = _td()
    net = actor.policy_net
    latent = td["latent"]
    expected = torch.tanh(
        integrate(
            lambda a, tau: net.velocity(latent, a, tau),
            torch.zeros(latent.shape[0], ACTION),
            num_steps=2,
            method="heun",
        )
    )
    first, second = _act(actor, td, mode), _act(actor, td, mode)
    assert torch.equal(first, second)
    assert torch.equal(first, expected)
    assert torch.equal(first, net.deterministic(latent))


@pytest.mark.parametrize("actor_cls", ACTORS)
def test_random_actions_differ_across_calls(actor_cls):
    actor = _make(actor_cls)
    td = _td()
    first, second = (_act(actor, td, ExplorationType.RANDOM) for _ in range(2))
    assert (first - second).abs().min() > 0
    # The default interaction type is RANDOM: a plain call samples too.
    assert not torch.equal(actor(td.copy())["action"], actor(td.copy())["action"])


def test_gaussian_random_std_at_zero_loc_matches_tanh_of_normal():
    actor = _make(GaussianActor)
    with torch.no_grad():
        _last_linear(actor).weight.zero_()
        _last_linear(actor).bias.zero_()
    td = _td(batch=20_000)
    torch.manual_seed(2)
    actions = _act(actor, td, ExplorationType.RANDOM)
    sigma = torch.exp(torch.tensor(-1.0))
    reference = torch.tanh(
        sigma * torch.randn(20_000, ACTION, generator=torch.Generator().manual_seed(3))
    )
    # std of tanh(N(0, 0.37²)) ≈ 0.35; its Monte-Carlo error at 20k samples is ≈ 0.002.
    assert torch.allclose(actions.std(0), reference.std(0), atol=0.01)
    assert actions.mean(0).abs().max() < 0.01
    # The logging helper estimates the same quantity per state and leaves its input alone.
    small = _td(batch=500)
    assert abs(empirical_action_std(actor, small, num_samples=64) - reference.std()) < 0.01
    assert set(small.keys()) == {"latent"}


def test_flow_random_with_zero_velocity_is_tanh_of_scaled_noise():
    actor = _make(FlowActor, init_log_std=-0.5)
    with torch.no_grad():
        _last_linear(actor).weight.zero_()
        _last_linear(actor).bias.zero_()
    td = _td()
    torch.manual_seed(4)
    action = _act(actor, td, ExplorationType.RANDOM)
    torch.manual_seed(4)
    noise = torch.randn(8, ACTION)
    assert torch.equal(action, torch.tanh(torch.exp(torch.tensor(-0.5)) * noise))
    assert torch.equal(actor.policy_net.sample(td["latent"], noise), action)


def test_flow_distribution_sample_shape_and_log_prob_of_its_own_sample_only():
    actor = _make(FlowActor)
    td = _td()
    dist = actor.get_dist(td.copy())
    samples = dist.rsample((5,))
    assert samples.shape == (5, 8, ACTION) and samples.abs().max() <= 1
    assert samples.requires_grad
    assert (samples[0] - samples[1]).abs().min() > 0
    assert dist.log_prob(samples).shape == (5, 8)
    # Any other action (even a slice of the sample) would need the inverse of the solve.
    with pytest.raises(NotImplementedError, match="inverse of the discrete ODE solve"):
        dist.log_prob(samples[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"integrator": "rk5"}, r"'rk5'.*'euler', 'midpoint', 'heun', 'rk4'"),
        ({"flow_steps": 0}, "flow_steps must be an int >= 1, got 0"),
        ({"flow_steps": True}, "got True"),
        ({"time_embed_freqs": -1}, "got -1"),
        ({"init_log_std": -2.0}, "below the floor"),
    ],
)
def test_flow_actor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FlowActor(LATENT, ACTION, hidden=HIDDEN, **kwargs)


@pytest.mark.parametrize("actor_cls", ACTORS)
def test_log_std_floor_is_an_in_place_clamp_with_live_gradient(actor_cls):
    actor = _make(actor_cls)
    log_std = actor.policy_net.log_std
    with torch.no_grad():
        log_std.fill_(-3.0)
    action = _act(actor, _td(), ExplorationType.RANDOM)
    assert torch.equal(log_std.detach(), torch.full((ACTION,), -1.427))
    assert torch.equal(actor.policy_net.std, torch.full((ACTION,), -1.427).exp())
    # A clamp inside the graph would leave the parameter at -3 with a zero gradient.
    action.sum().backward()
    assert log_std.grad.abs().min() > 0


@pytest.mark.parametrize("actor_cls", ACTORS)
@pytest.mark.parametrize("detach_latent", (True, False))
def test_gradients_reach_every_parameter_and_the_latent_only_if_not_detached(
    actor_cls, detach_latent
):
    actor = _make(actor_cls, detach_latent=detach_latent)
    latent = torch.randn(8, LATENT).requires_grad_()
    td = _td(latent=latent)
    # Two calls before one backward, as in an imagined rollout: the in-place floor of the second
    # call must not invalidate the first call's graph.
    actions = [_act(actor, td, ExplorationType.RANDOM) for _ in range(2)]
    sum(a.sum() for a in actions).backward()
    for name, param in actor.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    if detach_latent:
        assert latent.grad is None or not latent.grad.any()
    else:
        assert latent.grad.abs().sum() > 0


def _deterministic(actor, td):
    return _act(actor, td, ExplorationType.DETERMINISTIC)


@pytest.mark.parametrize("actor_cls", ACTORS)
def test_state_dict_round_trip_through_disk(actor_cls, tmp_path):
    actor = _make(actor_cls, seed=0)
    with torch.no_grad():
        actor.policy_net.log_std.fill_(-0.7)
    td = _td()
    state = actor.state_dict()
    if actor_cls is FlowActor:
        assert any("velocity_net" in key for key in state)
    fresh = _make(actor_cls, seed=1)
    assert not torch.equal(_deterministic(fresh, td), _deterministic(actor, td))
    fresh.load_state_dict(state)
    torch.save(state, tmp_path / "actor.pt")
    loaded = _make(actor_cls, seed=2)
    loaded.load_state_dict(torch.load(tmp_path / "actor.pt", weights_only=True))
    for other in (fresh, loaded):
        assert state.keys() == other.state_dict().keys()
        for key, value in other.state_dict().items():
            assert torch.equal(value, state[key]), key
        assert torch.equal(_deterministic(other, td), _deterministic(actor, td))


@pytest.mark.parametrize("actor_cls", ACTORS)
def test_deepcopy_keeps_every_parameter_and_owns_its_networks(actor_cls):
    actor = _make(actor_cls)
    td = _td()
    clone = copy.deepcopy(actor)
    for (name, p), (_, q) in zip(actor.named_parameters(), clone.named_parameters(), strict=True):
        assert torch.equal(p, q) and p is not q, name
    before = _deterministic(actor, td)
    assert torch.equal(_deterministic(clone, td), before)
    if actor_cls is FlowActor:
        # The distribution kwarg was remapped to the copy's net, not shared with the original.
        assert clone.module[1].distribution_kwargs["policy"] is clone.policy_net
        assert actor.module[1].distribution_kwargs["policy"] is actor.policy_net
    with torch.no_grad():
        _last_linear(clone).bias.add_(1.0)
    assert torch.equal(_deterministic(actor, td), before)
    assert not torch.equal(_deterministic(clone, td), before)


def test_flow_actor_to_moves_the_distribution_net():
    actor = _make(FlowActor).to(torch.float64)
    td = _td(latent=torch.randn(4, LATENT, dtype=torch.float64))
    assert actor.module[1].distribution_kwargs["policy"].log_std.dtype == torch.float64
    for mode in (ExplorationType.RANDOM, ExplorationType.DETERMINISTIC):
        assert _act(actor, td, mode).dtype == torch.float64
