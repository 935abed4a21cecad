"""actor_gradient_split and PWMActorLoss.return_parts: the actor's gradient of the imagined return,
split into the model's reward part and the critic's bootstrap part."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from torchrl_flowmbpo.diagnostics import actor_gradient_split
from torchrl_flowmbpo.modules import FlowActor, GaussianActor, VCritic
from torchrl_flowmbpo.modules.models import FlowWorldModel, LatentWorldModel, PWMWorldModel
from torchrl_flowmbpo.objectives import PWMActorLoss

OBS_DIM, ACTION_DIM, LATENT_DIM, HORIZON = 4, 2, 16, 3
WORLD_MODELS = {"mlp": PWMWorldModel, "flow": FlowWorldModel}
ACTORS = {"gaussian": GaussianActor, "flow": FlowActor}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_wm(kind: str = "mlp", *, termination_head: bool = True) -> LatentWorldModel:
    """A tiny world model whose (zero-initialised) reward and termination heads are randomised,
    so that r̂ and c depend on the actions. The scalar reward head: the float32 tolerances below
    were set with it (the two-hot decode rounds differently)."""
    wm = WORLD_MODELS[kind](
        OBS_DIM,
        ACTION_DIM,
        latent_dim=LATENT_DIM,
        units=(32,),
        encoder_units=(32,),
        reward_head="scalar",
        termination_head=termination_head,
    )
    with torch.no_grad():
        for head in (wm.reward_head, wm.termination_head):
            if head is not None:
                head[-1].weight.normal_(0.0, 0.5)
    return wm


def tiny_actor(kind: str = "gaussian") -> GaussianActor | FlowActor:
    return ACTORS[kind](LATENT_DIM, ACTION_DIM, hidden=(16,))


def tiny_critic() -> VCritic:
    return VCritic(LATENT_DIM, hidden=(16,), detach_latent=False)


def starts(batch: int = 6, obs_dim: int = OBS_DIM) -> TensorDict:
    return TensorDict({"observation": torch.randn(batch, obs_dim)}, batch_size=[batch])


def flat_grad(output: torch.Tensor, module: nn.Module) -> torch.Tensor:
    grads = torch.autograd.grad(output, list(module.parameters()), retain_graph=True)
    return torch.cat([g.reshape(-1) for g in grads]).double()


class ScaledCritic(nn.Module):
    """``V(z) = scale · f(z)`` with ``f`` a small MLP (``scale = 0``: identically zero, with a
    graph; ``scale = −1``: the negated critic)."""

    def __init__(self, scale: float, net: nn.Module | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.net = net or nn.Sequential(nn.Linear(LATENT_DIM, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.scale * self.net(latent)


def as_critic(module: nn.Module) -> TensorDictModule:
    return TensorDictModule(module, in_keys=["latent"], out_keys=["state_value"])


# ---------------------------------------------------------------------------------------------
# (a), (e): the parts are forward's return, and their gradients sum to the loss's
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wm_kind", ["mlp", "flow"])
@pytest.mark.parametrize("actor_kind", ["gaussian", "flow"])
def test_parts_sum_to_the_actor_loss_and_its_gradient(wm_kind, actor_kind):
    actor = tiny_actor(actor_kind)
    loss = PWMActorLoss(actor, tiny_critic(), tiny_wm(wm_kind), horizon=HORIZON, ret_rms=False)
    start = starts()
    torch.manual_seed(1)
    losses, _ = loss(start)
    g_loss = flat_grad(losses["loss_actor"], actor)
    torch.manual_seed(1)  # the same sampled actions
    reward_part, bootstrap_part, traj = loss.return_parts(start)
    assert reward_part.shape == bootstrap_part.shape == (6,) and traj.shape == (6, HORIZON)
    # (e) forward is unchanged: ret_rms off, loss = −mean_b(J_b) / H with J = reward + bootstrap.
    ret = reward_part + bootstrap_part
    torch.testing.assert_close(losses["loss_actor"], -ret.mean() / HORIZON, rtol=0, atol=1e-6)
    torch.testing.assert_close(losses["imagined_return"], ret.detach().mean(), rtol=0, atol=1e-6)
    # (a) g_R + g_V = ∂ mean J / ∂θ = −H ∂ loss_actor / ∂θ (float32: to 1e-6 relative).
    g_reward, g_bootstrap = (
        flat_grad(reward_part.mean(), actor),
        flat_grad(bootstrap_part.mean(), actor),
    )
    g_return = flat_grad(ret.mean(), actor)
    torch.testing.assert_close(g_reward + g_bootstrap, g_return, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_reward + g_bootstrap, -HORIZON * g_loss, rtol=1e-6, atol=1e-6)
    # The diagnostic measures these same two gradients on the same rollout.
    torch.manual_seed(1)
    out = actor_gradient_split(loss, start)
    assert out["reward_grad_norm"] == pytest.approx(float(g_reward.norm()), rel=1e-6)
    assert out["bootstrap_grad_norm"] == pytest.approx(float(g_bootstrap.norm()), rel=1e-6)
    cosine = float(g_reward @ g_bootstrap / (g_reward.norm() * g_bootstrap.norm()))
    assert out["grad_cosine"] == pytest.approx(cosine, abs=1e-6)
    share = float(g_bootstrap.norm() ** 2 / (g_reward.norm() ** 2 + g_bootstrap.norm() ** 2))
    assert out["bootstrap_share"] == pytest.approx(share, rel=1e-6)
    ratio = out["bootstrap_grad_norm"] / out["reward_grad_norm"]
    assert out["grad_norm_ratio"] == pytest.approx(ratio, rel=1e-12)
    assert out["reward_part_mean"] == pytest.approx(float(reward_part.detach().mean()), rel=1e-6)
    assert out["bootstrap_part_mean"] == pytest.approx(
        float(bootstrap_part.detach().mean()), rel=1e-6
    )
    assert out["reward_grad_norm"] > 0 and out["bootstrap_grad_norm"] > 0


# ---------------------------------------------------------------------------------------------
# (b) a zero critic, (c) an exact anti-aligned case and the negated critic
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("termination_head", [True, False])
@pytest.mark.parametrize("graph", [True, False], ids=["zero_weights", "constant"])
def test_zero_critic_has_no_bootstrap_gradient(termination_head, graph):
    # With a graph (V = 0 · f(z)) the gradient is exactly zero; without one (a constant) and no
    # termination head the bootstrap part does not depend on the actor at all.
    critic = ScaledCritic(0.0) if graph else (lambda latent: latent[..., :1] * 0)
    wm = tiny_wm(termination_head=termination_head)
    loss = PWMActorLoss(tiny_actor(), as_critic(critic), wm, horizon=HORIZON)
    out = actor_gradient_split(loss, starts())
    assert out["bootstrap_grad_norm"] == 0.0 and out["bootstrap_part_mean"] == 0.0
    assert out["reward_grad_norm"] > 0
    assert math.isnan(out["grad_cosine"])
    assert out["bootstrap_share"] == 0.0 and out["grad_norm_ratio"] == 0.0


class ShiftModel(LatentWorldModel):
    """1-D model without termination: ``E(o) = o``, ``z_{t+1} = z_t + a_t``, ``r̂_t = β a_t``."""

    def __init__(self, beta: float) -> None:
        super().__init__(
            1,
            1,
            latent_dim=1,
            simnorm_group=1,
            encoder_units=(2,),
            units=(2,),
            reward_head="scalar",  # r̂ is the one output of reward_output
            termination_head=False,
        )
        self.beta = beta

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.clone()

    def next(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return latent + action

    def reward_output(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.beta * action


@pytest.mark.parametrize(("horizon", "gamma"), [(1, 0.5), (3, 1.0)])
@pytest.mark.parametrize("slope", [-3.0, 2.0])
def test_linear_critic_gives_a_known_multiple_of_the_reward_gradient(horizon, gamma, slope):
    # With r̂_t = β a_t, z_H = z_0 + Σ_t a_t and V(z) = c z, the two parts are the same linear
    # function S = Σ_t a_t of the sampled actions when γ^t is constant over t (H = 1, or γ = 1):
    #   R = β S,  V_H = γ^H c (z_0 + S)  ⇒  g_V = (γ^H c / β) g_R for any actor,
    # so cosine = sign(c / β), |g_V| / |g_R| = γ^H |c| / β, share = ratio² / (1 + ratio²).
    beta = 1.0
    critic = as_critic(ScaledCritic(slope, net=nn.Identity()))
    actor = GaussianActor(1, 1, hidden=(8,))
    loss = PWMActorLoss(actor, critic, ShiftModel(beta), horizon=horizon, gamma=gamma)
    out = actor_gradient_split(loss, starts(obs_dim=1))
    ratio = gamma**horizon * abs(slope) / beta
    assert out["grad_cosine"] == pytest.approx(math.copysign(1.0, slope / beta), abs=1e-6)
    assert out["grad_norm_ratio"] == pytest.approx(ratio, rel=1e-5)
    assert out["bootstrap_share"] == pytest.approx(ratio**2 / (1 + ratio**2), rel=1e-5)


def test_negated_critic_flips_the_cosine_and_keeps_the_norm():
    # bootstrap_part is linear in V (through γ^H Γ_H V(z_H)): V → −V negates g_V exactly.
    wm, actor, net = tiny_wm(), tiny_actor(), ScaledCritic(1.0).net
    results = []
    for scale in (1.0, -1.0):
        loss = PWMActorLoss(actor, as_critic(ScaledCritic(scale, net)), wm, horizon=HORIZON)
        torch.manual_seed(1)
        results.append(actor_gradient_split(loss, starts()))
    plus, minus = results
    assert minus["grad_cosine"] == pytest.approx(-plus["grad_cosine"], abs=1e-6)
    assert minus["bootstrap_grad_norm"] == pytest.approx(plus["bootstrap_grad_norm"], rel=1e-6)
    assert minus["reward_grad_norm"] == plus["reward_grad_norm"]
    assert minus["bootstrap_part_mean"] == pytest.approx(-plus["bootstrap_part_mean"], rel=1e-6)


# ---------------------------------------------------------------------------------------------
# (d) side effects
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wm_kind", ["mlp", "flow"])
def test_leaves_no_grad_and_no_state_behind(wm_kind):
    wm, actor, critic = tiny_wm(wm_kind), tiny_actor(), tiny_critic()
    loss = PWMActorLoss(actor, critic, wm, horizon=HORIZON)  # ret_rms on
    count = loss.ret_rms.count.clone()
    start = starts()
    before = start.clone()
    with torch.no_grad():  # the diagnostic enables gradients itself
        out = actor_gradient_split(loss, start)
    assert all(math.isfinite(value) for value in out.values())
    assert all(isinstance(value, float) for value in out.values())
    for module in (actor, wm, critic):
        assert all(p.grad is None for p in module.parameters())
        assert all(p.requires_grad for p in module.parameters())  # hold_out_net restored
    assert torch.equal(loss.ret_rms.count, count)
    assert (start == before).all()


def test_actor_without_trainable_parameters_raises():
    actor = tiny_actor().requires_grad_(False)
    loss = PWMActorLoss(actor, tiny_critic(), tiny_wm(), horizon=HORIZON)
    with pytest.raises(ValueError, match="no trainable parameter"):
        actor_gradient_split(loss, starts())
