"""The log-determinant of an integrated flow against known answers (torchrl_flowmbpo.flows.density).

Flow time runs from tau = 0 (source) to tau = 1 (target).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchrl_flowmbpo.flows import (
    INTEGRATORS,
    LOG_DET_METHODS,
    divergence,
    integrate,
    integrate_with_log_det,
)


def _matrix(dim: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.6 * torch.randn(dim, dim, generator=g, dtype=torch.float64)


def _step_matrix(method: str, hm: torch.Tensor) -> torch.Tensor:
    """The linear map of one step of ``method`` for ``v(x) = M x`` (its stability polynomial)."""
    eye = torch.eye(hm.shape[0], dtype=hm.dtype)
    order = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[method]
    out, term = eye.clone(), eye.clone()
    for n in range(1, order + 1):
        term = term @ hm / n
        out = out + term
    return out


@pytest.mark.parametrize("method", INTEGRATORS)
@pytest.mark.parametrize("num_steps", [1, 3])
def test_linear_field_pushes_a_gaussian_to_its_closed_form(method, num_steps):
    # v(x) = M x: each step is x ↦ R(hM) x, so x1 = Φ x0 with Φ = R(hM)^K, and x0 ~ N(0, σ² I)
    # becomes N(0, σ² Φ Φᵀ). The exact log-det is K log|det R(hM)| and the density is that
    # Gaussian's, at any step count (the discrete map, not the continuous flow).
    m = _matrix()
    phi = torch.linalg.matrix_power(_step_matrix(method, m / num_steps), num_steps)
    sigma = 0.7
    x0 = sigma * torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x1, log_det = integrate_with_log_det(
        lambda x, tau: x @ m.T, x0, num_steps=num_steps, method=method
    )
    assert torch.allclose(x1, x0 @ phi.T, atol=1e-12)
    assert torch.allclose(log_det, torch.linalg.slogdet(phi).logabsdet.expand(16), atol=1e-12)
    base = torch.distributions.Normal(0.0, sigma).log_prob(x0).sum(-1)
    pushed = torch.distributions.MultivariateNormal(
        torch.zeros(3, dtype=torch.float64), covariance_matrix=sigma**2 * phi @ phi.T
    )
    assert torch.allclose(base - log_det, pushed.log_prob(x1), atol=1e-10)


@pytest.mark.parametrize("method", INTEGRATORS)
def test_linear_field_trace_mode_is_the_continuous_flow(method):
    # The divergence of M x is tr M everywhere, which every integrator integrates exactly: the
    # continuous flow's log det exp(M) = tr M, reached by the exact mode as the step shrinks.
    m = _matrix()
    x0 = torch.randn(4, 3, dtype=torch.float64)
    _, trace = integrate_with_log_det(
        lambda x, tau: x @ m.T, x0, num_steps=2, method=method, log_det="trace"
    )
    assert torch.allclose(trace, torch.trace(m).expand(4), atol=1e-12)
    _, exact = integrate_with_log_det(lambda x, tau: x @ m.T, x0, num_steps=256, method=method)
    tolerance = {"euler": 5e-3, "midpoint": 1e-5, "heun": 1e-5, "rk4": 1e-10}[method]
    assert torch.allclose(exact, trace, atol=tolerance)


def test_divergence_of_a_field_with_an_analytic_divergence():
    # v_i = a_i sin(x_i) + x_{i+1}² (cyclic): the squares sit off the diagonal, so
    # div v = Σ_i a_i cos(x_i).
    a = torch.tensor([0.5, -1.0, 2.0, 1.5], dtype=torch.float64)

    def velocity(x, tau):
        return a * torch.sin(x) + x.roll(-1, dims=-1).pow(2) + tau

    x = torch.randn(32, 4, dtype=torch.float64)
    tau = torch.full((32, 1), 0.3, dtype=torch.float64)
    v, div = divergence(velocity, x, tau)
    assert torch.allclose(v, velocity(x, tau), atol=0)
    assert torch.allclose(div, (a * torch.cos(x)).sum(-1), atol=1e-12)


def test_nonlinear_1d_flow_matches_its_solution():
    # dx/dtau = x²: x1 = x0 / (1 − x0), so log|dx1/dx0| = −2 log|1 − x0|.
    x0 = torch.linspace(-0.5, 0.4, 11, dtype=torch.float64).unsqueeze(-1)
    expected = -2.0 * torch.log1p(-x0.squeeze(-1))
    for log_det in ("exact", "trace"):
        x1, value = integrate_with_log_det(
            lambda x, tau: x * x, x0, num_steps=64, method="rk4", log_det=log_det
        )
        assert torch.allclose(x1, x0 / (1 - x0), atol=1e-9)
        assert torch.allclose(value, expected, atol=1e-8), log_det
    # At one Euler step the exact mode is the step's own log|1 + 2 h x0|.
    _, euler = integrate_with_log_det(lambda x, tau: x * x, x0, num_steps=1, method="euler")
    assert torch.allclose(euler, torch.log(torch.abs(1 + 2 * x0.squeeze(-1))), atol=1e-12)


class _Field(nn.Module):
    """A small nonlinear, time-dependent velocity field with cross-dimension coupling."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Linear(dim + 1, 32), nn.Tanh(), nn.Linear(32, dim)).double()

    def forward(self, x, tau):
        return self.net(torch.cat([x, tau], dim=-1))


def test_hutchinson_agrees_with_the_exact_trace_in_expectation():
    field = _Field()
    n = 40_000
    x0 = torch.randn(1, 4, dtype=torch.float64).expand(n, 4)
    with torch.no_grad():
        _, trace = integrate_with_log_det(field, x0[:1], num_steps=2, log_det="trace")
        _, hutch = integrate_with_log_det(
            field, x0, num_steps=2, log_det="hutchinson", generator=torch.Generator().manual_seed(0)
        )
    standard_error = float(hutch.std()) / math.sqrt(n)
    assert standard_error > 0  # the probes do vary
    assert abs(float(hutch.mean()) - float(trace)) < 4 * standard_error
    # The same for one divergence evaluation.
    tau = torch.full((n, 1), 0.5, dtype=torch.float64)
    probe = 2.0 * torch.randint(0, 2, (n, 4), dtype=torch.float64) - 1.0
    with torch.no_grad():
        _, exact = divergence(field, x0[:1], tau[:1])
        _, estimate = divergence(field, x0, tau, probe=probe)
    assert abs(float(estimate.mean() - exact)) < 4 * float(estimate.std()) / math.sqrt(n)


@pytest.mark.parametrize("log_det", LOG_DET_METHODS)
@pytest.mark.parametrize("method", INTEGRATORS)
def test_sample_is_the_plain_integration_and_everything_is_differentiable(method, log_det):
    field = _Field()
    x0 = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    x1, value = integrate_with_log_det(
        field, x0, num_steps=2, method=method, log_det=log_det,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert torch.allclose(x1, integrate(field, x0, num_steps=2, method=method), atol=1e-12)
    assert value.shape == (5,)
    # d(log_det)/dθ by autograd against a central finite difference on one weight.
    weight = field.net[0].weight
    (grad,) = torch.autograd.grad(value.sum(), weight, retain_graph=True)
    # Gradients reach x0 too (σ of a policy's source noise is learnt through it).
    (grad_x0,) = torch.autograd.grad(x1.sum() + value.sum(), x0)
    assert grad_x0.abs().sum() > 0

    def total(delta: float) -> float:
        with torch.no_grad():
            weight[0, 0] += delta
            out = integrate_with_log_det(
                field, x0.detach(), num_steps=2, method=method, log_det=log_det,
                generator=torch.Generator().manual_seed(0),
            )[1].sum()  # fmt: skip
            weight[0, 0] -= delta
        return float(out)

    numeric = (total(1e-6) - total(-1e-6)) / 2e-6
    assert float(grad[0, 0]) == pytest.approx(numeric, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("log_det", ["exact", "trace"])
def test_no_grad_gives_the_same_values_without_a_graph(log_det):
    field = _Field()
    x0 = torch.randn(5, 4, dtype=torch.float64)
    x1, value = integrate_with_log_det(field, x0, num_steps=2, log_det=log_det)
    with torch.no_grad():
        x1_ng, value_ng = integrate_with_log_det(field, x0, num_steps=2, log_det=log_det)
    assert not x1_ng.requires_grad and not value_ng.requires_grad
    assert torch.allclose(x1, x1_ng, atol=0) and torch.allclose(value, value_ng, atol=0)


def test_unknown_log_det_rejected():
    with pytest.raises(ValueError, match=r"'lu'.*'exact', 'trace', 'hutchinson'"):
        integrate_with_log_det(lambda x, tau: x, torch.ones(1, 2), num_steps=1, log_det="lu")
