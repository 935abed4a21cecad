"""Tests for the PWM actor loss: closed forms, isolation, trajectory, keys.

The loss is specified in docs/algorithm.md, "Actor loss".
"""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from torchrl_flowmbpo.modules.models import LatentWorldModel
from torchrl_flowmbpo.objectives import NonFiniteBatchError, PWMActorLoss, PWMValueLoss

# ---------------------------------------------------------------------------------------------
# A 1-D linear world model, a constant-action actor and a linear critic: J in closed form
# ---------------------------------------------------------------------------------------------


class ShiftWorldModel(LatentWorldModel):
    """1-D model: ``E(o) = o``, ``z_{t+1} = z_t + a_t``, ``r̂_t = α z_t + β a_t`` and termination
    logit ``ℓ_t = ℓ_0 + η z_t``. The parent's MLP heads exist but are unused."""

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 0.0,
        logit: float = 0.0,
        eta: float = 0.0,
        *,
        termination_head: bool = True,
    ) -> None:
        super().__init__(
            1,
            1,
            latent_dim=1,
            simnorm_group=1,
            encoder_units=(2,),
            units=(2,),
            reward_head="scalar",  # r̂ is the one output of reward_output
            termination_head=termination_head,
        )
        self.alpha, self.beta = nn.Parameter(torch.tensor(alpha)), nn.Parameter(torch.tensor(beta))
        self.logit0, self.eta = nn.Parameter(torch.tensor(logit)), nn.Parameter(torch.tensor(eta))

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.clone()

    def next(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return latent + action

    def reward_output(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.alpha * latent + self.beta * action

    def termination_logit(self, latent: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if self.termination_head is None:
            raise RuntimeError("no termination head")
        return self.logit0 + self.eta * latent


class ConstantAction(nn.Module):
    """``a = k`` whatever the latent: a deterministic actor with one parameter."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.k.reshape(1).expand(*latent.shape[:-1], 1)


def _constant_actor(k: float) -> TensorDictModule:
    return TensorDictModule(ConstantAction(k), in_keys=["latent"], out_keys=["action"])


def _closed_form(z0, k, *, horizon, gamma, alpha, beta, c0, c1, p, boot_power=None):
    """J and dJ/dk for the shift model with constant continue probability p.

    z_t = z_0 + t k,  r̂_t = α z_t + β k = α z_0 + (α t + β) k,  Γ_t = p^t,  V(z) = c_0 + c_1 z:
      J     = Σ_{t<H} (γ p)^t [α z_0 + (α t + β) k] + γ^P p^H [c_0 + c_1 (z_0 + H k)]
      dJ/dk = Σ_{t<H} (γ p)^t (α t + β)           + γ^P p^H c_1 H
    with bootstrap power P = H (ours) or H + 1 (PWM's parity flag).
    """
    boot_power = horizon if boot_power is None else boot_power
    ret = sum((gamma * p) ** t * (alpha * z0 + (alpha * t + beta) * k) for t in range(horizon))
    boot = gamma**boot_power * p**horizon
    ret = ret + boot * (c0 + c1 * (z0 + horizon * k))
    grad = sum((gamma * p) ** t * (alpha * t + beta) for t in range(horizon)) + boot * c1 * horizon
    return ret, grad


def _starts(z0: torch.Tensor) -> TensorDict:
    return TensorDict({"observation": z0.reshape(-1, 1)}, batch_size=[z0.numel()])


Z0 = torch.tensor([0.3, -1.0, 2.0, 0.5, -0.2])
SHIFT = {"alpha": 0.8, "beta": -0.5, "c0": 1.5, "c1": 0.7}


def test_golden_number_two_steps(linear_critic):
    # H = 2, γ = 0.5, r̂ = z, a = 1, z_0 = 1, V ≡ 2, no termination head:
    #   z = (1, 2), r̂ = (1, 2), J = 1 + 0.5·2 + 0.5²·2 = 2.5, loss = −J / H = −1.25;
    #   with γ^{H+1}: J = 1 + 1 + 0.5³·2 = 2.25, loss = −1.125.
    wm = ShiftWorldModel(termination_head=False)
    for extra, expected in ((False, -1.25), (True, -1.125)):
        loss = PWMActorLoss(
            _constant_actor(1.0),
            linear_critic(w=0.0, b=2.0),
            wm,
            horizon=2,
            gamma=0.5,
            ret_rms=False,
            bootstrap_extra_gamma=extra,
            entropy_coef=0.0,  # PWM's loss: the return alone
        )
        out, _ = loss(_starts(torch.tensor([1.0])))
        torch.testing.assert_close(out["loss_actor"], torch.tensor(expected))


@pytest.mark.parametrize(
    ("termination_head", "use_continue", "logit"),
    [(False, True, 0.0), (True, True, -1.0), (True, True, 0.5), (True, False, -1.0)],
    ids=["no_head", "continue_-1", "continue_+0.5", "head_unused"],
)
@pytest.mark.parametrize("extra", [False, True], ids=["gammaH", "gammaH+1"])
def test_closed_form_loss_and_gradient(linear_critic, termination_head, use_continue, logit, extra):
    horizon, gamma, k = 4, 0.9, 0.3
    wm = ShiftWorldModel(SHIFT["alpha"], SHIFT["beta"], logit, termination_head=termination_head)
    actor = _constant_actor(k)
    loss = PWMActorLoss(
        actor,
        linear_critic(w=SHIFT["c1"], b=SHIFT["c0"]),
        wm,
        horizon=horizon,
        gamma=gamma,
        ret_rms=False,
        use_continue=use_continue,
        bootstrap_extra_gamma=extra,
        entropy_coef=0.0,  # PWM's loss: the return alone
    )
    # Constant logit ℓ: c_t = 1 − σ(ℓ) = p for every t, so Γ_t = p^t (p = 1 without continue).
    p = 1.0 - 1.0 / (1.0 + math.exp(-logit)) if termination_head and use_continue else 1.0
    ret, dret = _closed_form(
        Z0,
        k,
        horizon=horizon,
        gamma=gamma,
        alpha=SHIFT["alpha"],
        beta=SHIFT["beta"],
        c0=SHIFT["c0"],
        c1=SHIFT["c1"],
        p=p,
        boot_power=horizon + 1 if extra else horizon,
    )
    out, traj = loss(_starts(Z0))
    # ret_rms off: loss = mean_b(−J_b) / H.
    torch.testing.assert_close(out["loss_actor"], -ret.mean() / horizon, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["imagined_return"], ret.mean(), rtol=1e-5, atol=1e-6)
    out["loss_actor"].backward()
    expected_grad = torch.tensor(-dret / horizon)
    torch.testing.assert_close(actor.module.k.grad, expected_grad, rtol=1e-5, atol=1e-6)
    # The survival weights stored in the trajectory are the same Γ_t = p^t.
    expected_survival = torch.tensor([p**t for t in range(horizon)]).expand(5, horizon)
    torch.testing.assert_close(traj["survival"].squeeze(-1), expected_survival)


def test_ret_rms_divides_by_running_std_after_update(linear_critic):
    # ret_rms on: the per-start loss ℓ_b = −J_b updates a running estimate (prior: count 1e-4,
    # mean 0, var 1) with Chan's merge; then loss = mean_b(ℓ_b) / sqrt(var + 1e-5).
    # After the first batch of n values with mean m and population variance s²:
    #   N = 1e-4 + n,   var = (1e-4·1 + n·s² + m²·1e-4·n/N) / N.
    horizon, gamma, k = 3, 0.9, 0.2
    wm = ShiftWorldModel(SHIFT["alpha"], SHIFT["beta"], termination_head=False)
    loss = PWMActorLoss(
        _constant_actor(k),
        linear_critic(w=SHIFT["c1"], b=SHIFT["c0"]),
        wm,
        horizon=horizon,
        gamma=gamma,
        ret_rms=True,
        entropy_coef=0.0,  # PWM's loss: the return alone
    )
    kw = {key: SHIFT[key] for key in ("alpha", "beta", "c0", "c1")}
    ret, _ = _closed_form(Z0.double(), k, horizon=horizon, gamma=gamma, p=1.0, **kw)
    ell = -ret
    n, m, s2 = ell.numel(), ell.mean(), ell.var(correction=0)
    total = 1e-4 + n
    var = (1e-4 + n * s2 + m**2 * 1e-4 * n / total) / total
    out, _ = loss(_starts(Z0))
    torch.testing.assert_close(loss.ret_rms.count, torch.tensor(total, dtype=torch.float64))
    torch.testing.assert_close(loss.ret_rms.var, var, rtol=1e-5, atol=1e-7)
    expected = m / torch.sqrt(var + 1e-5)
    torch.testing.assert_close(out["loss_actor"].double(), expected, rtol=1e-5, atol=1e-6)
    # A second call merges a second batch (count 1e-4 + 2n).
    loss(_starts(Z0))
    torch.testing.assert_close(loss.ret_rms.count, torch.tensor(1e-4 + 2 * n, dtype=torch.float64))


def test_loss_dtype_matches_model_dtype(models):
    # The loss is a float32 scalar for float32 models, with or without ret_rms (whose float64
    # statistics must not promote it).
    for ret_rms in (False, True):
        loss = PWMActorLoss(
            models.actor(), models.critic(), models.wm(), horizon=models.horizon, ret_rms=ret_rms
        )
        out, _ = loss(models.starts())
        assert out["loss_actor"].dtype == torch.float32, f"ret_rms={ret_rms}"


def _reference_return(z0, k, *, horizon, gamma, alpha, logit, eta, c0, detach):
    """The imagined return with continue weights as a plain loop (β = 0, V = c_0): z_t = z_0 + t k,
    c_t = 1 − σ(ℓ_0 + η z_t), Γ_0 = 1, Γ_{t+1} = Γ_t c_t, J = Σ γ^t Γ_t α z_t + γ^H Γ_H c_0."""
    z, survival, ret = z0, torch.ones_like(z0), torch.zeros_like(z0)
    for t in range(horizon):
        ret = ret + gamma**t * survival * alpha * z
        cont = 1.0 - torch.sigmoid(logit + eta * z)
        survival = survival * (cont.detach() if detach else cont)
        z = z + k
    return ret + gamma**horizon * survival * c0


@pytest.mark.parametrize("detach_continue", [False, True])
def test_state_dependent_continue_and_detach_continue(linear_critic, detach_continue):
    # With ℓ_t = ℓ_0 + η z_t the continue weights depend on the actions, so their gradient
    # matters: by default it flows through c_t; detach_continue=True gives Dreamer's
    # stop-gradient weights (same value, different gradient).
    horizon, gamma = 4, 0.9
    params = {"alpha": 0.8, "logit": -1.0, "eta": 1.5}
    wm = ShiftWorldModel(params["alpha"], 0.0, params["logit"], params["eta"])
    actor = _constant_actor(0.3)
    loss = PWMActorLoss(
        actor,
        linear_critic(w=0.0, b=2.0),
        wm,
        horizon=horizon,
        gamma=gamma,
        ret_rms=False,
        detach_continue=detach_continue,
        entropy_coef=0.0,  # PWM's loss: the return alone
    )
    out, _ = loss(_starts(Z0))
    out["loss_actor"].backward()

    k = torch.tensor(0.3, requires_grad=True)
    ref = _reference_return(
        Z0, k, horizon=horizon, gamma=gamma, c0=2.0, detach=detach_continue, **params
    )
    (-ref.mean() / horizon).backward()
    torch.testing.assert_close(out["loss_actor"], -ref.mean().detach() / horizon)
    torch.testing.assert_close(actor.module.k.grad, k.grad, rtol=1e-5, atol=1e-6)

    # The two settings give different gradients (the c_t path is not negligible here).
    other = _reference_return(
        Z0, k, horizon=horizon, gamma=gamma, c0=2.0, detach=not detach_continue, **params
    )
    (other_grad,) = torch.autograd.grad(-other.mean() / horizon, k)
    assert not torch.allclose(other_grad, k.grad, rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# Gradient isolation with the real modules
# ---------------------------------------------------------------------------------------------

COMBOS = [("mlp", "gaussian"), ("flow", "gaussian"), ("mlp", "flow"), ("flow", "flow")]


@pytest.mark.parametrize(("wm_kind", "actor_kind"), COMBOS, ids=lambda x: x)
def test_gradients_reach_actor_only(models, param_grads, wm_kind, actor_kind):
    wm = models.wm(wm_kind, randomize_heads=True)
    actor, critic = models.actor(actor_kind), models.critic(detach_latent=False)
    loss = PWMActorLoss(actor, critic, wm, horizon=models.horizon)
    # Only the actor is owned (and optimised) by the loss.
    assert {id(p) for p in loss.parameters()} == {id(p) for p in actor.parameters()}
    out, _ = loss(models.starts())
    out["loss_actor"].backward()
    for name, grad in param_grads(actor).items():
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name
    for module in (wm, critic):
        assert all(g is None for g in param_grads(module).values())
        # hold_out_net restored requires_grad after the forward.
        assert all(p.requires_grad for p in module.parameters())


def _actor_grad_norm(actor: nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in actor.parameters() if p.grad is not None)


@pytest.mark.parametrize("wm_kind", ["mlp", "flow"])
def test_gradient_flows_through_reward_head(models, linear_critic, wm_kind):
    # Freshly built heads have zero last-layer weights: r̂ and c are constants. With a constant
    # critic the return does not depend on the actions at all, so the actor gradient is exactly
    # zero; giving the reward head weights makes it non-zero. The actor is therefore trained
    # *through* the world model's reward head (and only through the model: its input is
    # detached).
    wm = models.wm(wm_kind)
    actor = models.actor("gaussian")
    loss = PWMActorLoss(actor, linear_critic(w=0.0, b=1.5), wm, horizon=models.horizon)
    starts = models.starts()
    loss(starts)[0]["loss_actor"].backward()
    assert _actor_grad_norm(actor) == 0.0
    actor.zero_grad(set_to_none=True)
    with torch.no_grad():
        wm.reward_head[-1].weight.normal_(0.0, 0.5)
    loss(starts)[0]["loss_actor"].backward()
    assert _actor_grad_norm(actor) > 0.0


@pytest.mark.parametrize("wm_kind", ["mlp", "flow"])
def test_gradient_flows_through_critic_bootstrap(models, wm_kind):
    # Constant heads: the only action-dependent term is γ^H Γ_H min_k V_k(z_H). The actor gets
    # its gradient through z_H only if the critic passes d V / d z (detach_latent=False).
    for detach_latent, expect_grad in ((False, True), (True, False)):
        torch.manual_seed(0)
        wm, actor = models.wm(wm_kind), models.actor("gaussian")
        critic = models.critic(detach_latent=detach_latent)
        loss = PWMActorLoss(actor, critic, wm, horizon=models.horizon)
        loss(models.starts())[0]["loss_actor"].backward()
        assert (_actor_grad_norm(actor) > 0.0) == expect_grad, f"detach_latent={detach_latent}"


@pytest.mark.filterwarnings("ignore:No target network updater")
def test_bootstrap_params_from_target_critic(models, param_grads):
    # bootstrap_params (e.g. the value loss's target critic) supply min_k V_k(z_H): perturbing
    # the online critic then leaves the loss unchanged, and the gradient still reaches the
    # actor through the critic (not into the target parameters).
    wm, actor, critic = models.wm("mlp"), models.actor(), models.critic(detach_latent=False)
    value_loss = PWMValueLoss(critic, target_critic=True)
    target = value_loss.target_critic_network_params
    loss = PWMActorLoss(actor, critic, wm, horizon=models.horizon, bootstrap_params=target)
    online = value_loss.critic_network_params  # the online critic, said explicitly
    plain = PWMActorLoss(
        actor, critic, wm, horizon=models.horizon, ret_rms=False, bootstrap_params=online
    )
    loss.ret_rms = None  # compare raw losses
    starts = models.starts()

    def run(module: PWMActorLoss) -> torch.Tensor:
        torch.manual_seed(3)
        return module(starts)[0]["loss_actor"]

    ref_target, ref_plain = run(loss), run(plain)
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(0.5 * torch.randn_like(p))
    torch.testing.assert_close(run(loss), ref_target, rtol=0, atol=0)
    assert not torch.allclose(run(plain), ref_plain)
    actor.zero_grad(set_to_none=True)
    run(loss).backward()
    assert _actor_grad_norm(actor) > 0.0
    assert all(g is None for g in param_grads(critic).values())
    assert all(not t.requires_grad for t in target.values(True, True))


# ---------------------------------------------------------------------------------------------
# The returned trajectory, exploration, input handling
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wm_kind", ["mlp", "flow"])
def test_trajectory_detached_shaped_and_consistent(models, wm_kind):
    batch, horizon = 6, models.horizon
    wm = models.wm(wm_kind, randomize_heads=True)
    loss = PWMActorLoss(models.actor(), models.critic(), wm, horizon=horizon)
    _, traj = loss(models.starts(batch))
    assert traj.batch_size == (batch, horizon)
    for key, value in traj.items(include_nested=True, leaves_only=True):
        assert not value.requires_grad, key
    logits = traj["next", "termination_logit"]
    cont = traj["next", "continue"]
    survival = traj["survival"]
    assert cont.shape == survival.shape == (batch, horizon, 1)
    # c_t = 1 − σ(ℓ_t), Γ_0 = 1, Γ_{t+1} = Γ_t c_t.
    torch.testing.assert_close(cont, 1.0 - torch.sigmoid(logits))
    torch.testing.assert_close(survival[:, 0], torch.ones(batch, 1))
    torch.testing.assert_close(survival[:, 1:], survival[:, :-1] * cont[:, :-1])
    # The logit/reward at t are the heads on the current latent z_t (stored as "latent").
    z, a = traj["latent"], traj["action"]
    with torch.no_grad():
        torch.testing.assert_close(logits, wm.termination_logit(z, a))
        torch.testing.assert_close(traj["next", "reward"], wm.reward(z, a))
        torch.testing.assert_close(traj["latent"][:, 1:], traj["next", "latent"][:, :-1])


def test_trajectory_without_termination_head(models):
    wm = models.wm(termination_head=False)
    loss = PWMActorLoss(models.actor(), models.critic(), wm, horizon=models.horizon)
    out, traj = loss(models.starts())
    assert torch.equal(traj["next", "continue"], torch.ones(6, models.horizon, 1))
    assert torch.equal(traj["survival"], torch.ones(6, models.horizon, 1))
    assert out["survival_horizon"] == 1.0


@pytest.mark.parametrize("actor_kind", ["gaussian", "flow"])
def test_rollout_samples_under_random_exploration(models, actor_kind):
    # LossModule.forward runs under DETERMINISTIC; the actor rollout must still sample (PWM
    # trains on sampled actions): different seeds give different imagined returns, the same
    # seed the same one.
    wm = models.wm(randomize_heads=True)
    loss = PWMActorLoss(models.actor(actor_kind), models.critic(), wm, horizon=models.horizon)
    starts = models.starts()

    def imagined_return(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return loss(starts)[0]["imagined_return"]

    r1, r1_again, r2 = imagined_return(1), imagined_return(1), imagined_return(2)
    assert torch.equal(r1, r1_again)
    assert not torch.allclose(r1, r2)
    if actor_kind == "gaussian":
        # The sampled action is not the deterministic tanh(μ).
        torch.manual_seed(1)
        _, traj = loss(starts)
        assert (traj["action"] - torch.tanh(traj["loc"])).abs().max() > 1e-3


def test_does_not_mutate_input(models, snapshot, assert_unchanged):
    loss = PWMActorLoss(models.actor(), models.critic(), models.wm(), horizon=models.horizon)
    starts = models.starts()
    starts["extra"] = torch.zeros(6, 1)
    before = snapshot(starts)
    loss(starts)
    assert_unchanged(before, starts)


def test_set_keys_round_trip(models):
    # Keys the loss reads from its input or writes to its trajectory.
    critic = models.critic(value_key="v_min")
    loss = PWMActorLoss(models.actor(), critic, models.wm(), horizon=models.horizon)
    loss.set_keys(observation="obs", value="v_min", continue_prob="cont", survival="gamma_t")
    assert loss.tensor_keys.observation == "obs"
    starts = TensorDict(obs=torch.randn(6, models.obs_dim), batch_size=[6])
    out, traj = loss(starts)
    assert ("next", "cont") in traj.keys(include_nested=True)
    assert "gamma_t" in traj
    assert "survival" not in traj
    assert torch.isfinite(out["loss_actor"])


def test_set_latent_key_round_trip(models):
    # The latent key is documented as "latent key of the imagined env and the actor": with an
    # actor and a critic reading "z", set_keys(latent="z") must give a working loss.
    actor = models.actor(latent_key="z")
    critic = models.critic(latent_key="z")
    loss = PWMActorLoss(actor, critic, models.wm(), horizon=models.horizon)
    loss.set_keys(latent="z")
    out, traj = loss(models.starts())
    assert torch.isfinite(out["loss_actor"])
    assert "z" in traj


def test_unknown_key_raises(models):
    loss = PWMActorLoss(models.actor(), models.critic(), models.wm(), horizon=models.horizon)
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(obs="observation")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_observation_raises(models, param_grads, bad):
    actor = models.actor()
    loss = PWMActorLoss(actor, models.critic(), models.wm(), horizon=models.horizon)
    starts = models.starts()
    starts["observation"][2, 1] = bad
    with pytest.raises(NonFiniteBatchError, match="observation"):
        loss(starts)
    assert all(g is None for g in param_grads(actor).values())
    assert float(loss.ret_rms.count) == pytest.approx(1e-4)  # statistics untouched


def test_constructor_validation(models):
    with pytest.raises(ValueError, match="horizon"):
        PWMActorLoss(models.actor(), models.critic(), models.wm(), horizon=0)
