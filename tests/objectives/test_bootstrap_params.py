"""The actor's horizon bootstrap follows the value loss's target critic: ``value_loss=`` reads it
at call time (no TorchRL warning), and a forgotten ``bootstrap_params`` with a target critic is
an error in the updater, not a silent bootstrap from the online critic."""

from __future__ import annotations

import warnings

import pytest
import torch
from torchrl.objectives import SoftUpdate

from torchrl_flowmbpo.objectives import PWMActorLoss, PWMValueLoss, WorldModelLoss
from torchrl_flowmbpo.trainers import PWMUpdater


def _optimizers(wm, actor, critic):
    return {
        "world_model": torch.optim.Adam(wm.parameters(), lr=1e-3),
        "actor": torch.optim.Adam(actor.parameters(), lr=1e-3),
        "critic": torch.optim.Adam(critic.parameters(), lr=1e-3),
    }


CLIPS = {"world_model": 20.0, "actor": 1.0, "critic": 100.0}


def test_value_loss_argument_bootstraps_from_the_target_critic_without_warning(models):
    wm, actor, critic = models.wm("mlp"), models.actor(), models.critic(detach_latent=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # TorchRL's "No target network updater" included
        value_loss = PWMValueLoss(critic, target_critic=True)
        loss = PWMActorLoss(actor, critic, wm, horizon=models.horizon, value_loss=value_loss)
        loss.ret_rms = None
        SoftUpdate(value_loss, tau=0.005)
        assert loss.bootstrap_params is value_loss.target_critic_network_params
        starts = models.starts()
        torch.manual_seed(3)
        before = loss(starts)[0]["loss_actor"]
        with torch.no_grad():  # the online critic moves, the target does not
            for p in critic.parameters():
                p.add_(0.5 * torch.randn_like(p))
        torch.manual_seed(3)
        torch.testing.assert_close(loss(starts)[0]["loss_actor"], before, rtol=0, atol=0)


def test_value_loss_without_target_bootstraps_from_the_critic(models):
    wm, actor, critic = models.wm("mlp"), models.actor(), models.critic(detach_latent=False)
    value_loss = PWMValueLoss(critic, functional=False)
    loss = PWMActorLoss(actor, critic, wm, horizon=models.horizon, value_loss=value_loss)
    assert loss.bootstrap_params is None  # the critic's own parameters, in place


def test_value_loss_and_bootstrap_params_together_or_another_critic_are_errors(models):
    wm, actor, critic = models.wm("mlp"), models.actor(), models.critic(detach_latent=False)
    value_loss = PWMValueLoss(critic, target_critic=True)
    with pytest.raises(ValueError, match="value_loss= or bootstrap_params=, not both"):
        PWMActorLoss(
            actor,
            critic,
            wm,
            value_loss=value_loss,
            bootstrap_params=value_loss.critic_network_params,
        )
    with pytest.raises(ValueError, match="trains another critic"):
        PWMActorLoss(actor, models.critic(), wm, value_loss=value_loss)


@pytest.mark.parametrize("wiring", ["value_loss", "bootstrap_params", "forgotten"])
def test_updater_refuses_an_actor_that_ignores_the_target_critic(models, wiring):
    wm, actor, critic = models.wm("mlp"), models.actor(), models.critic(detach_latent=False)
    value_loss = PWMValueLoss(critic, target_critic=True)
    kwargs = {
        "value_loss": {"value_loss": value_loss},
        "forgotten": {},
    }.get(wiring)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bootstrap_params read before SoftUpdate warns
        if kwargs is None:
            kwargs = {"bootstrap_params": value_loss.target_critic_network_params}
    actor_loss = PWMActorLoss(actor, critic, wm, horizon=models.horizon, **kwargs)
    losses = (WorldModelLoss(wm, horizon=models.horizon), actor_loss, value_loss)
    optimizers = _optimizers(wm, actor, critic)
    if wiring == "forgotten":
        with pytest.raises(ValueError, match="target critic but the actor loss bootstraps"):
            PWMUpdater(*losses, optimizers, CLIPS)
    else:
        assert PWMUpdater(*losses, optimizers, CLIPS).target_updater is not None
