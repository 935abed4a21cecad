"""FlowWorldModel(grad_checkpoint=True): the same values and gradients as without, checkpointing
only when a graph is recorded, and far fewer saved activations over a rollout."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch.autograd.graph import saved_tensors_hooks
from torchrl.objectives import hold_out_net

import torchrl_flowmbpo.modules.models.flow_world_model as flow_world_model
from torchrl_flowmbpo.modules.actors import GaussianActor
from torchrl_flowmbpo.modules.critic import VCritic
from torchrl_flowmbpo.modules.models import FlowWorldModel
from torchrl_flowmbpo.objectives import PWMActorLoss, WorldModelLoss

OBS, ACT, LATENT = 6, 3, 32
SIZES = {"latent_dim": LATENT, "units": (64, 64), "encoder_units": (64,)}
CASES = [("euler", 2), ("euler", 4), ("heun", 2), ("heun", 4)]
IDS = [f"{integrator}-K{k}" for integrator, k in CASES]


def _pair(integrator: str = "heun", flow_steps: int = 4) -> tuple[FlowWorldModel, FlowWorldModel]:
    """Identical models (same seed), without and with checkpointing; random last head layers so
    that the reward and termination heads depend on (z, a)."""
    models = []
    for grad_checkpoint in (False, True):
        torch.manual_seed(0)
        wm = FlowWorldModel(
            OBS,
            ACT,
            integrator=integrator,
            flow_steps=flow_steps,
            grad_checkpoint=grad_checkpoint,
            **SIZES,
        )
        with torch.no_grad():
            wm.reward_head[-1].weight.normal_(0.0, 0.5)
            wm.termination_head[-1].weight.normal_(0.0, 0.5)
        models.append(wm)
    return models[0], models[1]


def _inputs(horizon: int, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Start observations, actions ``[B, H, A]`` (a leaf) and flow times ``[B, H, 1]``."""
    generator = torch.Generator().manual_seed(1)
    obs = torch.randn(batch, OBS, generator=generator)
    actions = torch.rand(batch, horizon, ACT, generator=generator) * 2 - 1
    tau = torch.rand(batch, horizon, 1, generator=generator)
    return obs, actions.requires_grad_(True), tau


def _rollout(wm: FlowWorldModel, obs, actions, tau) -> tuple[torch.Tensor, torch.Tensor]:
    """The world-model loss's rollout (flow_source rollout): heads on z_t, z_{t+1} = next(z_t,
    a_t), flow matching from z_t. Returns the start latent and a scalar mixing every output."""
    z0 = wm.encode(obs)
    z, total = z0, 0.0
    weights = torch.linspace(-1.0, 1.0, LATENT)
    for t in range(actions.shape[1]):
        a = actions[:, t]
        total = total + wm.reward(z, a).sum() + wm.termination_logit(z, a).sum()
        target = torch.roll(z, 1, dims=-1).detach()
        total = total + wm.dynamics_error(z, a, target, tau=tau[:, t]).sum()
        z = wm.next(z, a)
        total = total + (weights * z).sum()
    return z0, total


def _assert_grads_equal(grads_a, grads_b) -> None:
    for g_a, g_b in zip(grads_a, grads_b, strict=True):
        assert g_a is not None and g_b is not None
        torch.testing.assert_close(g_b, g_a, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("integrator", "flow_steps"), CASES, ids=IDS)
def test_same_values_and_gradients_through_a_rollout(integrator: str, flow_steps: int) -> None:
    plain, ckpt = _pair(integrator, flow_steps)
    obs, actions, tau = _inputs(horizon=5)
    results = []
    for wm in (plain, ckpt):
        z0, total = _rollout(wm, obs, actions, tau)
        grads = torch.autograd.grad(total, [z0, actions, *wm.parameters()])
        results.append((total.detach(), grads))
    (total_plain, grads_plain), (total_ckpt, grads_ckpt) = results
    torch.testing.assert_close(total_ckpt, total_plain, rtol=0, atol=1e-6)
    _assert_grads_equal(grads_plain, grads_ckpt)


def test_held_out_model_passes_the_same_gradients_and_gets_none() -> None:
    """The actor loss's pattern: rollout under hold_out_net, backward after it has exited (when
    requires_grad is back on, which a recompute must not see)."""
    plain, ckpt = _pair("heun", 2)
    obs, _, _ = _inputs(horizon=4)
    grads = []
    for wm in (plain, ckpt):
        torch.manual_seed(2)
        policy = torch.nn.Linear(LATENT, ACT)
        with hold_out_net(wm):
            z = wm.encode(obs)
            ret = 0.0
            for _ in range(4):
                a = torch.tanh(policy(z))
                ret = ret + wm.reward(z, a).sum()
                z = wm.next(z, a)
        ret.backward()
        assert all(p.grad is None and p.requires_grad for p in wm.parameters())
        grads.append([p.grad for p in policy.parameters()])
    _assert_grads_equal(*grads)


def test_functional_parameters_are_the_ones_recomputed() -> None:
    """Parameters swapped in by ``to_module`` and restored before backward: the recompute must use
    the swapped-in ones (they differ from the module's own here)."""
    plain, ckpt = _pair("heun", 2)
    obs, actions, tau = _inputs(horizon=4)
    grads = []
    for wm in (plain, ckpt):
        params = TensorDict.from_module(wm).detach().apply(lambda p: 1.1 * p).requires_grad_()
        with params.to_module(wm):
            _, total = _rollout(wm, obs, actions, tau)
        weights = params.exclude("reward_support").values(True, True)  # not a parameter
        grads.append(torch.autograd.grad(total, [actions, *weights]))
    _assert_grads_equal(*grads)


def test_losses_give_the_same_values_and_gradients() -> None:
    """WorldModelLoss (flow_source rollout) and PWMActorLoss (imagination under hold_out_net)."""
    plain, ckpt = _pair("heun", 2)
    horizon, batch = 4, 8
    generator = torch.Generator().manual_seed(3)
    obs = torch.randn(batch, horizon + 2, OBS, generator=generator)
    slices = TensorDict(
        {
            "observation": obs[:, :-1],
            "action": torch.rand(batch, horizon + 1, ACT, generator=generator) * 2 - 1,
            ("next", "observation"): obs[:, 1:],
            ("next", "reward"): torch.randn(batch, horizon + 1, 1, generator=generator),
            ("next", "terminated"): torch.zeros(batch, horizon + 1, 1, dtype=torch.bool),
        },
        batch_size=[batch, horizon + 1],
    )
    results = []
    for wm in (plain, ckpt):
        torch.manual_seed(4)
        actor = GaussianActor(LATENT, ACT, hidden=(16,))
        critic = VCritic(LATENT, hidden=(16,), detach_latent=False)
        wm_losses = WorldModelLoss(wm, horizon=horizon, flow_source="rollout")(slices)
        wm_total = sum(v for k, v in wm_losses.items() if k.startswith("loss_"))
        actor_loss = PWMActorLoss(actor, critic, wm, horizon=horizon, gamma=0.99)
        loss_actor = actor_loss(slices[:, 0].select("observation"))[0]["loss_actor"]
        results.append(
            (
                torch.stack([wm_total, loss_actor]).detach(),
                torch.autograd.grad(wm_total, list(wm.parameters()), allow_unused=True),
                torch.autograd.grad(loss_actor, list(actor.parameters())),
            )
        )
    (values_plain, *grads_plain), (values_ckpt, *grads_ckpt) = results
    torch.testing.assert_close(values_ckpt, values_plain, rtol=0, atol=1e-6)
    for g_plain, g_ckpt in zip(grads_plain, grads_ckpt, strict=True):
        for a, b in zip(g_plain, g_ckpt, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


def test_one_checkpoint_per_env_step_and_none_without_a_graph(monkeypatch) -> None:
    plain, ckpt = _pair("heun", 4)
    calls = []

    def counting_checkpoint(*args, **kwargs):
        calls.append(kwargs)
        return torch.utils.checkpoint.checkpoint(*args, **kwargs)

    monkeypatch.setattr(flow_world_model, "checkpoint", counting_checkpoint)
    obs, actions, tau = _inputs(horizon=6)
    _rollout(ckpt, obs, actions, tau)
    assert len(calls) == 6 and all(not c["use_reentrant"] for c in calls)
    calls.clear()
    with torch.no_grad():
        z0, total = _rollout(ckpt, obs, actions, tau)
        _, total_plain = _rollout(plain, obs, actions, tau)
    assert calls == [] and total.grad_fn is None
    torch.testing.assert_close(total, total_plain, rtol=0, atol=0)
    # Grad mode on but nothing requires grad (e.g. a frozen model on data): no graph, no checkpoint.
    ckpt.requires_grad_(False)
    z_next = ckpt.next(z0, actions[:, 0].detach())
    assert calls == [] and z_next.grad_fn is None


def _saved_bytes(fn) -> int:
    """Bytes of the distinct non-parameter storages autograd saves for backward while ``fn``
    runs (parameters are resident anyway)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.nn.Parameter):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def test_sixteen_step_heun_k4_rollout_saves_far_fewer_bytes() -> None:
    plain, ckpt = _pair("heun", 4)
    obs, actions, tau = _inputs(horizon=16, batch=64)
    start = plain.encode(obs).detach().requires_grad_(True)

    def solve_only(wm: FlowWorldModel) -> None:
        z = start
        for t in range(16):
            z = wm.next(z, actions[:, t])

    full, solve = {}, {}
    for name, wm in (("plain", plain), ("ckpt", ckpt)):
        full[name] = _saved_bytes(lambda wm=wm: _rollout(wm, obs, actions, tau))
        solve[name] = _saved_bytes(lambda wm=wm: solve_only(wm))
    # Without checkpointing the solve saves 16 steps x 8 velocity-net evaluations (14.3 MB
    # here); with it, only each step's input latent and action (views of the actions tensor).
    inputs = 16 * start.untyped_storage().nbytes() + actions.untyped_storage().nbytes()
    assert solve["plain"] > 10_000_000
    assert solve["ckpt"] <= inputs == 143_360
    # The WM loss's rollout keeps its heads and flow-matching evaluation (3 MLP evaluations per
    # step against the solve's 8): 19.7 MB -> 5.6 MB here.
    assert full["ckpt"] < full["plain"] / 3, full
    assert full["plain"] - full["ckpt"] > 0.95 * solve["plain"], (full, solve)
