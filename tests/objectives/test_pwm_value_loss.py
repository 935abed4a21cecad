"""Tests for the PWM value loss: TD(λ) numbers, isolation, target critic.

The loss is specified in docs/algorithm.md, "Critic".
"""

from __future__ import annotations

import copy

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives import SoftUpdate

from torchrl_flowmbpo.objectives import NonFiniteBatchError, PWMValueLoss

# A 4-step example (B = 1, H = 4, γ = 0.9, λ = 0.8). The stand-in critic reads V(z) = z[0]
# (members V, V + 0.5, V + 1, so min_k V_k = V), hence the next latents carry V_{t+1} directly.
GAMMA, LMBDA = 0.9, 0.8
REWARD = [1.0, 2.0, -1.0, 0.5]
CONTINUE = [0.9, 0.8, 1.0, 0.5]
NEXT_VALUE = [0.3, -0.2, 1.0, 2.0]  # V_1 .. V_4
LATENT = [0.1, 0.2, -0.3, 0.4]  # z_0 .. z_3, for the member regressions
SURVIVAL = [1.0, 0.9, 0.72, 0.72]  # Γ_t = Π_{s<t} c_s
# TD(λ), G_3 = r_3 + γ c_3 V_4, G_t = r_t + γ c_t ((1 − λ) V_{t+1} + λ G_{t+1}):
#   G_3 =  0.5 + 0.9·0.5·2.0                              = 1.4
#   G_2 = −1.0 + 0.9·1.0·(0.2·1.0    + 0.8·1.4)           = 0.188
#   G_1 =  2.0 + 0.9·0.8·(0.2·(−0.2) + 0.8·0.188)         = 2.079488
#   G_0 =  1.0 + 0.9·0.9·(0.2·0.3    + 0.8·2.079488)      = 2.396108224
TD_LAMBDA = [2.396108224, 2.079488, 0.188, 1.4]
# One step, G_t = r_t + γ c_t V_{t+1}: 1 + 0.81·0.3, 2 + 0.72·(−0.2), −1 + 0.9·1.0, 0.5 + 0.45·2.
ONE_STEP = [1.243, 1.856, -0.1, 1.4]


def _hand_td_lambda(reward, cont, next_value, gamma, lmbda):
    horizon = len(reward)
    out = [0.0] * horizon
    out[-1] = reward[-1] + gamma * cont[-1] * next_value[-1]
    for t in reversed(range(horizon - 1)):
        mix = (1 - lmbda) * next_value[t] + lmbda * out[t + 1]
        out[t] = reward[t] + gamma * cont[t] * mix
    return out


def _example_trajectory() -> TensorDict:
    def col(values):
        return torch.tensor(values).reshape(1, 4, 1)

    return TensorDict(
        {
            "latent": col(LATENT),
            "survival": col(SURVIVAL),
            ("next", "latent"): col(NEXT_VALUE),
            ("next", "reward"): col(REWARD),
            ("next", "continue"): col(CONTINUE),
        },
        batch_size=[1, 4],
    )


def _random_trajectory(latent_dim: int, batch: int = 3, horizon: int = 5) -> TensorDict:
    cont = torch.rand(batch, horizon, 1) * 0.5 + 0.5
    survival = torch.cat([torch.ones(batch, 1, 1), cont[:, :-1]], 1).cumprod(1)
    return TensorDict(
        {
            "latent": torch.rand(batch, horizon, latent_dim),
            "survival": survival,
            ("next", "latent"): torch.rand(batch, horizon, latent_dim),
            ("next", "reward"): torch.randn(batch, horizon, 1),
            ("next", "continue"): cont,
        },
        batch_size=[batch, horizon],
    )


def test_hand_recursion_matches_written_numbers():
    # Guards the literals above against a typo (and the helper against an off-by-one).
    assert _hand_td_lambda(REWARD, CONTINUE, NEXT_VALUE, GAMMA, LMBDA) == pytest.approx(TD_LAMBDA)
    assert _hand_td_lambda(REWARD, CONTINUE, NEXT_VALUE, GAMMA, 0.0) == pytest.approx(ONE_STEP)


@pytest.mark.parametrize(
    ("critic_target", "expected"), [("td_lambda", TD_LAMBDA), ("one_step", ONE_STEP)]
)
@pytest.mark.parametrize("functional", [True, False], ids=["functional", "plain"])
def test_targets_match_hand_recursion(linear_critic, critic_target, expected, functional):
    loss = PWMValueLoss(
        linear_critic(),
        gamma=GAMMA,
        lmbda=LMBDA,
        critic_target=critic_target,
        functional=functional,
    )
    traj = loss.compute_value_targets(_example_trajectory())
    torch.testing.assert_close(traj["value_target"].flatten(), torch.tensor(expected))


def test_continue_equal_one_is_shac_recursion(linear_critic):
    # c ≡ 1: γ c_t = γ, SHAC's TD(λ); checked against the hand recursion with c = 1.
    traj = _example_trajectory()
    traj["next", "continue"] = torch.ones(1, 4, 1)
    loss = PWMValueLoss(linear_critic(), gamma=GAMMA, lmbda=LMBDA)
    target = loss.compute_value_targets(traj)["value_target"].flatten()
    expected = _hand_td_lambda(REWARD, [1.0] * 4, NEXT_VALUE, GAMMA, LMBDA)
    torch.testing.assert_close(target, torch.tensor(expected))


def test_episode_ends_cut_the_recursion(linear_critic):
    # A real rollout (SHAC's): step 1 truncates, step 3 terminates.
    #   G_3 =  0.5 + 0                                        = 0.5
    #   G_2 = −1.0 + 0.9·1.0·(0.2·1.0 + 0.8·0.5)              = −0.46
    #   G_1 =  2.0 + 0.9·0.8·(−0.2)   (episode end: V_2 only)  = 1.856
    #   G_0 =  1.0 + 0.9·0.9·(0.2·0.3 + 0.8·1.856)            = 2.251288
    traj = _example_trajectory()
    traj["next", "done"] = torch.tensor([False, True, False, True]).reshape(1, 4, 1)
    traj["next", "terminated"] = torch.tensor([False, False, False, True]).reshape(1, 4, 1)
    loss = PWMValueLoss(linear_critic(), gamma=GAMMA, lmbda=LMBDA)
    target = loss.compute_value_targets(traj)["value_target"].flatten()
    torch.testing.assert_close(target, torch.tensor([2.251288, 1.856, -0.46, 0.5]))
    # All-False flags (what imagination writes) change nothing.
    traj = _example_trajectory()
    traj["next", "done"] = traj["next", "terminated"] = torch.zeros(1, 4, 1, dtype=torch.bool)
    target = loss.compute_value_targets(traj)["value_target"].flatten()
    torch.testing.assert_close(target, torch.tensor(TD_LAMBDA))


def test_weighted_loss_every_member_same_target(linear_critic):
    # loss = mean_{k,t} Γ_t (V_k(z_t) − G_t)² with V_k(z) = z + (0, 0.5, 1)_k, i.e. the sum of
    # the 4 × 3 weighted squared errors over 12 = 1.41886588… (every member regresses G_t).
    loss = PWMValueLoss(linear_critic(), gamma=GAMMA, lmbda=LMBDA)
    out = loss(loss.compute_value_targets(_example_trajectory()))
    expected = (
        sum(
            SURVIVAL[t] * (LATENT[t] + offset - TD_LAMBDA[t]) ** 2
            for t in range(4)
            for offset in (0.0, 0.5, 1.0)
        )
        / 12
    )
    assert expected == pytest.approx(1.4188658817)
    torch.testing.assert_close(out["loss_value"], torch.tensor(expected))


def test_weighted_loss_from_real_critic_members(models):
    critic = models.critic()
    loss = PWMValueLoss(critic, gamma=GAMMA, lmbda=LMBDA)
    traj = loss.compute_value_targets(_random_trajectory(models.latent_dim))
    with torch.no_grad():
        members = critic(traj.select("latent"))["state_value_members"]  # [B, H, M, 1]
    target = traj["value_target"].unsqueeze(-2)
    weight = traj["survival"].unsqueeze(-2)
    expected = (weight * (members - target).pow(2)).mean()
    # The loss is the same on the [B, H] trajectory and on flattened minibatches of it.
    torch.testing.assert_close(loss(traj)["loss_value"], expected)
    torch.testing.assert_close(loss(traj.reshape(-1))["loss_value"], expected)
    # Without a survival key the weight is 1.
    del traj["survival"]
    torch.testing.assert_close(loss(traj)["loss_value"], (members - target).pow(2).mean())


def test_next_values_are_the_ensemble_minimum(models):
    # V_{t+1} = min_k V_k(z_{t+1}) (one step, c = 1, r = 0: G_t = γ V_{t+1}).
    critic = models.critic()
    traj = _random_trajectory(models.latent_dim)
    traj["next", "reward"].zero_()
    traj["next", "continue"].fill_(1.0)
    loss = PWMValueLoss(critic, gamma=GAMMA, critic_target="one_step")
    target = loss.compute_value_targets(traj)["value_target"]
    with torch.no_grad():
        members = critic(TensorDict(latent=traj["next", "latent"], batch_size=[3, 5]))
    expected = GAMMA * members["state_value_members"].min(dim=-2).values
    torch.testing.assert_close(target, expected)


# ---------------------------------------------------------------------------------------------
# Gradient isolation, target critic, SoftUpdate
# ---------------------------------------------------------------------------------------------


def _member_params(loss: PWMValueLoss):
    return list(loss.critic_network_params.values(include_nested=True, leaves_only=True))


def test_gradients_reach_every_member_never_targets(models):
    critic = models.critic()
    loss = PWMValueLoss(critic, target_critic=True)
    SoftUpdate(loss, tau=0.005)
    traj = loss.compute_value_targets(_random_trajectory(models.latent_dim))
    # The loss owns (and an optimiser sees) the critic's parameters and nothing else.
    assert {id(p) for p in loss.parameters()} == {id(p) for p in critic.parameters()}
    loss(traj.reshape(-1))["loss_value"].backward()
    for param in _member_params(loss):
        assert param.grad is not None
        # The ensemble stacks its 3 members on dim 0: each member gets its own gradient.
        assert param.grad.shape[0] == 3
        for member in range(3):
            assert param.grad[member].abs().sum() > 0
    for target in loss.target_critic_network_params.values(True, True):
        assert not target.requires_grad and target.grad is None


@pytest.mark.filterwarnings("ignore:No target network updater")
def test_soft_update_after_forward_moves_targets_by_tau(models):
    # SoftUpdate built after a forward (target parameters left attached to the forward's graph by
    # `to_module` would raise "the target parameter is part of a graph"), then step():
    # θ' ← θ' + τ (θ − θ').
    loss = PWMValueLoss(models.critic(), target_critic=True)
    traj = loss.compute_value_targets(_random_trajectory(models.latent_dim))
    loss(traj)["loss_value"].backward()
    updater = SoftUpdate(loss, tau=0.005)
    online = loss.critic_network_params
    target = loss.target_critic_network_params
    # init_ copied the online parameters into the targets.
    for key, value in online.items(True, True):
        torch.testing.assert_close(target.get(key), value.detach(), rtol=0, atol=0)
    opt = torch.optim.Adam(loss.parameters(), lr=1e-2)
    opt.step()
    before = target.detach().clone()
    updater.step()
    for key, value in online.items(True, True):
        expected = before.get(key) + 0.005 * (value.detach() - before.get(key))
        torch.testing.assert_close(target.get(key), expected)
        assert not torch.equal(target.get(key), before.get(key))


@pytest.mark.parametrize(
    ("target_critic", "functional"), [(True, True), (False, True), (False, False)]
)
def test_targets_use_target_params(models, target_critic, functional):
    # With a target critic the bootstrap values come from θ': perturbing the online θ leaves the
    # targets unchanged. Without it they come from θ (swapped in or not) and do change.
    loss = PWMValueLoss(models.critic(), target_critic=target_critic, functional=functional)
    if target_critic:
        SoftUpdate(loss, tau=0.005)
    traj = _random_trajectory(models.latent_dim)
    before = loss.compute_value_targets(traj.clone())["value_target"]
    with torch.no_grad():
        for p in loss.parameters():
            p.add_(0.3 * torch.randn_like(p))
    after = loss.compute_value_targets(traj.clone())["value_target"]
    assert torch.equal(before, after) == target_critic


def test_value_targets_frozen_across_updates(models):
    # compute_value_targets is called once per imagined trajectory; the critic's minibatch
    # steps then all regress those same G_t, even though the critic (hence fresh targets)
    # changes after each step.
    critic = models.critic()
    loss = PWMValueLoss(critic)
    traj = loss.compute_value_targets(_random_trajectory(models.latent_dim))
    frozen = traj["value_target"].clone()
    opt = torch.optim.Adam(loss.parameters(), lr=1e-2)
    loss(traj)["loss_value"].backward()
    opt.step()
    out = loss(traj)
    torch.testing.assert_close(traj["value_target"], frozen, rtol=0, atol=0)
    with torch.no_grad():
        members = critic(traj.select("latent"))["state_value_members"]
    weight = traj["survival"].unsqueeze(-2)
    expected = (weight * (members - frozen.unsqueeze(-2)).pow(2)).mean()
    torch.testing.assert_close(out["loss_value"], expected)
    fresh = loss.compute_value_targets(traj.clone())["value_target"]
    assert not torch.allclose(fresh, frozen)


# ---------------------------------------------------------------------------------------------
# Input handling
# ---------------------------------------------------------------------------------------------


def test_forward_computes_missing_targets_without_mutating_input(
    models, snapshot, assert_unchanged
):
    loss = PWMValueLoss(models.critic())
    traj = _random_trajectory(models.latent_dim)
    before = snapshot(traj)
    out = loss(traj)
    assert_unchanged(before, traj)
    expected = loss(loss.compute_value_targets(traj.clone()))["loss_value"]
    torch.testing.assert_close(out["loss_value"], expected)


def test_set_keys_round_trip(linear_critic):
    loss = PWMValueLoss(linear_critic(), gamma=GAMMA, lmbda=LMBDA)
    loss.set_keys(value_target="G", survival="weight", continue_prob="cont")
    assert loss.tensor_keys.value_target == "G"
    traj = _example_trajectory()
    traj["weight"] = traj.pop("survival")
    traj["next", "cont"] = traj.pop(("next", "continue"))
    traj = loss.compute_value_targets(traj)
    assert "value_target" not in traj
    torch.testing.assert_close(traj["G"].flatten(), torch.tensor(TD_LAMBDA))
    torch.testing.assert_close(loss(traj)["loss_value"], torch.tensor(1.4188658817))


def test_unknown_key_raises(linear_critic):
    loss = PWMValueLoss(linear_critic())
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(target="G")


@pytest.mark.parametrize("key", ["latent", "value_target"])
def test_non_finite_batch_raises(models, param_grads, key):
    critic = models.critic()
    loss = PWMValueLoss(critic)
    traj = loss.compute_value_targets(_random_trajectory(models.latent_dim))
    traj[key][0, 1, 0] = float("nan")
    with pytest.raises(NonFiniteBatchError, match=key):
        loss(traj)
    assert all(g is None for g in param_grads(critic).values())


def test_unknown_critic_target_raises(models):
    with pytest.raises(ValueError, match="critic_target"):
        PWMValueLoss(models.critic(), critic_target="td0")


def test_plain_critic_call_gives_the_functional_loss_and_gradients(models):
    # functional=False calls the critic as a submodule instead of swapping its parameters in:
    # the same targets, loss and gradients, on one set of parameters.
    critic = models.critic()
    plain_critic = copy.deepcopy(critic)
    functional = PWMValueLoss(critic)
    plain = PWMValueLoss(plain_critic, functional=False)
    assert functional.functional and not plain.functional
    assert plain.critic_network_params is None and plain.bootstrap_params is None
    assert {id(p) for p in plain.parameters()} == {id(p) for p in plain_critic.parameters()}
    assert "critic_network.module.ensemble.params.0.weight" in plain.state_dict()
    traj = _random_trajectory(models.latent_dim)
    expected = functional.compute_value_targets(traj.clone())
    got = plain.compute_value_targets(traj.clone())
    assert torch.equal(got["value_target"], expected["value_target"])
    expected_loss = functional(expected.reshape(-1))["loss_value"]
    got_loss = plain(got.reshape(-1))["loss_value"]
    assert torch.equal(got_loss, expected_loss)
    expected_loss.backward()
    got_loss.backward()
    for want, have in zip(critic.parameters(), plain_critic.parameters(), strict=True):
        assert want.grad.abs().sum() > 0
        assert torch.equal(have.grad, want.grad)


def test_target_critic_needs_functional(models):
    with pytest.raises(ValueError, match="target_critic=True needs functional=True"):
        PWMValueLoss(models.critic(), target_critic=True, functional=False)
