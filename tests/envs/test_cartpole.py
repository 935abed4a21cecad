"""Cartpole swing-up: specs, observation, reward, start, swing-up, seeding, resets, truncation,
restarts from an observation."""

from __future__ import annotations

import math

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_flowmbpo.diagnostics import make_real_return
from torchrl_flowmbpo.envs.locomotion import CartPoleEnv, make_env


@pytest.fixture
def env(cartpole_env: CartPoleEnv) -> CartPoleEnv:
    cartpole_env.set_seed(0)
    cartpole_env.reset()
    return cartpole_env


def _rollout(env: CartPoleEnv, policy, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Observations ``[steps + 1, N, 5]`` and rewards ``[steps, N]`` from a fresh reset."""
    td = env.reset()
    obs, rewards = [td["observation"]], []
    for _ in range(steps):
        td["action"] = policy(td["observation"])
        out, td = env.step_and_maybe_reset(td)
        obs.append(td["observation"])
        rewards.append(out["next", "reward"].squeeze(-1))
    return torch.stack(obs), torch.stack(rewards)


def test_check_env_specs(env: CartPoleEnv) -> None:
    check_env_specs(env, seed=1)


def test_dims_and_dtypes(env: CartPoleEnv) -> None:
    n = env.num_envs
    td = env.rollout(3, break_when_any_done=False)
    assert td["observation"].shape == (n, 3, 5) and td["action"].shape == (n, 3, 1)
    assert td["next", "reward"].shape == (n, 3, 1)
    assert td["observation"].dtype == td["next", "reward"].dtype == torch.float32
    for key in ("done", "terminated", "truncated"):
        assert td["next", key].shape == (n, 3, 1) and td["next", key].dtype == torch.bool
    assert env.sim.nq == env.sim.nqd == 2  # fixed base: cart slide and pole hinge only


def test_observation_matches_simulator_state(env: CartPoleEnv) -> None:
    td = env.reset()
    obs = env.step(td.set("action", torch.full((env.num_envs, 1), 0.5)))["next", "observation"]
    q, qd = env.sim.joint_q, env.sim.joint_qd
    expected = torch.stack((q[:, 0], q[:, 1].sin(), q[:, 1].cos(), qd[:, 0], qd[:, 1]), -1)
    torch.testing.assert_close(obs, expected)


def test_reward_for_random_states(env: CartPoleEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env, "action_penalty", 0.3)
    gen = torch.Generator().manual_seed(0)
    n = env.num_envs
    td = env.reset()
    zero = torch.zeros(n, 1)
    for _ in range(5):
        # Random states, with unwrapped pole angles up to ±3π to check the wrap.
        q = torch.rand(n, 2, generator=gen) * torch.tensor([4.0, 6 * math.pi]) - torch.tensor(
            [2.0, 3 * math.pi]
        )
        qd = 10 * torch.rand(n, 2, generator=gen) - 5
        env.sim.reset_worlds(torch.ones(n, dtype=torch.bool), q, qd)
        td = env.step_mdp(env.step(td.set("action", zero)))  # observe the new state
        # Copies: the simulator's tensors are live views of its state.
        (x, theta), (x_dot, theta_dot) = env.sim.joint_q.clone().T, env.sim.joint_qd.clone().T
        theta = torch.remainder(theta + math.pi, 2 * math.pi) - math.pi
        # Actions beyond [-1, 1] check that the reward uses the clipped action.
        action = 3 * torch.rand(n, 1, generator=gen) - 1.5
        out = env.step(td.set("action", action))
        a = action.clamp(-1, 1).squeeze(-1)
        expected = -(theta**2 + 0.1 * theta_dot**2 + 0.05 * x**2 + 0.1 * x_dot**2) - 0.3 * a**2
        torch.testing.assert_close(out["next", "reward"].squeeze(-1), expected)
        td = env.step_mdp(out)
    assert expected.abs().max() > 1.0


def test_start_hanging_down(env: CartPoleEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    obs = env.reset()["observation"]
    hanging = torch.tensor([0.0, 0.0, -1.0, 0.0, 0.0])
    # Noise: ±0.1 on x and θ, ±0.25 on the velocities.
    assert ((obs - hanging).abs() <= torch.tensor([0.1, 0.1, 0.005, 0.25, 0.25])).all()
    assert (obs[:, [0, 1, 3, 4]].std(0) > 0.01).all()
    monkeypatch.setattr(env, "reset_noise", 0.0)
    torch.testing.assert_close(env.reset()["observation"], hanging.expand(env.num_envs, 5))


def test_bounded_reward_for_random_states(
    env: CartPoleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(env, "reward_type", "bounded")
    gen = torch.Generator().manual_seed(1)
    n = env.num_envs
    td = env.reset()
    q = torch.rand(n, 2, generator=gen) * torch.tensor([6.0, 2 * math.pi]) - torch.tensor(
        [3.0, math.pi]
    )
    qd = 16 * torch.rand(n, 2, generator=gen) - 8
    env.sim.reset_worlds(torch.ones(n, dtype=torch.bool), q, qd)
    td = env.step_mdp(env.step(td.set("action", torch.zeros(n, 1))))
    (x, theta), (_, theta_dot) = env.sim.joint_q.clone().T, env.sim.joint_qd.clone().T
    action = 3 * torch.rand(n, 1, generator=gen) - 1.5
    reward = env.step(td.set("action", action))["next", "reward"].squeeze(-1)
    # DMC's smooth swing-up reward, written out: gaussian tolerances are 0.1 at the margin.
    a = action.clamp(-1, 1).squeeze(-1)
    near = lambda v, m: 10.0 ** (-((v / m) ** 2))  # noqa: E731
    expected = (
        (1 + torch.cos(theta))
        / 2
        * (1 + near(x, 2.0))
        / 2
        * (4 + 1 - a**2)
        / 5
        * (1 + near(theta_dot, 5.0))
        / 2
    )
    torch.testing.assert_close(reward, expected)
    assert ((reward >= 0) & (reward <= 1)).all() and reward.std() > 0.05


def test_bounded_reward_extremes(env: CartPoleEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env, "reward_type", "bounded")
    monkeypatch.setattr(env, "reset_noise", 0.0)
    zero = torch.zeros(env.num_envs, 1)
    # Hanging still: no reward; upright, centred, at rest, no force: the maximum, 1.
    assert env.step(env.reset().set("action", zero))["next", "reward"].abs().max() < 1e-6
    monkeypatch.setattr(env, "start_angle", 0.0)
    reward = env.step(env.reset().set("action", zero))["next", "reward"]
    torch.testing.assert_close(reward, torch.ones_like(reward))


def test_unknown_reward_type_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"reward_type='dmc' is not one of \['bounded', 'shac'\]"):
        CartPoleEnv(1, reward_type="dmc")


def test_start_angle_upright(env: CartPoleEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    # start_angle=0 turns the task into balancing: the pole starts upright (cos θ = 1).
    monkeypatch.setattr(env, "start_angle", 0.0)
    monkeypatch.setattr(env, "reset_noise", 0.0)
    upright = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    torch.testing.assert_close(env.reset()["observation"], upright.expand(env.num_envs, 5))
    obs, rewards = _rollout(env, lambda o: torch.zeros(o.shape[0], 1), 5)
    # Balanced exactly, it stays up: zero cost.
    assert (obs[..., 2] > 0.999).all() and (rewards > -1e-3).all()


def test_zero_action_pole_stays_down(env: CartPoleEnv) -> None:
    obs, rewards = _rollout(env, lambda o: torch.zeros(o.shape[0], 1), 240)
    # A frictionless pendulum swinging within ±0.1 rad (plus ±0.25 rad/s) of hanging down.
    assert (obs[..., 2] < -0.98).all()
    # The cart drifts at its initial velocity (±0.25 m/s for 4 s).
    assert (obs[..., 0].abs() < 1.2).all()
    # -(θ² + ...) with |θ| = π - (up to ~0.13): measured mean -9.58 per step (-2,300 per episode).
    assert (rewards <= -8.9).all() and (rewards >= -(math.pi**2) - 0.1).all()
    assert -9.8 < rewards.mean().item() < -9.4


def _energy_pumping(obs: torch.Tensor) -> torch.Tensor:
    """Bang-bang swing-up: push along sign(θ̇ cos θ) until the pole has the upright energy."""
    x, _, cos, x_dot, theta_dot = obs.unbind(-1)
    # Pole energy relative to upright at rest: hinge inertia 0.155 kg m², m g l = 1.153 N m.
    energy = 0.5 * 0.155 * theta_dot**2 + 1.153 * (cos - 1)
    push = 3.0 * (-energy) * torch.sign(theta_dot * cos)
    return (push - 0.2 * x - 0.2 * x_dot).clamp(-1, 1).unsqueeze(-1)


def test_energy_pumping_swings_the_pole_up(env: CartPoleEnv) -> None:
    obs, rewards = _rollout(env, _energy_pumping, 240)
    up = obs[..., 2] > 0.9
    assert up.any(0).all()
    first = up.float().argmax(0)
    # Measured: up after 60-62 steps (1 s) at the default 30 N, with |x| <= 3.6, so the pole
    # comes up without help from the rail ends at ±4 m.
    assert (first < 120).all()
    assert (obs[..., 0].abs() < 3.9).all()
    # Far better than hanging still (about -2,300 per episode).
    assert rewards.sum(0).mean() > -1500


def test_same_seed_same_trajectory(env: CartPoleEnv) -> None:
    other = make_env("cartpole", num_envs=env.num_envs, seed=123)
    gen = torch.Generator().manual_seed(7)
    actions = 2 * torch.rand(40, env.num_envs, 1, generator=gen) - 1
    runs = []
    for e, seed in ((env, 5), (other, 5), (other, 6)):
        e.set_seed(seed)
        steps = iter(actions)
        runs.append(_rollout(e, lambda o, steps=steps: next(steps), 40)[0])
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0][0], runs[2][0])


def test_partial_reset_changes_only_reset_rows(env: CartPoleEnv) -> None:
    td = env.rollout(10, break_when_any_done=False)[:, -1]["next"]
    q_before = env.sim.joint_q.clone()
    obs_before = td["observation"].clone()
    mask = torch.zeros(env.num_envs, 1, dtype=torch.bool)
    mask[[0, 2]] = True
    out = env.reset(td.set("_reset", mask))
    rows = mask.squeeze(-1)
    assert torch.equal(out["observation"][~rows], obs_before[~rows])
    assert torch.equal(env.sim.joint_q[~rows], q_before[~rows])
    assert (out["observation"][rows, 2] < -0.99).all()  # hanging down again
    assert (env._step_count[rows] == 0).all() and (env._step_count[~rows] == 10).all()


@pytest.mark.parametrize("bad", [float("nan"), 1e7])
def test_diverged_world_terminates_and_resets_alone(env: CartPoleEnv, bad: float) -> None:
    td = env.rollout(5, break_when_any_done=False)[:, -1]["next"]
    actions = torch.zeros(env.num_envs, 1)
    env.sim.joint_qd[1, 1] = bad
    out = env.step(td.set("action", actions))["next"]
    terminated = out["terminated"].squeeze(-1)
    assert terminated[1] and terminated.sum() == 1 and out["done"][1]
    assert torch.isfinite(out["observation"]).all() and torch.isfinite(out["reward"]).all()
    assert torch.isfinite(env.sim.joint_q).all() and torch.isfinite(env.sim.joint_qd).all()
    torch.testing.assert_close(env.sim.joint_q[1], env.sim.default_q[1])
    _, nxt = env.step_and_maybe_reset(out.set("action", actions))
    after = env.step(nxt.set("action", actions))["next"]
    assert torch.isfinite(after["observation"]).all() and not after["terminated"].any()


def test_truncation_at_240_steps(env: CartPoleEnv) -> None:
    assert env.episode_length == 240 and env.dt == pytest.approx(1 / 60)
    td = env.rollout(250, lambda obs: torch.ones(obs.shape[0], 1), break_when_any_done=False)
    truncated = td["next", "truncated"].squeeze(-1)
    assert truncated[:, 239].all() and truncated.sum() == env.num_envs
    assert torch.equal(td["next", "done"], td["next", "truncated"])
    assert not td["next", "terminated"].any()
    # Full throttle for 4 s runs into the rail end: the URDF limit stops the cart.
    assert td["next", "observation"][..., 0].abs().max() < 5.5


def test_set_state_from_observation_round_trip(env: CartPoleEnv) -> None:
    # Swinging states with unwrapped angles (|θ| up to 3π): only sin and cos come back.
    gen = torch.Generator().manual_seed(3)
    n = env.num_envs
    q = torch.rand(n, 2, generator=gen) * torch.tensor([4.0, 6 * math.pi]) - torch.tensor(
        [2.0, 3 * math.pi]
    )
    qd = 10 * torch.rand(n, 2, generator=gen) - 5
    env.sim.reset_worlds(torch.ones(n, dtype=torch.bool), q, qd)
    td = env.step_mdp(env.step(env.reset().set("action", torch.zeros(n, 1))))
    obs = td["observation"].clone()
    action = 2 * torch.rand(n, 1, generator=gen) - 1
    expected = env.step(td.set("action", action))["next"]
    out = env.set_state_from_observation(obs)
    torch.testing.assert_close(out["observation"], obs, atol=1e-5, rtol=0)
    assert not out["done"].any() and (env._step_count == 0).all()
    # The same next step as from the original state: observation and reward.
    again = env.step(out.set("action", action))["next"]
    torch.testing.assert_close(again["observation"], expected["observation"], atol=1e-5, rtol=0)
    torch.testing.assert_close(again["reward"], expected["reward"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="shape"):
        env.set_state_from_observation(obs[:2])


def test_real_return_from_an_upright_state_matches_stepping(
    env: CartPoleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(env, "start_angle", 0.0)  # upright, with the reset noise
    gamma, steps = 0.95, 20
    obs, rewards = _rollout(env, lambda o: torch.zeros(o.shape[0], 1), steps)
    expected = (gamma ** torch.arange(steps).unsqueeze(-1) * rewards.double()).sum(0)
    real_return = make_real_return(env, gamma=gamma)
    got = real_return(obs[0], torch.zeros(env.num_envs, steps, 1))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-6)
    assert (obs[..., 2] > 0.5).all()  # still near upright: the states are not trivial
