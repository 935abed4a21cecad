"""The FlowActor's density: log π(a|z) of the sampled (squashed) action, against known answers.

Flow time runs from tau = 0 (source noise σ ε) to tau = 1 (the pre-tanh action).
"""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from torch.distributions import Normal, TanhTransform, TransformedDistribution
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_flowmbpo.flows import INTEGRATORS
from torchrl_flowmbpo.modules.actors import FlowActor, GaussianActor, empirical_action_std

LATENT, HIDDEN = 8, (32, 32)


def _actor(
    action_dim: int, seed: int = 0, gain: float = 3.0, velocity_init: str = "default", **kwargs
) -> FlowActor:
    """A FlowActor with PyTorch's initialisation whose last velocity layer is scaled by ``gain``:
    a visibly nonlinear flow (still invertible at these sizes) rather than the near-identity of
    PyTorch's init or the identity of FlowActor's default zeroed last layer."""
    torch.manual_seed(seed)
    actor = FlowActor(
        LATENT, action_dim, hidden=HIDDEN, init_log_std=-0.5, velocity_init=velocity_init, **kwargs
    ).double()
    with torch.no_grad():
        actor.policy_net.velocity_net[-1].weight.mul_(gain)
    return actor


def _log_prob_at_noise(actor: FlowActor, cond: torch.Tensor, noise: torch.Tensor):
    """Actions and log π for given noise (the distribution's own computation, noise injected)."""
    net = actor.policy_net
    dist = actor.get_dist(TensorDict(latent=cond, batch_size=cond.shape[:-1]))
    return dist._transport_and_log_prob(noise.to(net.log_std.dtype))


def _mass_on_action_grid(actor: FlowActor, points: int = 2001) -> float:
    """∫ π(a) da over a uniform grid of squashed actions in (−1, 1) (trapezoid rule), each grid
    action inverted to its noise by bisection (the 1-D map ε ↦ a is increasing)."""
    torch.manual_seed(11)
    cond = torch.randn(1, LATENT, dtype=torch.float64).expand(points, LATENT)
    with torch.no_grad():
        grid_eps = torch.linspace(-8, 8, points, dtype=torch.float64).unsqueeze(-1)
        grid_a = _log_prob_at_noise(actor, cond, grid_eps)[0]
        assert (grid_a.diff(dim=0) > 0).all()  # monotone: invertible
        targets = torch.linspace(float(grid_a[0]), float(grid_a[-1]), points, dtype=torch.float64)
        lo = torch.full((points, 1), -8.0, dtype=torch.float64)
        hi = torch.full((points, 1), 8.0, dtype=torch.float64)
        for _ in range(50):
            mid = (lo + hi) / 2
            above = _log_prob_at_noise(actor, cond, mid)[0] > targets.unsqueeze(-1)
            hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
        actions, log_prob = _log_prob_at_noise(actor, cond, (lo + hi) / 2)
    assert torch.allclose(actions.squeeze(-1), targets, atol=1e-12)
    return float(torch.trapezoid(log_prob.exp(), targets))


@pytest.mark.parametrize("integrator", INTEGRATORS)
@pytest.mark.parametrize("flow_steps", [1, 2])
def test_density_integrates_to_one_over_an_action_grid_in_1d(integrator, flow_steps):
    actor = _actor(1, integrator=integrator, flow_steps=flow_steps)
    assert _mass_on_action_grid(actor) == pytest.approx(1.0, abs=1e-4)


def test_trace_mode_is_normalised_only_up_to_the_step_error():
    # The continuous flow's log-det at one Euler step is not the step's own: its mass is off by
    # about 1 % here, which is why the exact discrete log-det is the default.
    exact = _mass_on_action_grid(_actor(1, integrator="euler", flow_steps=1))
    trace = _mass_on_action_grid(_actor(1, integrator="euler", flow_steps=1, log_det="trace"))
    assert exact == pytest.approx(1.0, abs=1e-4)
    assert abs(trace - 1.0) > 3e-3


@pytest.mark.parametrize("integrator", ["euler", "heun"])
def test_density_times_mapped_cell_areas_sums_to_one_in_2d(integrator):
    # A noise grid maps to a curved mesh of actions; Σ π(a(cell centre)) · area(a(cell)) ≈ 1 only
    # if π carries the right Jacobian determinant (mapped areas by the shoelace formula).
    actor = _actor(2, integrator=integrator, flow_steps=2)
    n, edge = 241, 6.0
    ticks = torch.linspace(-edge, edge, n, dtype=torch.float64)
    corners = torch.stack(torch.meshgrid(ticks, ticks, indexing="ij"), dim=-1)
    centres = (corners[1:, 1:] + corners[:-1, :-1]) / 2
    cond = torch.randn(LATENT, dtype=torch.float64)
    with torch.no_grad():
        a_corner = _log_prob_at_noise(actor, cond.expand(n, n, LATENT), corners)[0]
        _, log_prob = _log_prob_at_noise(actor, cond.expand(n - 1, n - 1, LATENT), centres)
    quad = [a_corner[:-1, :-1], a_corner[1:, :-1], a_corner[1:, 1:], a_corner[:-1, 1:]]
    area = (
        sum(
            p[..., 0] * q[..., 1] - q[..., 0] * p[..., 1]
            for p, q in zip(quad, quad[1:] + quad[:1], strict=True)
        ).abs()
        / 2
    )
    assert float((log_prob.exp() * area).sum()) == pytest.approx(1.0, abs=1e-3)


def test_zero_velocity_is_the_tanh_normal_density():
    actor = _actor(3, velocity_init="zero")
    td = TensorDict(latent=torch.randn(64, LATENT, dtype=torch.float64), batch_size=[64])
    action, log_prob = actor.get_dist(td).rsample_and_log_prob()
    sigma = actor.policy_net.std
    reference = TransformedDistribution(Normal(0.0, sigma), [TanhTransform()])
    assert torch.allclose(log_prob, reference.log_prob(action).sum(-1), atol=1e-9)


def test_return_log_prob_writes_the_sampled_actions_density_for_every_exploration_type():
    actor = _actor(2, return_log_prob=True)
    td = TensorDict(latent=torch.randn(16, LATENT, dtype=torch.float64), batch_size=[16])
    torch.manual_seed(5)
    out = actor(td.copy())
    torch.manual_seed(5)
    action, log_prob = actor.get_dist(td.copy()).rsample_and_log_prob()
    assert torch.equal(out["action"], action)
    assert torch.allclose(out["action_log_prob"], log_prob, atol=1e-12)
    grads = torch.autograd.grad(out["action_log_prob"].sum(), list(actor.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)
    # Non-random types: the deterministic action (noise 0) and its own density.
    for mode in (ExplorationType.DETERMINISTIC, ExplorationType.MODE, ExplorationType.MEAN):
        with set_exploration_type(mode):
            det = actor(td.copy())
        zero = torch.zeros(16, 2, dtype=torch.float64)
        expected_action, expected = _log_prob_at_noise(actor, td["latent"], zero)
        assert torch.equal(det["action"], expected_action)
        assert torch.allclose(det["action_log_prob"], expected, atol=1e-12)


def test_lazy_log_prob_of_a_sample_equals_the_eager_one():
    actor = _actor(2)
    td = TensorDict(latent=torch.randn(16, LATENT, dtype=torch.float64), batch_size=[16])
    dist = actor.get_dist(td.copy())
    torch.manual_seed(9)
    sample = dist.sample((3,))
    lazy = dist.log_prob(sample)
    torch.manual_seed(9)
    action, eager = dist.rsample_and_log_prob((3,))
    assert torch.allclose(sample, action, atol=0) and torch.allclose(lazy, eager, atol=1e-12)
    assert lazy.shape == (3, 16)


def test_hutchinson_and_trace_modes_agree_with_exact_on_average():
    # The trace modes integrate the continuous flow's divergence: close to the exact discrete
    # log-det at this step count; Hutchinson's mean is the trace mode's value.
    cond = torch.randn(1, LATENT, dtype=torch.float64).expand(5_000, LATENT)
    noise = torch.randn(1, 4, dtype=torch.float64).expand(5_000, 4)
    values = {}
    for log_det in ("exact", "trace", "hutchinson"):
        actor = _actor(4, gain=1.0, flow_steps=8, log_det=log_det)
        with torch.no_grad():
            values[log_det] = _log_prob_at_noise(actor, cond, noise)[1]
    assert torch.allclose(values["exact"], values["trace"], atol=5e-3)
    hutch = values["hutchinson"]
    assert float(hutch.std()) > 0
    standard_error = float(hutch.std()) / math.sqrt(hutch.numel())
    assert abs(float(hutch.mean() - values["trace"][0])) < 4 * standard_error


def test_zero_velocity_init_spread_matches_the_noise_scale():
    # Untrained, the zero-initialised FlowActor acts tanh(σ ε): its per-state action spread is
    # that of the Gaussian actor with μ = 0, whatever the latent's scale.
    torch.manual_seed(0)
    actor = FlowActor(64, 3, hidden=(64, 64), velocity_init="zero")
    td = TensorDict(latent=10 * torch.randn(200, 64), batch_size=[200])
    torch.manual_seed(1)
    spread = float(empirical_action_std(actor, td, num_samples=64))
    reference = float(torch.tanh(math.exp(-1.0) * torch.randn(1_000_000)).std())
    assert spread == pytest.approx(reference, abs=0.01)
    assert torch.equal(actor.policy_net.velocity_net[-1].weight, torch.zeros(3, 64))
    assert isinstance(GaussianActor(64, 3, hidden=(64, 64)), GaussianActor)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"log_det": "lu"}, r"Unknown log_det 'lu'; expected one of \('exact', 'trace'"),
        ({"velocity_init": "xavier"}, r"'xavier'; expected one of \('default', 'zero'\)"),
    ],
)
def test_bad_density_arguments_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FlowActor(LATENT, 2, hidden=HIDDEN, **kwargs)
