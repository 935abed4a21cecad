"""Issue 27: without PWMUpdater (a user's own TorchRL loop), an actor loss that bootstraps from
the online critic while the value loss keeps a target copy is an error at its first call, not a
silent bootstrap from the online critic."""

from __future__ import annotations

import pytest
from torchrl.objectives import SoftUpdate

from torchrl_flowmbpo.objectives import PWMActorLoss, PWMValueLoss


def test_forgotten_bootstrap_params_with_a_target_critic_is_an_error(models):
    wm, actor, critic = models.wm("mlp"), models.actor(), models.critic(detach_latent=False)
    value_loss = PWMValueLoss(critic, target_critic=True)
    SoftUpdate(value_loss, tau=0.005)
    forgotten = PWMActorLoss(actor, critic, wm, horizon=models.horizon)
    with pytest.raises(ValueError, match="bootstraps from the online critic: build it with"):
        forgotten(models.starts())
    wired = PWMActorLoss(actor, critic, wm, horizon=models.horizon, value_loss=value_loss)
    wired(models.starts())  # the same modules, wired as the guide does


def test_a_critic_without_a_target_copy_still_bootstraps_as_given(models):
    wm, actor, critic = models.wm("mlp"), models.actor(), models.critic(detach_latent=False)
    PWMValueLoss(critic, functional=False)
    PWMActorLoss(actor, critic, wm, horizon=models.horizon)(models.starts())
