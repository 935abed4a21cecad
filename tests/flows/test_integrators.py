"""Tests for torchrl_flowmbpo.flows.integrators: exactness, convergence order, gradients, errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from torchrl_flowmbpo.flows import INTEGRATORS, integrate, velocity_evaluations

ORDERS = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def _x0() -> torch.Tensor:
    return torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.25, -1.5]], dtype=torch.float64)


class _CountingField:
    """Velocity field dx/dtau = -x that records every flow time it is called with."""

    def __init__(self) -> None:
        self.taus: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        self.taus.append(tau)
        return -x


def test_integrators_constant():
    assert INTEGRATORS == ("euler", "midpoint", "heun", "rk4")
    assert set(ORDERS) == set(INTEGRATORS)


@pytest.mark.parametrize("method", INTEGRATORS)
@pytest.mark.parametrize("num_steps", [1, 3, 8])
def test_constant_field_is_exact(method, num_steps):
    velocity = torch.tensor([0.3, -1.7, 2.0])
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    x1 = integrate(lambda x, tau: velocity.expand_as(x), x0, num_steps=num_steps, method=method)
    torch.testing.assert_close(x1, x0 + velocity, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", INTEGRATORS)
@pytest.mark.parametrize("num_steps", [1, 2, 4])
def test_field_linear_in_tau(method, num_steps):
    # v = a + b * tau, so x(1) = x0 + a + b / 2. Midpoint, Heun (trapezoid) and RK4 (Simpson)
    # integrate a linear function of time exactly; Euler's left Riemann sum misses b * dt / 2.
    a, b = 0.5, 3.0
    x0 = _x0()
    x1 = integrate(lambda x, tau: a + b * tau.expand_as(x), x0, num_steps=num_steps, method=method)
    euler_lag = b / num_steps / 2 if method == "euler" else 0.0
    torch.testing.assert_close(x1, x0 + a + b / 2 - euler_lag, rtol=0, atol=1e-12)


def _observed_orders(velocity, exact, method, steps=(8, 16, 32)):
    errors = [
        (integrate(velocity, _x0(), num_steps=k, method=method) - exact).abs().max().item()
        for k in steps
    ]
    # Halving dt divides a p-th order method's global error by 2^p.
    return [math.log2(coarse / fine) for coarse, fine in itertools.pairwise(errors)]


@pytest.mark.parametrize("method", INTEGRATORS)
def test_convergence_order_exponential_decay(method):
    # dx/dtau = -x  =>  x(1) = exp(-1) * x0.
    orders = _observed_orders(lambda x, tau: -x, math.exp(-1.0) * _x0(), method)
    # Measured (float64, K = 8 -> 16 -> 32): euler 1.04, 1.02; midpoint and heun 2.07, 2.03
    # (identical on a linear autonomous field); rk4 4.08, 4.04.
    assert orders[-1] == pytest.approx(ORDERS[method], abs=0.25)
    assert orders[0] == pytest.approx(ORDERS[method], abs=0.25)


@pytest.mark.parametrize("method", INTEGRATORS)
def test_convergence_order_time_dependent_field(method):
    # dx/dtau = 2 tau x  =>  x(tau) = exp(tau^2) x0, x(1) = e * x0. The field depends on tau, so
    # evaluating a stage at the wrong flow time (e.g. tau_k instead of tau_k + dt/2) loses order.
    orders = _observed_orders(lambda x, tau: 2 * tau * x, math.e * _x0(), method)
    # Measured (float64, K = 8 -> 16 -> 32): euler 0.86, 0.93; midpoint 1.88, 1.94;
    # heun 2.01, 2.01; rk4 3.96, 3.98. Euler and midpoint approach their order from below, so
    # only the finest pair is held to the +-0.25 band.
    assert orders[-1] == pytest.approx(ORDERS[method], abs=0.25)
    assert orders[0] < orders[-1] + 0.25


@pytest.mark.parametrize(
    ("method", "num_steps", "expected_taus"),
    [
        ("euler", 4, [0.0, 0.25, 0.5, 0.75]),
        ("midpoint", 2, [0.0, 0.25, 0.5, 0.75]),
        ("heun", 2, [0.0, 0.5, 0.5, 1.0]),
        ("rk4", 1, [0.0, 0.5, 0.5, 1.0]),
        ("rk4", 2, [0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0]),
    ],
)
def test_flow_times_and_evaluation_count(method, num_steps, expected_taus):
    field = _CountingField()
    x0 = torch.zeros(4, 2, 3, dtype=torch.float64)
    integrate(field, x0, num_steps=num_steps, method=method)
    assert len(field.taus) == velocity_evaluations(method, num_steps) == len(expected_taus)
    # tau runs from 0 (source) towards 1 (target), one value per sample, shaped [..., 1].
    assert [tau.flatten()[0].item() for tau in field.taus] == expected_taus
    for tau in field.taus:
        assert tau.shape == (4, 2, 1)
        assert tau.dtype == x0.dtype
        assert tau.device == x0.device
        assert (tau == tau.flatten()[0]).all()


@pytest.mark.parametrize(
    ("method", "per_step"), [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)]
)
def test_velocity_evaluations(method, per_step):
    for num_steps in (1, 2, 3, 8):
        field = _CountingField()
        integrate(field, torch.ones(2, 3), num_steps=num_steps, method=method)
        assert velocity_evaluations(method, num_steps) == per_step * num_steps == len(field.taus)


@pytest.mark.parametrize("method", INTEGRATORS)
def test_gradients_match_finite_differences(method):
    # A small non-linear field v(x, tau) = tanh(W [x, tau] + b) (a real nn.Linear, its
    # parameters swapped in via functional_call so gradcheck can perturb them).
    torch.manual_seed(0)
    linear = nn.Linear(3 + 1, 3).double()

    def solve(x0: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        params = {"weight": weight, "bias": bias}

        def velocity(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
            return torch.tanh(functional_call(linear, params, (torch.cat([x, tau], dim=-1),)))

        return integrate(velocity, x0, num_steps=3, method=method)

    inputs = (
        torch.randn(2, 3, dtype=torch.float64, requires_grad=True),
        linear.weight.detach().clone().requires_grad_(True),
        linear.bias.detach().clone().requires_grad_(True),
    )
    assert torch.autograd.gradcheck(solve, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradients_reach_module_parameters():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    x0 = torch.randn(5, 2, requires_grad=True)
    x1 = integrate(lambda x, tau: net(torch.cat([x, tau], dim=-1)), x0, num_steps=2)
    x1.square().sum().backward()
    assert x0.grad is not None and x0.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_unknown_method_raises():
    with pytest.raises(ValueError) as info:
        integrate(lambda x, tau: x, torch.ones(1, 2), num_steps=2, method="rk45")
    message = str(info.value)
    assert "'rk45'" in message
    assert all(name in message for name in INTEGRATORS)
    with pytest.raises(ValueError, match="'dopri5'"):
        velocity_evaluations("dopri5", 2)


@pytest.mark.parametrize("num_steps", [0, -1, 2.0, True])
def test_invalid_num_steps_raises(num_steps):
    with pytest.raises(ValueError, match=f"num_steps.*{num_steps!r}"):
        integrate(lambda x, tau: x, torch.ones(1, 2), num_steps=num_steps, method="euler")
    with pytest.raises(ValueError, match=f"num_steps.*{num_steps!r}"):
        velocity_evaluations("heun", num_steps)


def test_scalar_state_rejected():
    with pytest.raises(ValueError, match="at least one dimension"):
        integrate(lambda x, tau: x, torch.tensor(1.0), num_steps=1)
