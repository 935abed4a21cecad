"""Tests for the latent world models: sizes, init, manifold, flow maths, losses, validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchrl_flowmbpo.flows import INTEGRATORS, integrate
from torchrl_flowmbpo.functional import (
    symlog,
    symlog_two_hot_encode,
    two_hot_encode,
    two_hot_support,
)
from torchrl_flowmbpo.modules.models import (
    PRESETS,
    FlowWorldModel,
    LatentWorldModel,
    PWMWorldModel,
    time_features,
)

OBS, ACT, LATENT, GROUP = 6, 3, 16, 8
SMALL = {"latent_dim": LATENT, "units": (32, 32), "encoder_units": (32,)}
WM_CLASSES = [PWMWorldModel, FlowWorldModel]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _groups(z: torch.Tensor) -> torch.Tensor:
    return z.reshape(*z.shape[:-1], -1, GROUP)


def _assert_on_manifold(z: torch.Tensor, atol: float = 1e-5) -> None:
    g = _groups(z)
    assert (g >= 0).all() and (g <= 1).all()
    torch.testing.assert_close(g.sum(-1), torch.ones_like(g[..., 0]), rtol=0, atol=atol)


def _randomise_last_layer(head: nn.Sequential, std: float = 0.5) -> None:
    # The reward/termination heads start with a zero last layer; give them random weights so
    # that their outputs depend on the inputs.
    with torch.no_grad():
        head[-1].weight.normal_(0.0, std)
        head[-1].bias.normal_(0.0, std)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(5, OBS), torch.rand(5, ACT) * 2 - 1


def _latents(wm: LatentWorldModel, n: int = 5) -> torch.Tensor:
    return wm.encode(torch.randn(n, OBS)).detach()


# --------------------------------------------------------------------------------------------
# Parameter counts (docs/algorithm.md, "World model" and "Flow world model")
# --------------------------------------------------------------------------------------------
ANT_OBS, ANT_ACT = 37, 8


def test_parameter_counts_5M_ant() -> None:
    pwm = PWMWorldModel.from_preset("5M", ANT_OBS, ANT_ACT, reward_head="scalar")
    assert _count(pwm.encoder) == 142_848
    assert _count(pwm.dynamics) == 795_136
    assert _count(pwm.reward_head) == 531_969
    assert _count(pwm.termination_head) == 531_969
    # (No termination head on the other two: it is counted above, and init is slow on CPU.)
    twohot = PWMWorldModel.from_preset(
        "5M", ANT_OBS, ANT_ACT, reward_head="twohot", termination_head=False
    )
    assert _count(twohot.reward_head) == 583_269
    flow = FlowWorldModel.from_preset(
        "5M", ANT_OBS, ANT_ACT, reward_head="scalar", termination_head=False
    )
    assert _count(flow.velocity_net) == 794_624
    # The flow model swaps only F for v_θ: encoder and heads are the same size.
    assert _count(flow.encoder) == 142_848
    assert _count(flow.reward_head) == 531_969
    # Reference totals without the termination head: 1.470M scalar, 1.521M two-hot.
    assert round((_count(pwm) - 531_969) / 1e6, 3) == 1.470
    assert round(_count(twohot) / 1e6, 3) == 1.521


def test_parameter_counts_48M_ant() -> None:
    # ~18M parameters, built once (no termination head to save time and memory).
    pwm = PWMWorldModel.from_preset(
        "48M", ANT_OBS, ANT_ACT, reward_head="scalar", termination_head=False
    )
    assert pwm.latent_dim == 768
    assert _count(pwm.encoder) == 7_883_520
    assert _count(pwm.dynamics) == 5_991_168
    assert _count(pwm.reward_head) == 4_614_401
    assert round(_count(pwm) / 1e6, 2) == 18.49


def test_preset_kwargs_override() -> None:
    wm = PWMWorldModel.from_preset("5M", OBS, ACT, latent_dim=64, units=(16,))
    assert wm.latent_dim == 64
    assert wm.dynamics[0].out_features == 16
    assert {"5M", "48M"} <= set(PRESETS)  # other presets may be added


# --------------------------------------------------------------------------------------------
# Initialisation (docs/algorithm.md, "World model", "Reward head", "Termination head")
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", WM_CLASSES)
@pytest.mark.parametrize("reward_head", ["scalar", "twohot"])
def test_initial_reward_is_exactly_zero(cls, reward_head: str, batch) -> None:
    wm = cls(OBS, ACT, reward_head=reward_head, **SMALL)
    obs, action = batch
    out = wm.reward_output(wm.encode(obs), action)
    assert out.shape == (5, 1 if reward_head == "scalar" else 101)
    assert torch.equal(out, torch.zeros_like(out))
    reward = wm.reward(wm.encode(obs), action)
    assert reward.shape == (5, 1)
    # docs/algorithm.md, "Reward head": the zeroed last layer makes the first decoded reward 0.
    assert torch.equal(reward, torch.zeros_like(reward)), reward.flatten().tolist()


@pytest.mark.parametrize("cls", WM_CLASSES)
def test_initial_termination_bias(cls, batch) -> None:
    wm = cls(OBS, ACT, **SMALL)
    obs, action = batch
    z = wm.encode(obs)
    assert wm.has_termination
    logit = wm.termination_logit(z, action)
    assert logit.shape == (5, 1)
    assert torch.equal(logit, torch.full((5, 1), -5.0))
    expected = 1.0 - 1.0 / (1.0 + math.exp(5.0))  # 1 − σ(−5)
    torch.testing.assert_close(
        wm.continue_prob(z, action), torch.full((5, 1), expected), rtol=0, atol=1e-6
    )


def test_term_bias_init_is_configurable(batch) -> None:
    wm = PWMWorldModel(OBS, ACT, term_bias_init=-2.0, **SMALL)
    obs, action = batch
    assert torch.equal(wm.termination_logit(wm.encode(obs), action), torch.full((5, 1), -2.0))


@pytest.mark.parametrize("cls", WM_CLASSES)
def test_no_termination_head(cls, batch) -> None:
    wm = cls(OBS, ACT, termination_head=False, **SMALL)
    obs, action = batch
    z = wm.encode(obs)
    assert not wm.has_termination and wm.termination_head is None
    assert torch.equal(wm.continue_prob(z, action), torch.ones(5, 1))
    assert torch.equal(wm.continue_prob(z[None], action[None]), torch.ones(1, 5, 1))
    with pytest.raises(RuntimeError, match="termination"):
        wm.termination_logit(z, action)


@pytest.mark.parametrize("cls", WM_CLASSES)
@pytest.mark.parametrize("termination_head", [True, False])
def test_transition_heads_read_the_current_latent(cls, termination_head: bool, batch) -> None:
    wm = cls(OBS, ACT, termination_head=termination_head, **SMALL)
    _randomise_last_layer(wm.reward_head)
    if termination_head:
        _randomise_last_layer(wm.termination_head)
    obs, action = batch
    z = wm.encode(obs)
    next_latent, reward_output, logit = wm.transition(z, action)
    assert torch.equal(next_latent, wm.next(z, action))
    assert torch.equal(reward_output, wm.reward_output(z, action))
    # R(z_t, a_t), not R(z_{t+1}, a_t): the heads must not read the new latent.
    assert not torch.allclose(reward_output, wm.reward_output(next_latent, action))
    if termination_head:
        assert torch.equal(logit, wm.termination_logit(z, action))
        assert not torch.allclose(logit, wm.termination_logit(next_latent, action))
    else:
        assert logit is None


@pytest.mark.parametrize("cls", WM_CLASSES)
def test_wm_linears_are_trunc_normal(cls) -> None:
    wm = cls(OBS, ACT, **SMALL)
    for name, m in wm.named_modules():
        if isinstance(m, nn.Linear):
            assert m.weight.abs().max() <= 0.04, name
            if not name.startswith("termination_head"):
                assert torch.equal(m.bias, torch.zeros_like(m.bias)), name
        if isinstance(m, nn.LayerNorm):
            assert torch.equal(m.weight, torch.ones_like(m.weight)), name
            assert torch.equal(m.bias, torch.zeros_like(m.bias)), name


# --------------------------------------------------------------------------------------------
# Latents on the SimNorm manifold
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", WM_CLASSES)
def test_encode_on_manifold(cls) -> None:
    wm = cls(OBS, ACT, **SMALL)
    z = wm.encode(torch.randn(2, 5, OBS) * 10)
    assert z.shape == (2, 5, LATENT)
    _assert_on_manifold(z)


def test_pwm_next_on_manifold(batch) -> None:
    wm = PWMWorldModel(OBS, ACT, **SMALL)
    obs, action = batch
    z = wm.encode(obs)
    for _ in range(5):
        z = wm.next(z, action)
        _assert_on_manifold(z)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_flow_next_projected_on_manifold(integrator: str, batch) -> None:
    wm = FlowWorldModel(OBS, ACT, integrator=integrator, **SMALL)
    # Large velocities push the raw solve far off the simplex; the projection must still land.
    with torch.no_grad():
        wm.velocity_net[-1].weight.normal_(0.0, 1.0)
    obs, action = batch
    z = wm.encode(obs)
    for _ in range(3):
        z = wm.next(z, action)
        _assert_on_manifold(z)


def test_flow_next_unprojected_leaves_manifold(batch) -> None:
    wm = FlowWorldModel(OBS, ACT, project_simnorm=False, **SMALL)
    obs, action = batch
    z_next = wm.next(wm.encode(obs), action)
    # Random signed velocities change group sums: without projection the latent is off-manifold.
    assert (_groups(z_next).sum(-1) - 1).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------
# Regression: the fork's SimNorm velocity head (docs/algorithm.md, "Flow world model")
# --------------------------------------------------------------------------------------------
def test_velocity_head_is_plain_linear() -> None:
    wm = FlowWorldModel(OBS, ACT, **SMALL)
    assert type(wm.velocity_net[-1]) is nn.Linear


def test_velocity_is_signed_with_unconstrained_group_sums() -> None:
    wm = FlowWorldModel(OBS, ACT, **SMALL)
    z = _latents(wm, 32)
    v = wm.velocity(z, torch.rand(32, ACT) * 2 - 1, torch.rand(32, 1))
    assert v.shape == z.shape
    assert (v < 0).any() and (v > 0).any()
    sums = _groups(v).sum(-1)
    # A SimNorm head would give sums of exactly 1; centring would give exactly 0. Neither here.
    assert ((sums - 1).abs() > 1e-3).all()
    assert (sums.abs() > 1e-4).any()


def test_center_velocity_preserves_group_sums() -> None:
    wm = FlowWorldModel(OBS, ACT, center_velocity=True, project_simnorm=False, **SMALL)
    z = _latents(wm, 32)
    action = torch.rand(32, ACT) * 2 - 1
    v = wm.velocity(z, action, torch.rand(32, 1))
    assert (v < 0).any() and (v > 0).any()
    torch.testing.assert_close(
        _groups(v).sum(-1), torch.zeros(32, LATENT // GROUP), atol=1e-6, rtol=0
    )
    # Hence even the unprojected solve keeps every group summing to 1.
    torch.testing.assert_close(
        _groups(wm.next(z, action)).sum(-1), torch.ones(32, LATENT // GROUP), atol=1e-5, rtol=0
    )


def test_simnorm_velocity_cannot_reach_zero_loss() -> None:
    # Why the fork's loss could not reach 0: v* = z1 − z_s has zero group sums, a SimNorm
    # velocity has group sums 1, so by Cauchy–Schwarz Σ_g (v − v*)² ≥ 1/V per group and the
    # flow-matching error (a mean over L = (L/V)·V dims) is ≥ 1/V² = 1/64. The learning test
    # below must therefore go far below 1/64.
    def simnorm(x: torch.Tensor) -> torch.Tensor:
        return _groups(x).softmax(-1).reshape(x.shape)

    zs, z1 = simnorm(torch.randn(64, LATENT)), simnorm(torch.randn(64, LATENT))
    v_simnorm = simnorm(torch.randn(64, LATENT) * 3)
    err = (v_simnorm - (z1 - zs)).pow(2).mean(-1)
    assert (err >= 1 / GROUP**2 - 1e-7).all()


# --------------------------------------------------------------------------------------------
# Flow next = projected ODE solve of the velocity
# --------------------------------------------------------------------------------------------
def _clamp_renormalise(z: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    g = _groups(z).clamp_min(eps)
    return (g / g.sum(-1, keepdim=True)).reshape(z.shape)


@pytest.mark.parametrize("integrator", INTEGRATORS)
@pytest.mark.parametrize("flow_steps", [1, 2, 4])
def test_flow_next_equals_integrate(integrator: str, flow_steps: int, batch) -> None:
    wm = FlowWorldModel(OBS, ACT, integrator=integrator, flow_steps=flow_steps, **SMALL)
    obs, action = batch
    z = wm.encode(obs)
    raw = integrate(
        lambda x, tau: wm.velocity(x, action, tau), z, num_steps=flow_steps, method=integrator
    )
    torch.testing.assert_close(wm.next(z, action), _clamp_renormalise(raw), rtol=0, atol=1e-6)
    wm.project_simnorm = False
    torch.testing.assert_close(wm.next(z, action), raw, rtol=0, atol=0)


def test_flow_next_euler_one_step_by_hand(batch) -> None:
    wm = FlowWorldModel(OBS, ACT, integrator="euler", flow_steps=1, **SMALL)
    obs, action = batch
    z = wm.encode(obs)
    # One Euler step from tau = 0 (the source) with dt = 1, then clamp-and-renormalise.
    v = wm.velocity_net(torch.cat([z, action, torch.zeros(5, 1)], -1))
    torch.testing.assert_close(wm.next(z, action), _clamp_renormalise(z + v), rtol=0, atol=1e-6)


def test_flow_next_heun_two_steps_by_hand(batch) -> None:
    wm = FlowWorldModel(OBS, ACT, **SMALL)  # default: heun, K = 2
    assert (wm.integrator, wm.flow_steps) == ("heun", 2)
    obs, action = batch
    x = wm.encode(obs)
    for tau0 in (0.0, 0.5):
        k1 = wm.velocity(x, action, torch.full((5, 1), tau0))
        k2 = wm.velocity(x + 0.5 * k1, action, torch.full((5, 1), tau0 + 0.5))
        x = x + 0.25 * (k1 + k2)
    torch.testing.assert_close(
        wm.next(wm.encode(obs), action), _clamp_renormalise(x), rtol=0, atol=1e-6
    )


def test_flow_next_differentiable(batch) -> None:
    wm = FlowWorldModel(OBS, ACT, **SMALL)
    obs, action = batch
    z = wm.encode(obs).detach().requires_grad_(True)
    wm.next(z, action).pow(2).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert wm.velocity_net[-1].weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# Dynamics error
# --------------------------------------------------------------------------------------------
def test_pwm_dynamics_error_by_hand(batch) -> None:
    wm = PWMWorldModel(OBS, ACT, **SMALL)
    obs, action = batch
    z, target = wm.encode(obs), _latents(wm)
    pred = wm.dynamics(torch.cat([z, action], -1))
    expected = ((pred - target) ** 2).mean(-1)
    err = wm.dynamics_error(z, action, target)
    assert err.shape == (5,)
    torch.testing.assert_close(err, expected, rtol=1e-6, atol=0)


def test_pwm_dynamics_error_reuses_next_latent(batch, monkeypatch) -> None:
    wm = PWMWorldModel(OBS, ACT, **SMALL)
    obs, action = batch
    z, target = wm.encode(obs), _latents(wm)
    given = _latents(wm)

    def _fail(*args, **kwargs):
        raise AssertionError("next() must not be recomputed when next_latent is given")

    monkeypatch.setattr(wm, "next", _fail)
    err = wm.dynamics_error(z, action, target, next_latent=given)
    torch.testing.assert_close(err, ((given - target) ** 2).mean(-1), rtol=0, atol=0)


@pytest.mark.parametrize("tau_value", [0.0, 0.3, 1.0])
def test_flow_dynamics_error_by_hand(tau_value: float, batch) -> None:
    wm = FlowWorldModel(OBS, ACT, **SMALL)
    obs, action = batch
    z, target = wm.encode(obs), _latents(wm)
    tau = torch.full((5, 1), tau_value)
    tau[0] = 0.7  # per-sample tau
    z_tau = (1 - tau) * z + tau * target
    v_pred = wm.velocity_net(torch.cat([z_tau, action, tau], -1))
    expected = ((v_pred - (target - z)) ** 2).mean(-1)
    err = wm.dynamics_error(z, action, target, tau=tau)
    assert err.shape == (5,)
    torch.testing.assert_close(err, expected, rtol=1e-6, atol=0)


def test_flow_dynamics_error_midpoint_sampling(batch) -> None:
    wm = FlowWorldModel(OBS, ACT, tau_sampling="midpoint", **SMALL)
    obs, action = batch
    z, target = wm.encode(obs), _latents(wm)
    torch.testing.assert_close(
        wm.dynamics_error(z, action, target),
        wm.dynamics_error(z, action, target, tau=torch.full((5, 1), 0.5)),
        rtol=0,
        atol=0,
    )


def test_flow_dynamics_error_uniform_sampling_varies(batch) -> None:
    wm = FlowWorldModel(OBS, ACT, **SMALL)
    obs, action = batch
    z, target = wm.encode(obs), _latents(wm)
    a, b = wm.dynamics_error(z, action, target), wm.dynamics_error(z, action, target)
    assert a.shape == (5,) and not torch.equal(a, b)


def test_flow_dynamics_error_zero_for_exact_conditional_velocity(batch, monkeypatch) -> None:
    wm = FlowWorldModel(OBS, ACT, integrator="euler", flow_steps=1, **SMALL)
    obs, action = batch
    source, target = wm.encode(obs).detach(), _latents(wm)

    def exact_velocity(latent, action, tau):
        return target - source  # constant along the straight path

    monkeypatch.setattr(wm, "velocity", exact_velocity)
    for tau_value in (0.0, 0.25, 0.9):
        err = wm.dynamics_error(source, action, target, tau=torch.full((5, 1), tau_value))
        assert torch.equal(err, torch.zeros(5))
    # Integrating that field from the source lands on the target (and the target is on-manifold).
    torch.testing.assert_close(wm.next(source, action), target, rtol=0, atol=1e-5)


def test_tiny_flow_model_learns_a_transition() -> None:
    """A trainable velocity head reaches ~0 flow-matching error and transports z_s to z_1.

    This is the test that catches a SimNorm/softmax velocity head: such a head is bounded below
    by 1/V² = 1/64 (see ``test_simnorm_velocity_cannot_reach_zero_loss``).
    """
    wm = FlowWorldModel(
        4, 2, latent_dim=8, units=(64, 64), encoder_units=(16,), termination_head=False
    )
    z_s = torch.tensor([[0.60, 0.20, 0.10, 0.05, 0.02, 0.01, 0.01, 0.01]])
    z_1 = torch.tensor([[0.01, 0.01, 0.02, 0.06, 0.10, 0.20, 0.30, 0.30]])
    action = torch.tensor([[0.5, -0.5]])
    batch = 32
    opt = torch.optim.Adam(wm.velocity_net.parameters(), lr=3e-3)
    for _ in range(250):
        loss = wm.dynamics_error(
            z_s.expand(batch, 8), action.expand(batch, 2), z_1.expand(batch, 8)
        ).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        tau = torch.linspace(0, 1, 11).unsqueeze(-1)
        err = wm.dynamics_error(z_s.expand(11, 8), action.expand(11, 2), z_1.expand(11, 8), tau=tau)
        # ~1e-7 in practice; 1e-4 is two orders below the SimNorm floor of 1/64.
        assert err.max() < 1e-4, err
        z_next = wm.next(z_s, action)  # heun, K = 2, projected
    torch.testing.assert_close(z_next, z_1, rtol=0, atol=5e-3)


# --------------------------------------------------------------------------------------------
# Time features and argument validation
# --------------------------------------------------------------------------------------------
def test_time_features_by_hand() -> None:
    taus = [0.0, 0.25, 0.5, 1.0]
    tau = torch.tensor(taus).unsqueeze(-1)
    assert torch.equal(time_features(tau, 0), tau)
    expected = torch.tensor(
        [
            # Layout: [tau, sin(2^k π tau) for k < 2, cos(2^k π tau) for k < 2].
            [
                t,
                *(math.sin(f * math.pi * t) for f in (1, 2)),
                *(math.cos(f * math.pi * t) for f in (1, 2)),
            ]
            for t in taus
        ]
    )
    torch.testing.assert_close(time_features(tau, 2), expected, rtol=0, atol=1e-6)
    assert time_features(torch.rand(3, 4, 1), 2).shape == (3, 4, 5)


@pytest.mark.parametrize("freqs", [0, 2])
def test_velocity_net_input_width_and_time_features(freqs: int, batch) -> None:
    wm = FlowWorldModel(OBS, ACT, time_embed_freqs=freqs, **SMALL)
    assert wm.velocity_net[0].in_features == LATENT + ACT + 1 + 2 * freqs
    obs, action = batch
    z, tau = wm.encode(obs), torch.rand(5, 1)
    expected = wm.velocity_net(torch.cat([z, action, time_features(tau, freqs)], -1))
    torch.testing.assert_close(wm.velocity(z, action, tau), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "patterns"),
    [
        ({"integrator": "rk3"}, ["rk3", "euler", "midpoint", "heun", "rk4"]),
        ({"flow_steps": 0}, ["0", ">= 1"]),
        ({"flow_steps": -2}, ["-2", ">= 1"]),
        ({"flow_steps": 1.5}, ["1.5", ">= 1"]),
        # True is an int subclass; the integrator itself rejects it, so should the constructor.
        ({"flow_steps": True}, ["True", ">= 1"]),
        ({"tau_sampling": "beta"}, ["beta", "uniform", "midpoint"]),
        ({"time_embed_freqs": -1}, ["-1", ">= 0"]),
        ({"grad_checkpoint": "yes"}, ["grad_checkpoint", "'yes'", "bool"]),
    ],
    ids=lambda x: "-".join(f"{k}={v}" for k, v in x.items()) if isinstance(x, dict) else None,
)
def test_flow_invalid_arguments(kwargs: dict, patterns: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        FlowWorldModel(OBS, ACT, **SMALL, **kwargs)
    for pattern in patterns:
        assert pattern in str(info.value), (pattern, str(info.value))


@pytest.mark.parametrize("cls", WM_CLASSES)
def test_invalid_reward_head_and_preset(cls) -> None:
    with pytest.raises(ValueError) as info:
        cls(OBS, ACT, reward_head="categorical", **SMALL)
    for pattern in ("categorical", "scalar", "twohot"):
        assert pattern in str(info.value)
    with pytest.raises(ValueError) as info:
        cls.from_preset("7M", OBS, ACT)
    for pattern in ("7M", "5M", "48M"):
        assert pattern in str(info.value)


def test_invalid_latent_dim() -> None:
    with pytest.raises(ValueError, match=r"latent_dim=12.*8"):
        PWMWorldModel(OBS, ACT, latent_dim=12, units=(16,), encoder_units=(16,))


# --------------------------------------------------------------------------------------------
# Reward loss and decoding (docs/algorithm.md, "Reward head")
# --------------------------------------------------------------------------------------------
REWARDS = torch.tensor([[-30.0], [-1.5], [0.0], [0.3], [math.e - 1], [7.0], [5e4]])


def test_scalar_reward_loss_is_squared_error() -> None:
    wm = PWMWorldModel(OBS, ACT, reward_head="scalar", **SMALL)
    output = torch.randn(7, 1)
    loss = wm.reward_loss(output, REWARDS)
    assert loss.shape == (7,)
    torch.testing.assert_close(loss, (output - REWARDS).squeeze(-1) ** 2, rtol=0, atol=0)
    assert torch.equal(wm.decode_reward(output), output)


def test_twohot_reward_loss_is_soft_cross_entropy() -> None:
    wm = PWMWorldModel(OBS, ACT, reward_head="twohot", **SMALL)
    logits = torch.randn(7, 101)
    support = two_hot_support(-10.0, 10.0, 101)
    torch.testing.assert_close(wm.reward_support, support, rtol=0, atol=0)
    target = two_hot_encode(symlog(REWARDS.squeeze(-1)), support)
    expected = -(target * torch.log_softmax(logits, -1)).sum(-1)
    loss = wm.reward_loss(logits, REWARDS)
    assert loss.shape == (7,)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    # Golden case: symlog(e − 1) = 1.0 is bin 55 exactly, so the target is one-hot there.
    torch.testing.assert_close(loss[4], -torch.log_softmax(logits[4], -1)[55], rtol=1e-6, atol=0)
    # Saturation: 5e4 (symlog ≈ 10.8) puts all its mass on the last bin.
    torch.testing.assert_close(loss[6], -torch.log_softmax(logits[6], -1)[100], rtol=1e-6, atol=0)


def test_twohot_decode_recovers_reward() -> None:
    wm = PWMWorldModel(OBS, ACT, reward_head="twohot", **SMALL)
    rewards = REWARDS[:-1]  # inside the support (|symlog r| ≤ 10)
    logits = symlog_two_hot_encode(rewards.squeeze(-1), wm.reward_support).log()
    decoded = wm.decode_reward(logits)
    assert decoded.shape == (6, 1)
    torch.testing.assert_close(decoded, rewards, rtol=1e-4, atol=1e-5)
    # The loss is minimised (equals the target entropy) at these logits.
    target = symlog_two_hot_encode(rewards.squeeze(-1), wm.reward_support)
    entropy = -(target * target.clamp_min(1e-30).log()).sum(-1)
    torch.testing.assert_close(
        wm.reward_loss(logits.clamp_min(-1e4), rewards), entropy, rtol=0, atol=1e-5
    )
