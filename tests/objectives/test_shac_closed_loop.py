"""SHAC's closed loop: with the actor's input not detached, the loss's gradient is the true
derivative of the rollout's return (central differences); PWM's detached input gives the
open-loop gradient, which differs from it."""

from __future__ import annotations

import pytest
import torch

from torchrl_flowmbpo.envs.locomotion import CartPoleEnv, make_env
from torchrl_flowmbpo.modules import GaussianActor, VCritic
from torchrl_flowmbpo.objectives import SHACActorLoss

N, H = 4, 12


@pytest.fixture(scope="module")
def env() -> CartPoleEnv:
    return make_env("cartpole", num_envs=N, seed=0, differentiable=True)


def _loss(env: CartPoleEnv, actor: GaussianActor, critic: VCritic) -> torch.Tensor:
    """The loss of one window from the same start with the same action noise."""
    loss = SHACActorLoss(actor, critic, env, horizon=H, gamma=0.99, ret_rms=False)
    env.set_seed(3)
    start = env.reset()
    torch.manual_seed(11)
    return loss(start)[0]["loss_actor"]


def _actor_and_critic(detach_latent: bool) -> tuple[GaussianActor, VCritic]:
    torch.manual_seed(0)
    actor = GaussianActor(5, 1, hidden=(16,), latent_key="observation", detach_latent=detach_latent)
    critic = VCritic(5, hidden=(16,), latent_key="observation")
    return actor, critic


def _bias_gradient(env: CartPoleEnv, detach_latent: bool) -> tuple[float, float]:
    """Autograd's and central differences' derivative w.r.t. the mean's output bias."""
    actor, critic = _actor_and_critic(detach_latent)
    bias = actor.policy_net.mu_net[-1].bias
    (grad,) = torch.autograd.grad(_loss(env, actor, critic), [bias])
    eps = 1e-2
    with torch.no_grad():
        bias += eps
        up = _loss(env, actor, critic)
        bias -= 2 * eps
        down = _loss(env, actor, critic)
        bias += eps
    return grad.item(), ((up - down) / (2 * eps)).item()


def test_closed_loop_gradient_is_the_derivative_of_the_return(env: CartPoleEnv) -> None:
    autograd, finite = _bias_gradient(env, detach_latent=False)
    assert autograd == pytest.approx(finite, rel=5e-3)  # measured: 0.04 %


def test_detached_input_gives_another_gradient(env: CartPoleEnv) -> None:
    closed, finite = _bias_gradient(env, detach_latent=False)
    open_loop, finite_detached = _bias_gradient(env, detach_latent=True)
    assert finite_detached == pytest.approx(finite)  # the same return either way
    assert abs(open_loop - closed) > 0.1 * abs(closed)  # measured: 25 %
