"""The actor loss's entropy bonus, −log π(a|s) at a fresh sample, for both actors: estimate,
saturation gradient, the FlowActor's density through the loss, validation."""

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
    # A plain-Normal sanity value: at mu=0, sigma→0 the Jacobian term vanishes. The estimate
    # carries ½ε² (mean ½, Monte-Carlo std 0.5·sqrt(2/n) ≈ 0.0016 here) in place of ½.
    tiny = float(_entropy_of(loss, torch.zeros(n, 1), torch.full((n, 1), 1e-3)))
    assert tiny == pytest.approx(math.log(1e-3) + 0.5 * math.log(2 * math.pi * math.e), abs=0.01)


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


def test_no_entropy_term_at_zero_coefficient(models):
    loss = PWMActorLoss(
        models.actor("gaussian"), models.critic(), models.wm(), horizon=2, entropy_coef=0.0
    )
    out, _ = loss(models.starts())
    assert "loss_entropy" not in out and "entropy" not in out


def test_flow_actor_with_zero_velocity_has_the_gaussian_estimate(models):
    # With a zero velocity field the FlowActor is tanh(σ ε): same noise, same −log π, to float
    # rounding (the solve's Jacobian is the identity, log|det| = 0).
    gaussian, flow = models.actor("gaussian"), models.actor("flow", velocity_init="zero")
    scale = torch.full((64, 3, 2), 0.4)
    traj = TensorDict(
        loc=torch.zeros(64, 3, 2),
        cond=torch.randn(64, 3, 16),
        scale=scale,
        batch_size=[64, 3],
    )
    estimates = []
    for actor in (gaussian, flow):
        loss = PWMActorLoss(actor, models.critic(), models.wm(), horizon=2, entropy_coef=0.1)
        torch.manual_seed(7)
        estimates.append(float(loss._entropy(traj).detach()))
    assert estimates[0] == pytest.approx(estimates[1], abs=1e-5)


def test_flow_actor_entropy_trains_every_parameter_through_the_loss(models):
    actor = models.actor("flow")
    loss = PWMActorLoss(actor, models.critic(), models.wm(), horizon=3, entropy_coef=0.1)
    out, _ = loss(models.starts())
    assert float(out["loss_entropy"].detach()) == pytest.approx(-0.1 * float(out["entropy"]))
    grads = torch.autograd.grad(out["loss_entropy"], list(actor.parameters()))
    for (name, _), grad in zip(actor.named_parameters(), grads, strict=True):
        assert grad.abs().sum() > 0, name


def test_saturated_flow_actor_keeps_a_restoring_gradient(models):
    # A constant velocity of 20 (zeroed weights, bias 20): a = tanh(σε + 20) is exactly 1 in
    # float32, so the return gives no gradient, and the entropy bonus gives the bias 2·coef per
    # dimension, as for the Gaussian actor's mean.
    actor = models.actor("flow", velocity_init="zero")
    bias = actor.policy_net.velocity_net[-1].bias
    with torch.no_grad():
        bias.fill_(20.0)
    coef = 0.1
    loss = PWMActorLoss(
        actor, models.critic(), models.wm(randomize_heads=True), horizon=3, entropy_coef=coef
    )
    out, traj = loss(models.starts())
    assert bool((traj["action"] == 1.0).all())
    # retain_graph: with the default detach_latent=False the entropy's graph shares the rollout.
    (grad_return,) = torch.autograd.grad(
        out["loss_actor"], bias, allow_unused=True, retain_graph=True
    )
    assert grad_return is None or not grad_return.any()
    (grad_entropy,) = torch.autograd.grad(out["loss_entropy"], bias)
    assert torch.allclose(grad_entropy, torch.full((2,), 2.0 * coef), rtol=1e-4)


def test_module_without_distribution_parameters_rejected_with_clear_error(models):
    module = TensorDictModule(nn.Linear(16, 2), in_keys=["latent"], out_keys=["action"])
    loss = PWMActorLoss(module, models.critic(), models.wm(), horizon=2, entropy_coef=0.1)
    with pytest.raises(KeyError, match=r"entropy_coef=0\.1 needs .* \['loc', 'scale'\]"):
        loss(models.starts())


def test_negative_coefficient_rejected(models):
    with pytest.raises(ValueError, match="entropy_coef must be >= 0, got -1"):
        PWMActorLoss(
            models.actor("gaussian"), models.critic(), models.wm(), horizon=2, entropy_coef=-1.0
        )
