"""Episodes: standing, falling, seeding, partial resets, truncation and divergence handling."""

from __future__ import annotations

import pytest
import torch

from torchrl_flowmbpo.envs.locomotion import LocomotionEnv, make_env


def _zero_action_rollout(env: LocomotionEnv, steps: int):
    def policy(td):
        return td.set("action", torch.zeros(env.action_spec.shape))

    return env.rollout(steps, policy, break_when_any_done=False)


def test_standing_ant_earns_about_one_per_step(ant_env: LocomotionEnv) -> None:
    ant_env.set_seed(0)
    ant_env.reset()
    td = _zero_action_rollout(ant_env, 240)
    reward = td["next", "reward"][:, 60:]  # after the initial drop onto the legs
    assert not td["next", "done"].any()
    assert 1.0 < reward.mean().item() < 1.5
    # Settled on its legs (torso 0.25 m sphere touches the ground at ~0.26).
    assert (td["next", "observation"][:, -1, 0] > 0.4).all()


def test_zero_torque_humanoid_falls_and_terminates(humanoid_env: LocomotionEnv) -> None:
    humanoid_env.set_seed(0)
    humanoid_env.reset()
    td = _zero_action_rollout(humanoid_env, 120)
    terminated = td["next", "terminated"].squeeze(-1)
    assert terminated.any(-1).all()
    first = terminated.float().argmax(-1)
    # Falls in about 0.5-1.1 s (30-65 steps at 60 Hz), never in the first 10 steps.
    assert (first > 10).all() and (first < 100).all()
    height = td["next", "observation"][..., 0]
    rows = torch.arange(len(first))
    assert (height[rows, first] < 0.74).all()
    assert (height[rows, first - 1] >= 0.74).all()
    assert not td["next", "truncated"].any()


def _trajectory(env: LocomotionEnv, seed: int, steps: int = 30) -> torch.Tensor:
    env.set_seed(seed)
    td = env.reset()
    gen = torch.Generator().manual_seed(7)
    actions = 2 * torch.rand(steps, *env.action_spec.shape, generator=gen) - 1
    obs = [td["observation"]]
    for t in range(steps):
        _, td = env.step_and_maybe_reset(td.set("action", actions[t]))
        obs.append(td["observation"])
    return torch.stack(obs)


def test_same_seed_same_trajectory(ant_env: LocomotionEnv) -> None:
    other = make_env("ant", num_envs=ant_env.num_envs, seed=123)
    a = _trajectory(ant_env, seed=5)
    b = _trajectory(other, seed=5)
    assert torch.equal(a, b)
    c = _trajectory(other, seed=6)
    assert not torch.allclose(a[0], c[0])
    assert (a[-1] - c[-1]).abs().max() > 1e-2


def test_partial_reset_changes_only_reset_rows(task_env: LocomotionEnv) -> None:
    td = task_env.rollout(10, break_when_any_done=False)[:, -1]["next"]
    q_before = task_env.sim.joint_q.clone()
    obs_before = td["observation"].clone()  # reset(td) writes into td
    mask = torch.zeros(task_env.num_envs, 1, dtype=torch.bool)
    mask[[0, 2]] = True
    td.set("_reset", mask)
    out = task_env.reset(td)
    rows = mask.squeeze(-1)
    assert torch.equal(out["observation"][~rows], obs_before[~rows])
    assert torch.equal(task_env.sim.joint_q[~rows], q_before[~rows])
    assert (out["observation"][rows] != obs_before[rows]).any(-1).all()
    assert (task_env._step_count[rows] == 0).all() and (task_env._step_count[~rows] == 10).all()
    # The reset rows start again near the initial pose, previous action zeroed.
    j = task_env.num_joints
    start = torch.tensor(task_env.start_height)
    assert ((out["observation"][rows, 0] - start).abs() <= 0.1 + 1e-6).all()
    assert (out["observation"][rows, 13 + 2 * j :] == 0).all()


def test_truncation_at_episode_length(
    ant_env: LocomotionEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ant_env, "episode_length", 5)
    ant_env.set_seed(0)
    ant_env.reset()
    td = _zero_action_rollout(ant_env, 12)
    truncated = td["next", "truncated"].squeeze(-1)
    assert truncated[:, [4, 9]].all() and truncated.sum() == 2 * ant_env.num_envs
    assert torch.equal(td["next", "done"], td["next", "truncated"])
    assert not td["next", "terminated"].any()


@pytest.mark.parametrize("bad", [float("nan"), 1e7])
def test_diverged_world_terminates_and_resets_alone(task_env: LocomotionEnv, bad: float) -> None:
    td = task_env.rollout(5, break_when_any_done=False)[:, -1]["next"]
    actions = torch.zeros(task_env.action_spec.shape)
    task_env.sim.joint_q[1, -1] = bad
    out = task_env.step(td.set("action", actions))["next"]
    terminated = out["terminated"].squeeze(-1)
    assert terminated[1] and not terminated[[0, *range(2, task_env.num_envs)]].any()
    assert out["done"][1]
    for key in ("observation", "reward"):
        assert torch.isfinite(out[key]).all()
    assert out["observation"][1].abs().max() < 1e3
    # The world is back in its initial pose: finite, and stepping it stays finite.
    assert torch.isfinite(task_env.sim.joint_q).all()
    torch.testing.assert_close(task_env.sim.joint_q[1], task_env.sim.default_q[1])
    _, nxt = task_env.step_and_maybe_reset(out.set("action", actions))
    after = task_env.step(nxt.set("action", actions))["next"]
    assert torch.isfinite(after["observation"]).all()
    assert not after["terminated"][1]


def test_random_actions_stay_finite(task_env: LocomotionEnv) -> None:
    td = task_env.rollout(120, break_when_any_done=False)
    assert torch.isfinite(td["next", "observation"]).all()
    assert torch.isfinite(td["next", "reward"]).all()
    assert (task_env.sim.joint_q.abs() < 1e3).all()


def test_captured_graph_matches_eager_launches(ant_env: LocomotionEnv) -> None:
    eager = make_env("ant", num_envs=ant_env.num_envs, seed=0, capture=False)
    assert eager.sim._graph is None and ant_env.sim._graph is not None
    assert torch.equal(_trajectory(ant_env, seed=2, steps=15), _trajectory(eager, seed=2, steps=15))


def test_odd_sim_substeps_rejected() -> None:
    with pytest.raises(ValueError, match="even"):
        make_env("ant", num_envs=2, sim_substeps=3)
