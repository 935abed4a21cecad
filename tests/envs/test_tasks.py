"""Specs, observations and rewards of the locomotion tasks."""

from __future__ import annotations

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_flowmbpo.envs.locomotion import CartPoleEnv, LocomotionEnv

DIMS = {"AntEnv": (37, 8), "AnymalEnv": (49, 12), "HumanoidEnv": (76, 21)}


def test_check_env_specs(task_env: LocomotionEnv) -> None:
    check_env_specs(task_env, seed=1)


def test_dims_and_dtypes(task_env: LocomotionEnv) -> None:
    obs_dim, act_dim = DIMS[type(task_env).__name__]
    n = task_env.num_envs
    td = task_env.rollout(3, break_when_any_done=False)
    assert td.batch_size == (n, 3)
    assert td["observation"].shape == (n, 3, obs_dim)
    assert td["action"].shape == (n, 3, act_dim)
    assert td["next", "reward"].shape == (n, 3, 1)
    assert td["observation"].dtype == td["next", "reward"].dtype == torch.float32
    for key in ("done", "terminated", "truncated"):
        assert td["next", key].shape == (n, 3, 1)
        assert td["next", key].dtype == torch.bool
    spec = task_env.action_spec
    assert spec.space.low.min().item() == -1.0 and spec.space.high.max().item() == 1.0


def test_observation_matches_simulator_state(task_env: LocomotionEnv) -> None:
    td = task_env.reset()
    action = torch.full(task_env.action_spec.shape, 3.0)  # clipped to 1 in the obs
    obs = task_env.step(td.set("action", action))["next", "observation"]
    q, qd, j = task_env.sim.joint_q, task_env.sim.joint_qd, task_env.num_joints
    torch.testing.assert_close(obs[:, 0], q[:, 2])
    torch.testing.assert_close(obs[:, 1:5], q[:, 3:7])
    torch.testing.assert_close(obs[:, 5:11], qd[:, :6])
    torch.testing.assert_close(obs[:, 11 : 11 + j], q[:, 7:])
    torch.testing.assert_close(obs[:, 11 + j : 11 + 2 * j], 0.1 * qd[:, 6:])
    x, y, z, w = q[:, 3:7].unbind(-1)
    # Third and first columns of the rotation matrix of an xyzw quaternion.
    up_z = 1 - 2 * (x * x + y * y)
    fwd = torch.stack((1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)), -1)
    target = torch.stack((10000.0 - q[:, 0], -q[:, 1], torch.zeros_like(q[:, 0])), -1)
    heading = (fwd * target / target.norm(dim=-1, keepdim=True)).sum(-1)
    torch.testing.assert_close(obs[:, 11 + 2 * j], up_z)
    torch.testing.assert_close(obs[:, 12 + 2 * j], heading)
    assert (obs[:, 13 + 2 * j :] == 1.0).all()


def test_forward_velocity_index_reads_the_torso_forward_velocity(task_env: LocomotionEnv) -> None:
    # base.py's layout, shared by every task: [5:8] torso linear velocity (world frame), [5] = v_x.
    assert task_env.forward_velocity_index == 5
    gen = torch.Generator().manual_seed(1)
    td = task_env.reset()
    for _ in range(4):
        td["action"] = 2 * torch.rand(task_env.action_spec.shape, generator=gen) - 1
        obs = task_env.step(td)["next", "observation"]
        v_x = task_env.sim.joint_qd[:, 0]  # root COM linear velocity, world frame, x
        torch.testing.assert_close(obs[:, task_env.forward_velocity_index], v_x)
        td["observation"] = obs
    assert v_x.abs().max() > 0.01


def test_cartpole_has_no_forward_velocity() -> None:
    assert CartPoleEnv.forward_velocity_index is None


def test_initial_pose_is_upright(task_env: LocomotionEnv) -> None:
    task_env.reset_noise = 0.0
    try:
        obs = task_env.reset()["observation"]
    finally:
        task_env.reset_noise = 1.0
    j = task_env.num_joints
    assert torch.allclose(obs[:, 0], torch.tensor(task_env.start_height))
    assert torch.allclose(obs[:, 1:5], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert torch.allclose(obs[:, 11 + 2 * j : 13 + 2 * j], torch.ones(2))
    assert (obs[:, 13 + 2 * j :] == 0).all()


def _expected_reward(name: str, obs: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The dflex rewards, written out from the observation layouts of docs/tasks.md."""
    a2 = a.pow(2).sum(-1)
    if name == "AntEnv":
        return obs[:, 5] + 0.1 * obs[:, 27] + obs[:, 28] + (obs[:, 0] - 0.27)
    if name == "AnymalEnv":
        return obs[:, 5] + 0.1 * obs[:, 35] + obs[:, 36] + (obs[:, 0] - 0.25) - 0.005 * a2
    x = torch.clamp(obs[:, 0] - 0.84, -1.0, 0.1)
    h = torch.where(x < 0, -200.0 * x**2, 10.0 * x)
    return obs[:, 5] + 0.1 * obs[:, 53] + obs[:, 54] + h - 0.002 * a2


def test_reward_from_pre_step_observation(task_env: LocomotionEnv) -> None:
    gen = torch.Generator().manual_seed(0)
    td = task_env.reset()
    for _ in range(12):
        # Actions beyond [-1, 1] check that the reward uses the clipped action.
        action = 1.5 * (2 * torch.rand(task_env.action_spec.shape, generator=gen) - 1)
        td["action"] = action
        out = task_env.step(td)
        expected = _expected_reward(type(task_env).__name__, td["observation"], action.clamp(-1, 1))
        torch.testing.assert_close(out["next", "reward"].squeeze(-1), expected)
        td = task_env.step_mdp(out)
    assert expected.abs().max() > 0.1


def test_humanoid_gears_match_file(humanoid_env: LocomotionEnv, ant_env: LocomotionEnv) -> None:
    for env in (humanoid_env, ant_env):
        n_act = env.num_joints
        trnid = env.sim.model.mujoco.actuator_trnid.numpy()[:n_act, 0]
        gear = env.sim.model.mujoco.actuator_gear.numpy()[:n_act, 0]
        by_dof = dict(zip(trnid.tolist(), gear.tolist(), strict=True))
        assert [by_dof[6 + i] for i in range(n_act)] == pytest.approx(list(env.gear))


def test_set_state_from_observation_replays_the_trajectory(task_env: LocomotionEnv) -> None:
    """Restarting from a recorded observation and replaying the recorded actions gives back the
    recorded observations and rewards: the observation is the whole state but x, y."""
    n, joints = task_env.num_envs, task_env.num_joints
    generator = torch.Generator().manual_seed(0)

    def random_action() -> torch.Tensor:
        return 2 * torch.rand(n, joints, generator=generator) - 1

    td = task_env.reset()
    for _ in range(20):
        td = task_env.step_mdp(task_env.step(td.set("action", random_action())))
    start = td.get("observation").clone()
    actions = [random_action() for _ in range(5)]
    recorded = []
    for action in actions:
        out = task_env.step(td.set("action", action))
        recorded.append(out.get("next").select("observation", "reward").clone())
        td = task_env.step_mdp(out)
    assert (recorded[-1]["observation"][:, 0] - start[:, 0]).abs().max() > 1e-3  # it moved

    td = task_env.set_state_from_observation(start)
    assert torch.allclose(td.get("observation"), start, atol=1e-4)
    assert not td.get("done").any()
    for action, expected in zip(actions, recorded, strict=True):
        out = task_env.step(td.set("action", action))
        assert torch.allclose(out.get(("next", "observation")), expected["observation"], atol=1e-3)
        assert torch.allclose(out.get(("next", "reward")), expected["reward"], atol=1e-3)
        td = task_env.step_mdp(out)


def test_set_state_from_observation_checks_the_shape(ant_env: LocomotionEnv) -> None:
    with pytest.raises(ValueError, match=r"shape \(8, 37\), got \(8, 36\)"):
        ant_env.set_state_from_observation(torch.zeros(8, 36))
