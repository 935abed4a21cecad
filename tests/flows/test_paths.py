"""Tests for torchrl_flowmbpo.flows.paths: linear path, tau sampling, flow-matching error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchrl_flowmbpo.flows import (
    TAU_SAMPLING_MODES,
    flow_matching_error,
    integrate,
    linear_path,
    sample_tau,
    target_velocity,
)


def _pair(seed: int = 0, shape: tuple[int, ...] = (6, 4)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


class TestLinearPath:
    def test_endpoints_are_exact(self):
        x0, x1 = _pair()
        # tau = 0 is the source, tau = 1 the target, bit for bit.
        assert torch.equal(linear_path(x0, x1, torch.zeros(6, 1)), x0)
        assert torch.equal(linear_path(x0, x1, torch.ones(6, 1)), x1)
        assert torch.equal(linear_path(x0, x1, 0.0), x0)
        assert torch.equal(linear_path(x0, x1, 1.0), x1)

    def test_midpoint_and_per_sample_tau(self):
        x0, x1 = _pair()
        torch.testing.assert_close(linear_path(x0, x1, 0.5), (x0 + x1) / 2)
        tau = torch.linspace(0, 1, 6).unsqueeze(-1)
        expected = torch.stack([(1 - t) * a + t * b for t, a, b in zip(tau, x0, x1, strict=True)])
        torch.testing.assert_close(linear_path(x0, x1, tau), expected)

    def test_target_velocity_is_path_derivative(self):
        x0, x1 = _pair()
        assert torch.equal(target_velocity(x0, x1), x1 - x0)
        # Central difference in tau of the path equals the conditional velocity everywhere.
        x0, x1 = x0.double(), x1.double()
        for tau in (0.1, 0.5, 0.9):
            h = 1e-4
            slope = (linear_path(x0, x1, tau + h) - linear_path(x0, x1, tau - h)) / (2 * h)
            torch.testing.assert_close(slope, target_velocity(x0, x1))


class TestSampleTau:
    def test_uniform_shape_range_and_spread(self):
        tau = sample_tau((4000, 2), generator=torch.Generator().manual_seed(0))
        assert tau.shape == (4000, 2, 1)
        assert tau.dtype == torch.get_default_dtype()
        assert tau.min().item() >= 0.0 and tau.max().item() < 1.0
        # U[0, 1]: mean 1/2, variance 1/12 (standard errors ~0.003 and ~0.001 at n = 8000).
        assert tau.mean().item() == pytest.approx(0.5, abs=0.02)
        assert tau.var().item() == pytest.approx(1 / 12, abs=0.005)

    def test_uniform_is_reproducible_with_generator(self):
        first = sample_tau(5, generator=torch.Generator().manual_seed(3))
        second = sample_tau(5, generator=torch.Generator().manual_seed(3))
        assert first.shape == (5, 1)
        assert torch.equal(first, second)

    def test_midpoint(self):
        tau = sample_tau(torch.Size([2, 3]), mode="midpoint", dtype=torch.float64)
        assert tau.shape == (2, 3, 1)
        assert tau.dtype == torch.float64
        assert (tau == 0.5).all()

    def test_unknown_mode_raises(self):
        assert TAU_SAMPLING_MODES == ("uniform", "midpoint")
        with pytest.raises(ValueError) as info:
            sample_tau(3, mode="beta")
        message = str(info.value)
        assert "'beta'" in message
        assert all(mode in message for mode in TAU_SAMPLING_MODES)


class TestFlowMatchingError:
    def test_zero_for_exact_conditional_velocity(self):
        x0, x1 = _pair(shape=(3, 5, 4))
        error = flow_matching_error(x1 - x0, x0, x1)
        assert error.shape == (3, 5)
        torch.testing.assert_close(error, torch.zeros(3, 5), rtol=0, atol=1e-6)

    def test_positive_otherwise(self):
        x0, x1 = _pair(shape=(3, 5, 4))
        assert (flow_matching_error(torch.zeros_like(x0), x0, x1) > 0).all()
        # The sign matters: a flipped time convention predicts x0 - x1 and is penalised 4x.
        flipped = flow_matching_error(x0 - x1, x0, x1)
        torch.testing.assert_close(flipped, 4 * (x1 - x0).square().mean(-1))

    def test_golden(self):
        x0 = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
        x1 = torch.tensor([[1.0, 2.0], [1.0, 1.0]])
        v_pred = torch.tensor([[1.0, 0.0], [3.0, -1.0]])
        # Row 0: v* = (1, 2), residual (0, -2), mean of squares (0 + 4) / 2 = 2.
        # Row 1: v* = (0, 0), residual (3, -1), mean of squares (9 + 1) / 2 = 5.
        torch.testing.assert_close(flow_matching_error(v_pred, x0, x1), torch.tensor([2.0, 5.0]))


class TestToyTransport:
    """Flow matching on a deterministic 2-D affine transport, x1 = x0 @ A + b with x0 ~ N(0, I).

    Because x1 is a deterministic function of x0 and M(tau) = (1 - tau) I + tau A stays invertible
    (A has eigenvalues 1.05 +- 0.39i), every x_tau comes from a single x0, so the conditional
    velocity x1 - x0 is a function of (x_tau, tau) and the regression loss can reach ~0. The
    trajectories are straight lines, so the fitted field, integrated from x0, should land on x1.
    """

    A = torch.tensor([[1.2, 0.6], [-0.3, 0.9]])
    b = torch.tensor([0.5, -1.0])

    def _batch(self, n: int, generator: torch.Generator | None = None):
        x0 = torch.randn(n, 2, generator=generator)
        return x0, x0 @ self.A + self.b

    def test_fitted_velocity_transports_source_to_target(self):
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Linear(2 + 1, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2)
        )

        def velocity(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
            return net(torch.cat([x, tau], dim=-1))

        steps = 800
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for _ in range(steps):
            x0, x1 = self._batch(256)
            tau = sample_tau(256)
            loss = flow_matching_error(velocity(linear_path(x0, x1, tau), tau), x0, x1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()

        generator = torch.Generator().manual_seed(1)
        x0, x1 = self._batch(1000, generator)
        tau = sample_tau(1000, generator=generator)
        with torch.no_grad():
            eval_loss = flow_matching_error(velocity(linear_path(x0, x1, tau), tau), x0, x1).mean()
            x1_hat = integrate(velocity, x0, num_steps=4, method="heun")
        # A zero velocity scores E[mean_d (x1 - x0)^2] ~ 0.875; seeds 0-3 reach 4.7e-5 to 5.8e-5.
        assert eval_loss.item() < 1e-3
        # Seeds 0-3: mean endpoint error 1.6e-3 to 2.2e-3, max 0.024 to 0.050, against a mean
        # transport distance |x1 - x0| of ~1.26.
        distance = (x1_hat - x1).norm(dim=-1)
        assert distance.mean().item() < 0.01
        assert distance.max().item() < 0.1
