"""PWMUpdater's critic loss on real replay slices (``real_value_coef``): TD(λ) targets of real
rewards and terminations against a hand recursion, the combined critic step, and what it moves."""

from __future__ import annotations

import pytest
import torch

from torchrl_flowmbpo.objectives import PWMActorLoss, PWMValueLoss, WorldModelLoss
from torchrl_flowmbpo.trainers import PWMUpdater

GAMMA, LMBDA = 0.9, 0.8


def _updater(models, critic, *, real_value_coef: float):
    wm = models.wm(randomize_heads=True)
    actor = models.actor("gaussian")
    losses = (
        WorldModelLoss(wm, horizon=models.horizon),
        PWMActorLoss(actor, critic, wm, horizon=models.horizon, ret_rms=False),
        PWMValueLoss(critic, gamma=GAMMA, lmbda=LMBDA),
    )
    optimizers = {
        "world_model": torch.optim.SGD(wm.parameters(), lr=1e-2),
        "actor": torch.optim.SGD(actor.parameters(), lr=1e-2),
        "critic": torch.optim.SGD(critic.parameters(), lr=1e-2),
    }
    clips = {"world_model": 20.0, "actor": 1.0, "critic": 100.0}
    updater = PWMUpdater(
        *losses,
        optimizers,
        clips,
        critic_iterations=1,
        critic_minibatches=1,
        real_value_coef=real_value_coef,
    )
    return updater, {"world_model": wm, "actor": actor, "critic": critic}


def _episode_slices(models, batch: int = 5, steps: int = 4):
    """Slices as the replay gives them: a termination only in a slice's last row."""
    slices = models.slices(batch, steps)
    terminated = torch.zeros(batch, steps, 1, dtype=torch.bool)
    terminated[:2, -1] = True
    slices.set(("next", "terminated"), terminated)
    return slices


def test_real_targets_follow_the_td_lambda_recursion(models, linear_critic):
    # V(z) = z[0] (w = 1, b = 0): the hand recursion reads the encoded next latents directly.
    updater, modules = _updater(models, linear_critic(), real_value_coef=1.0)
    slices = _episode_slices(models)
    samples = updater.real_value_samples(slices)

    encode = modules["world_model"].encode
    with torch.no_grad():
        latent = encode(slices["observation"])
        next_value = encode(slices["next", "observation"])[..., :1]
    reward = slices["next", "reward"]
    cont = (~slices["next", "terminated"]).float()
    batch, steps = slices.batch_size
    expected = torch.empty(batch, steps, 1)
    following = None
    for t in reversed(range(steps)):
        if following is None:  # the slice's last row bootstraps from V(z'_T-1) alone
            expected[:, t] = reward[:, t] + GAMMA * cont[:, t] * next_value[:, t]
        else:
            blend = (1 - LMBDA) * next_value[:, t] + LMBDA * following
            expected[:, t] = reward[:, t] + GAMMA * cont[:, t] * blend
        following = expected[:, t]

    assert samples.batch_size == torch.Size([batch * steps])
    torch.testing.assert_close(samples["latent"], latent.reshape(batch * steps, -1))
    torch.testing.assert_close(samples["value_target"], expected.reshape(-1, 1))
    # A terminated last row is its reward alone; the others are not.
    torch.testing.assert_close(expected[:2, -1], reward[:2, -1])
    assert not torch.allclose(expected[2:, -1], reward[2:, -1])


def test_critic_step_descends_imagined_plus_weighted_real_loss(models):
    coef = 0.7
    updater, modules = _updater(models, models.critic(), real_value_coef=coef)
    critic = modules["critic"]
    starts, slices = models.starts(), _episode_slices(models)
    value_loss = updater.value_loss

    torch.manual_seed(4)
    with torch.no_grad():
        _, trajectory = updater.actor_loss(starts)
    trajectory = value_loss.compute_value_targets(trajectory)
    imagined = value_loss(trajectory.select(*value_loss.minibatch_keys).reshape(-1))
    real_samples = updater.real_value_samples(slices)
    real = value_loss(real_samples)
    total = imagined["loss_value"] + coef * real["loss_value"]
    grads = torch.autograd.grad(total, list(critic.parameters()))
    expected_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))

    torch.manual_seed(4)
    metrics = updater.actor_critic_step(starts, update_actor=False, real_slices=slices)
    assert metrics["critic/grad_norm"] == pytest.approx(float(expected_norm), rel=1e-5)
    expected = {
        "critic/loss_value": imagined["loss_value"],
        "critic/loss_value_real": real["loss_value"],
        "critic/value_target_real_mean": real_samples["value_target"].mean(),
    }
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value.item(), rel=1e-5), key


def test_real_loss_moves_the_critic_only(models):
    updater, modules = _updater(models, models.critic(), real_value_coef=1.0)
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in modules.items()}
    slices = _episode_slices(models)
    updater.actor_critic_step(models.starts(), update_actor=False, real_slices=slices)
    moved = {
        n: any(not torch.equal(a, p) for a, p in zip(before[n], m.parameters(), strict=True))
        for n, m in modules.items()
    }
    assert moved == {"world_model": False, "actor": False, "critic": True}


def test_coefficient_zero_ignores_real_slices(models):
    # Off: the same step, metric for metric, as without slices (no real loss is computed).
    starts, slices = models.starts(), _episode_slices(models)
    metrics = []
    for real_slices in (slices, None):
        torch.manual_seed(0)
        updater, _ = _updater(models, models.critic(), real_value_coef=0.0)
        torch.manual_seed(5)
        metrics.append(
            updater.actor_critic_step(starts, update_actor=False, real_slices=real_slices)
        )
    assert "critic/loss_value_real" not in metrics[0]
    assert metrics[0] == metrics[1]


def test_bad_settings_fail_clearly(models):
    with pytest.raises(ValueError, match=r"real_value_coef must be >= 0, got -1\.0"):
        _updater(models, models.critic(), real_value_coef=-1.0)
    updater, _ = _updater(models, models.critic(), real_value_coef=0.5)
    with pytest.raises(ValueError, match="real_value_coef > 0 needs real_slices"):
        updater.actor_critic_step(models.starts())
