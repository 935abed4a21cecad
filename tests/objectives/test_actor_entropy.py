"""The actor loss's tanh-Gaussian entropy bonus: estimate, saturation gradient, validation."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from torchrl_flowmbpo.objectives import PWMActorLoss


def _entropy_of(loss: PWMActorLoss, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return loss._entropy(TensorDict(loc=loc, scale=scale, batch_size=loc.shape[:-1]))


def test_estimate_matches_exact_tanh_normal_entropy(models):
    loss = PWMActorLoss(
        models.actor("gaussian"), models.critic(), models.wm(), horizon=2, entropy_coef=0.5
    )
    # Each row is one state; the estimate averages over rows, so many identical rows give its
    # expectation. Exact reference: −E[log p(a)] of torch's own tanh-transformed Normal.
    n = 200_000
    for mu, sigma in [(0.0, 1.0), (1.5, 0.3), (-3.0, 0.5)]:
        loc, scale = torch.full((n, 1), mu), torch.full((n, 1), sigma)
        estimate = float(_entropy_of(loss, loc, scale))
        dist = TransformedDistribution(Normal(mu, sigma), [TanhTransform(cache_size=1)])
        sample = dist.rsample((n,))
        exact = float(-dist.log_prob(sample).mean())
        assert estimate == pytest.approx(exact, abs=0.02), (mu, sigma)
    # A plain-Normal sanity value: at mu=0, sigma→0 the Jacobian term vanishes.
    tiny = float(_entropy_of(loss, torch.zeros(n, 1), torch.full((n, 1), 1e-3)))
    assert tiny == pytest.approx(math.log(1e-3) + 0.5 * math.log(2 * math.pi * math.e), abs=1e-3)


class _MeanActor(nn.Module):
    """Writes ``loc = m`` (one parameter) and ``scale = 0.3``, acting ``tanh(loc + scale ε)``."""

    def __init__(self, m: float) -> None:
        super().__init__()
        self.m = nn.Parameter(torch.tensor(m))

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, ...]:
        loc = self.m.reshape(1, 1).expand(*latent.shape[:-1], 2)
        scale = torch.full_like(loc, 0.3)
        return loc, scale, torch.tanh(loc + scale * torch.randn_like(loc))


def test_saturated_actor_keeps_a_restoring_gradient(models):
    # At a pre-tanh mean of 20 the action is exactly ±1 in float32: the return gives the actor
    # no gradient at all, the entropy bonus a gradient of 2·coef per action dimension that
    # pulls the mean back towards 0.
    wm = models.wm(randomize_heads=True)
    actor = _MeanActor(20.0)
    module = TensorDictModule(actor, in_keys=["latent"], out_keys=["loc", "scale", "action"])
    coef = 0.1
    loss = PWMActorLoss(module, models.critic(), wm, horizon=3, entropy_coef=coef)
    out, _ = loss(models.starts())
    (grad_return,) = torch.autograd.grad(out["loss_actor"], actor.m, allow_unused=True)
    assert grad_return is None or float(grad_return) == 0.0
    (grad_entropy,) = torch.autograd.grad(out["loss_entropy"], actor.m)
    # d/dm [−coef · Σ_d log(1 − tanh²(m + σε))] = coef · Σ_d 2 tanh(·) = 2·coef·2 dims.
    assert float(grad_entropy) == pytest.approx(2.0 * coef * 2, rel=1e-4)
    assert float(out["loss_entropy"].detach()) == pytest.approx(-coef * float(out["entropy"]))


def test_no_entropy_term_by_default(models):
    loss = PWMActorLoss(models.actor("gaussian"), models.critic(), models.wm(), horizon=2)
    out, _ = loss(models.starts())
    assert "loss_entropy" not in out and "entropy" not in out


def test_flow_actor_rejected_with_clear_error(models):
    loss = PWMActorLoss(
        models.actor("flow"), models.critic(), models.wm(), horizon=2, entropy_coef=0.1
    )
    with pytest.raises(KeyError, match=r"entropy_coef=0\.1 needs the actor's pre-tanh"):
        loss(models.starts())


def test_negative_coefficient_rejected(models):
    with pytest.raises(ValueError, match="entropy_coef must be >= 0, got -1"):
        PWMActorLoss(
            models.actor("gaussian"), models.critic(), models.wm(), horizon=2, entropy_coef=-1.0
        )
