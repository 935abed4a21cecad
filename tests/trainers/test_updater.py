"""PWMUpdater: which parameters each step moves, critic warm-up, the entropy term in the step,
and how often a step reads a scalar back from the device."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from torchrl_flowmbpo.objectives import PWMActorLoss, PWMValueLoss, WorldModelLoss
from torchrl_flowmbpo.trainers import PWMUpdater


def _updater(models, *, entropy_coef: float = 0.0):
    wm = models.wm(randomize_heads=True)
    actor, critic = models.actor("gaussian"), models.critic(detach_latent=False)
    losses = (
        WorldModelLoss(wm, horizon=models.horizon),
        PWMActorLoss(
            actor, critic, wm, horizon=models.horizon, entropy_coef=entropy_coef, ret_rms=False
        ),
        PWMValueLoss(critic),
    )
    optimizers = {
        "world_model": torch.optim.Adam(wm.parameters(), lr=1e-3),
        "actor": torch.optim.Adam(actor.parameters(), lr=1e-3),
        "critic": torch.optim.Adam(critic.parameters(), lr=1e-3),
    }
    clips = {"world_model": 20.0, "actor": 1.0, "critic": 100.0}
    updater = PWMUpdater(*losses, optimizers, clips, critic_iterations=2, critic_minibatches=2)
    return updater, {"world_model": wm, "actor": actor, "critic": critic}


def _snapshot(modules):
    return {n: [p.detach().clone() for p in m.parameters()] for n, m in modules.items()}


def _moved(before, modules) -> dict[str, bool]:
    return {
        n: any(not torch.equal(a, p) for a, p in zip(before[n], m.parameters(), strict=True))
        for n, m in modules.items()
    }


@pytest.mark.parametrize("update_actor", [True, False])
def test_actor_critic_step_moves_actor_only_when_asked(models, update_actor):
    updater, modules = _updater(models)
    before = _snapshot(modules)
    metrics = updater.actor_critic_step(models.starts(), update_actor=update_actor)
    assert _moved(before, modules) == {
        "world_model": False,
        "actor": update_actor,
        "critic": True,
    }
    assert ("actor/grad_norm" in metrics) == update_actor
    assert metrics["critic/loss_value"] > 0


def test_actor_step_includes_entropy_term(models):
    # The step's gradient norm is that of loss_actor + loss_entropy (same noise, no ret_rms).
    torch.manual_seed(3)
    updater, modules = _updater(models, entropy_coef=1.0)
    actor = modules["actor"]
    starts = models.starts()
    torch.manual_seed(4)
    losses, _ = updater.actor_loss(starts)
    total = losses["loss_actor"] + losses["loss_entropy"]
    grads = torch.autograd.grad(total, list(actor.parameters()), allow_unused=True)
    expected = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g) for g in grads if g is not None])
    )
    torch.manual_seed(4)
    metrics = updater.actor_critic_step(starts)
    assert metrics["actor/grad_norm"] == pytest.approx(float(expected), rel=1e-5)
    assert metrics["actor/loss_entropy"] == pytest.approx(-metrics["actor/entropy"])


class _ScalarReads(TorchDispatchMode):
    """Counts scalar reads (``item``/``float``/``bool`` of a tensor): host syncs on a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _sgd_updater(models):
    # SGD: Adam reads its step counter once per parameter, which is not the updater's doing.
    updater, modules = _updater(models)
    updater.optimizers = {n: torch.optim.SGD(m.parameters(), lr=1e-3) for n, m in modules.items()}
    return updater


def test_world_model_step_reads_two_scalars_whatever_the_metrics(models):
    # The batch check and the grad-norm check; the metrics cross to the host in one tolist().
    updater = _sgd_updater(models)
    with _ScalarReads() as reads:
        metrics = updater.world_model_step(models.slices())
    assert len(metrics) > 5
    assert all(type(value) is float for value in metrics.values())
    assert metrics["loss"] == pytest.approx(
        sum(value for key, value in metrics.items() if key.startswith("loss_"))
    )
    assert reads.count == 2


@pytest.mark.parametrize("iterations", [1, 3])
def test_critic_steps_read_two_scalars_each(models, iterations):
    # Per critic step: the minibatch check and the grad-norm check, no per-step metric reads.
    updater = _sgd_updater(models)
    starts = models.starts()
    counts = {}
    for n in (iterations, iterations + 1):
        updater.critic_iterations = n
        with _ScalarReads() as reads:
            updater.actor_critic_step(starts)
        counts[n] = reads.count
    assert counts[iterations + 1] - counts[iterations] == 2 * updater.critic_minibatches
