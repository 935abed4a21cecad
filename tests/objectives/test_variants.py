"""The four experiment variants run one full PWM update: each loss moves only its own network.

baseline = PWMWorldModel + GaussianActor, flow_wm = FlowWorldModel + GaussianActor,
flow_policy = PWMWorldModel + FlowActor, full_flow = FlowWorldModel + FlowActor; each with the
scalar reward head, the two-hot head, and without the termination head.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDictBase

from torchrl_flowmbpo.objectives import PWMActorLoss, PWMValueLoss, WorldModelLoss

VARIANTS = {
    "baseline": ("mlp", "gaussian"),
    "flow_wm": ("flow", "gaussian"),
    "flow_policy": ("mlp", "flow"),
    "full_flow": ("flow", "flow"),
}
HEADS = {
    "scalar": {"reward_head": "scalar", "termination_head": True},
    "twohot": {"reward_head": "twohot", "termination_head": True},
    "no_termination": {"reward_head": "scalar", "termination_head": False},
}


def _finite(td: TensorDictBase) -> None:
    for key, value in td.items(include_nested=True, leaves_only=True):
        assert torch.isfinite(value).all(), key


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_one_update_moves_only_its_own_network(models, param_values, param_grads, variant, head):
    wm_kind, actor_kind = VARIANTS[variant]
    horizon = models.horizon
    wm = models.wm(wm_kind, **HEADS[head])
    actor = models.actor(actor_kind)
    critic = models.critic(detach_latent=False)
    wm_loss = WorldModelLoss(wm, horizon=horizon)
    actor_loss = PWMActorLoss(actor, critic, wm, horizon=horizon)
    value_loss = PWMValueLoss(critic)
    # Each loss owns exactly one network: the optimisers built from loss.parameters() are the
    # training loop's, so any overlap would train a network with the wrong objective.
    owned = {
        name: {id(p) for p in loss.parameters()}
        for name, loss in (("wm", wm_loss), ("actor", actor_loss), ("value", value_loss))
    }
    assert owned["wm"] == {id(p) for p in wm.parameters()}
    assert owned["actor"] == {id(p) for p in actor.parameters()}
    assert owned["value"] == {id(p) for p in critic.parameters()}
    optimizers = {
        name: torch.optim.Adam(loss.parameters(), lr=1e-3)
        for name, loss in (("wm", wm_loss), ("actor", actor_loss), ("value", value_loss))
    }
    nets = {"wm": wm, "actor": actor, "value": critic}

    def step(name: str, loss_value: torch.Tensor) -> set[str]:
        """Backward + the ``name`` optimiser's step; returns the names of the moved params."""
        before = {key: param_values(net) for key, net in nets.items()}
        for net in nets.values():
            net.zero_grad(set_to_none=True)
        loss_value.backward()
        grads = param_grads(nets[name])
        for key, net in nets.items():
            if key != name:
                assert all(g is None for g in param_grads(net).values()), (name, key)
        optimizers[name].step()
        moved = set()
        for key, net in nets.items():
            for pname, value in param_values(net).items():
                if not torch.equal(value, before[key][pname]):
                    moved.add(pname)
                    # Only the trained network moves, and only where its gradient is non-zero.
                    assert key == name, (name, key, pname)
                    assert grads[pname].abs().sum() > 0, (name, pname)
        return moved

    # 1. World model on [B, H + 1] replay slices.
    batch = models.slices(steps=horizon + 1)
    wm_out = wm_loss(batch)
    _finite(wm_out)
    assert ("loss_termination" in wm_out) == HEADS[head]["termination_head"]
    moved = step("wm", sum(v for k, v in wm_out.items() if k.startswith("loss_")))
    # The hidden layers of the reward/termination heads get exactly zero gradient on the first
    # step (their last layer's weight starts at zero); every other WM parameter moves.
    last = str(len(wm.reward_head) - 1)  # both heads are mlp(L + A, units, out): same depth
    frozen_first_step = {
        name
        for name, _ in wm.named_parameters()
        if name.split(".")[0] in ("reward_head", "termination_head") and name.split(".")[1] != last
    }
    assert moved == {name for name, _ in wm.named_parameters()} - frozen_first_step

    # 2. Actor on the slices' start observations (now the heads are non-zero, so the reward
    #    path contributes as well as the critic bootstrap).
    starts = batch[:, 0].select("observation")
    actor_out, traj = actor_loss(starts)
    _finite(actor_out)
    _finite(traj)
    assert traj.batch_size == (batch.shape[0], horizon)
    assert step("actor", actor_out["loss_actor"]) == {n for n, _ in actor.named_parameters()}

    # 3. Critic on the imagined trajectory, targets computed once.
    traj = value_loss.compute_value_targets(traj)
    value_out = value_loss(traj.reshape(-1))
    _finite(value_out)

    def bootstrap() -> torch.Tensor:
        torch.manual_seed(5)
        with torch.no_grad():
            return actor_loss(starts)[0]["bootstrap_value"]

    boot_before = bootstrap()
    assert step("value", value_out["loss_value"]) == {n for n, _ in critic.named_parameters()}
    # The actor loss bootstraps with the very critic the value loss just trained.
    assert not torch.equal(bootstrap(), boot_before)
