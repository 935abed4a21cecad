"""SHAC's actor loss: segment returns by hand, the loss's gradient against a hand-rolled return
through the same differentiable simulator, isolation of the critic, continuing episodes, and one
update through the PWM updater."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_flowmbpo.envs.locomotion import CartPoleEnv, make_env
from torchrl_flowmbpo.modules import GaussianActor, VCritic
from torchrl_flowmbpo.objectives import PWMValueLoss, SHACActorLoss, segment_returns
from torchrl_flowmbpo.trainers import PWMUpdater

N, H = 3, 5


@pytest.fixture(scope="module")
def env() -> CartPoleEnv:
    return make_env("cartpole", num_envs=N, seed=0, differentiable=True, episode_length=4)


def _nets() -> tuple[GaussianActor, VCritic]:
    actor = GaussianActor(5, 1, hidden=(16,), latent_key="observation")
    critic = VCritic(5, hidden=(16,), latent_key="observation")
    return actor, critic


def _column(values: list[float], dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).reshape(1, -1, 1)


def test_segment_returns_by_hand() -> None:
    # γ = 0.5; step 1 truncates (bootstrap V = 4), step 3 terminates (no bootstrap), the window
    # ends after step 4 (bootstrap V = 10). Segments: steps 0-1, 2-3, 4.
    #   (1 + 0.5 (2 + 0.5 · 4)) + (3 + 0.5 (−1 + 0)) + (2 + 0.5 · 10) = 3 + 2.5 + 7 = 12.5
    reward = _column([1.0, 2.0, 3.0, -1.0, 2.0])
    value = _column([100.0, 4.0, 100.0, 100.0, 10.0])  # only episode ends and the last are read
    done = _column([0, 1, 0, 1, 0], torch.bool)
    terminated = _column([0, 0, 0, 1, 0], torch.bool)
    ret = segment_returns(reward, value, done, terminated, 0.5)
    torch.testing.assert_close(ret, torch.tensor([12.5]))


def test_segment_returns_without_episode_ends_is_the_bootstrapped_return() -> None:
    reward, value = torch.randn(4, 6, 1), torch.randn(4, 6, 1)
    never = torch.zeros(4, 6, 1, dtype=torch.bool)
    gamma = 0.9
    expected = (gamma ** torch.arange(6.0)).view(1, 6, 1).mul(reward).sum((1, 2))
    expected = expected + gamma**6 * value[:, -1, 0]
    torch.testing.assert_close(segment_returns(reward, value, never, never, gamma), expected)


def test_loss_gradient_is_the_hand_rolled_return_gradient(env: CartPoleEnv) -> None:
    torch.manual_seed(0)
    actor, critic = _nets()
    gamma = 0.9
    loss = SHACActorLoss(actor, critic, env, horizon=H, gamma=gamma, ret_rms=False)
    env.set_seed(1)
    start = env.reset()
    torch.manual_seed(7)
    losses, traj = loss(start)
    grads = torch.autograd.grad(losses["loss_actor"], list(actor.parameters()))
    # The same rollout by hand (same env seed, same action noise): every world hits its time
    # limit (4 steps) inside the window, so the sum has two segments.
    env.set_seed(1)
    td = env.reset()
    torch.manual_seed(7)
    total = torch.zeros(N)
    discount = torch.ones(N)
    with set_exploration_type(ExplorationType.RANDOM):
        for t in range(H):
            out = env.step(actor(td))
            reward = out["next", "reward"].squeeze(-1)
            done = out["next", "done"].squeeze(-1)
            total = total + discount * reward
            discount = discount * gamma
            value = critic(TensorDict(observation=out["next", "observation"], batch_size=[N]))
            boot = value["state_value"].squeeze(-1)
            if done.any() or t == H - 1:
                ended = done | (t == H - 1)
                total = total + torch.where(ended, discount * boot, torch.zeros_like(boot))
                discount = torch.where(done, torch.ones_like(discount), discount)
            nxt = env.step_mdp(out)
            if done.any():
                fresh = env.reset(nxt.detach().set("_reset", done.unsqueeze(-1)))
                nxt = fresh.where(done, nxt)
            td = nxt
    assert traj["next", "done"][:, 3].all()
    expected = torch.autograd.grad(-total.mean() / H, list(actor.parameters()))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_gradients_reach_the_actor_never_the_critic(env: CartPoleEnv) -> None:
    actor, critic = _nets()
    loss = SHACActorLoss(actor, critic, env, horizon=H, ret_rms=False)
    losses, _ = loss(env.reset())
    losses["loss_actor"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
    assert all(p.grad is None for p in critic.parameters())
    assert all(p.requires_grad for p in critic.parameters())  # hold_out_net restored them


def test_episodes_go_on_across_calls(env: CartPoleEnv) -> None:
    actor, critic = _nets()
    loss = SHACActorLoss(actor, critic, env, horizon=3, ret_rms=False)
    _, first = loss(env.reset())
    start = loss.next_start
    assert not start["joint_q"].requires_grad
    _, second = loss(start)
    # Steps 0-2 of the first window, then step 3 ends the 4-step episodes.
    assert not first["next", "done"].any()
    assert second["next", "done"][:, 0].all() and not second["next", "done"][:, 1:].any()
    torch.testing.assert_close(second["observation"][:, 0], first["next", "observation"][:, -1])


def test_trajectory_feeds_the_value_loss_through_the_updater(env: CartPoleEnv) -> None:
    actor, critic = _nets()
    value_loss = PWMValueLoss(critic, target_critic=True)
    value_loss.set_keys(latent="observation")
    loss = SHACActorLoss(
        actor, critic, env, horizon=H, bootstrap_params=value_loss.target_critic_network_params
    )
    optimizers = {
        "actor": torch.optim.Adam(actor.parameters(), lr=1e-3),
        "critic": torch.optim.Adam(value_loss.parameters(), lr=1e-3),
    }
    updater = PWMUpdater(
        None, loss, value_loss, optimizers, {"actor": 1.0, "critic": 100.0}, critic_iterations=2
    )
    before = [p.detach().clone() for p in critic.parameters()]
    metrics = updater.actor_critic_step(env.reset())
    assert metrics["critic/loss_value"] > 0 and metrics["actor/survival_horizon"] == 1.0
    assert any(not torch.equal(b, p) for b, p in zip(before, critic.parameters(), strict=True))
