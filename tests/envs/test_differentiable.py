"""The differentiable cartpole: dynamics against the MuJoCo task, gradients against finite
differences, specs, and a rollout that keeps its graph through partial resets."""

from __future__ import annotations

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from torchrl_flowmbpo.diagnostics import make_exact_real_gradient, make_real_return
from torchrl_flowmbpo.envs import differentiable_rollout
from torchrl_flowmbpo.envs.locomotion import CartPoleEnv, make_env
from torchrl_flowmbpo.envs.locomotion.differentiable import DifferentiableSimulator

N = 4


@pytest.fixture(scope="module")
def diff_env() -> CartPoleEnv:
    return make_env("cartpole", num_envs=N, seed=0, differentiable=True)


@pytest.fixture
def env(diff_env: CartPoleEnv) -> CartPoleEnv:
    diff_env.set_seed(0)
    diff_env.reset()
    return diff_env


def _actions(steps: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 2 * torch.rand(steps, N, 1, generator=gen) - 1


def _replay(actions: torch.Tensor):
    """A policy writing ``actions[t]`` at its t-th call."""
    calls = iter(range(actions.shape[0]))

    def policy(td):
        return td.set("action", actions[next(calls)])

    return policy


def test_check_env_specs(env: CartPoleEnv) -> None:
    check_env_specs(env, seed=1)
    assert set(env.observation_spec.keys()) == {"observation", "joint_q", "joint_qd"}


def test_dynamics_match_the_mujoco_task() -> None:
    mujoco = make_env("cartpole", num_envs=N, seed=3)
    featherstone = make_env("cartpole", num_envs=N, seed=3, differentiable=True)
    actions = _actions(16)
    expected = mujoco.rollout(16, _replay(actions), break_when_any_done=False)
    with torch.no_grad():
        got, _ = differentiable_rollout(featherstone, _replay(actions), featherstone.reset(), 16)
    # Same start (same seed), same actions: 16 steps apart by float32 rounding only.
    torch.testing.assert_close(
        got["observation"][:, 0], expected["observation"][:, 0], atol=0, rtol=0
    )
    torch.testing.assert_close(
        got["next", "observation"], expected["next", "observation"], atol=2e-6, rtol=0
    )
    torch.testing.assert_close(
        got["next", "reward"], expected["next", "reward"], atol=2e-5, rtol=1e-6
    )


def test_exact_gradient_matches_central_differences(env: CartPoleEnv) -> None:
    obs = env.reset()["observation"]
    actions = 0.5 * _actions(12, seed=1).transpose(0, 1)  # [N, H, 1], inside the bounds
    exact = make_exact_real_gradient(env, gamma=0.99)
    ret, grad = exact(obs, actions)
    real_return = make_real_return(env, gamma=0.99)
    torch.testing.assert_close(ret, real_return(obs, actions))
    eps = 1e-2
    for t in (0, 5, 11):
        for world in (0, 3):
            plus, minus = actions.clone(), actions.clone()
            plus[world, t, 0] += eps
            minus[world, t, 0] -= eps
            diff = (real_return(obs, plus) - real_return(obs, minus))[world] / (2 * eps)
            assert grad[world, t, 0].item() == pytest.approx(diff.item(), rel=1e-2, abs=1e-3)


def test_gradient_wrt_the_incoming_state_matches_differences() -> None:
    sim = DifferentiableSimulator(CartPoleEnv._add_robot, 2)
    q = torch.tensor([[0.1, 3.0], [-0.2, 0.5]])
    qd = torch.tensor([[0.3, -1.0], [0.0, 2.0]])
    force = torch.tensor([[5.0, 0.0], [-3.0, 0.0]])

    def objective(q, qd, f):
        for _ in range(6):
            q, qd = sim.step(q, qd, f)
        return (torch.cos(q[:, 1]) + 0.1 * qd[:, 0]).sum()

    leaves = [x.clone().requires_grad_(True) for x in (q, qd, force)]
    grads = torch.autograd.grad(objective(*leaves), leaves)
    eps = 1e-2
    for which, (value, grad) in enumerate(zip((q, qd, force), grads, strict=True)):
        for index in ((0, 0), (0, 1), (1, 1)):
            if which == 2 and index[1] == 1:
                continue  # the pole's hinge is not actuated by the task, still a valid input
            plus, minus = [list((q, qd, force)) for _ in range(2)]
            plus[which], minus[which] = value.clone(), value.clone()
            plus[which][index] += eps
            minus[which][index] -= eps
            with torch.no_grad():
                diff = (objective(*plus) - objective(*minus)) / (2 * eps)
            assert grad[index].item() == pytest.approx(diff.item(), rel=2e-2, abs=2e-3)


def test_wrong_shape_is_refused() -> None:
    sim = DifferentiableSimulator(CartPoleEnv._add_robot, 2)
    with pytest.raises(ValueError, match=r"joint_f must have shape \(2, 2\), got \(2, 1\)"):
        sim.step(sim.default_q, sim.default_qd, torch.zeros(2, 1))


def test_rollout_matches_torchrl_rollout_across_resets() -> None:
    # Episodes of 3 steps: every world resets twice within 8 steps.
    def build() -> CartPoleEnv:
        return make_env("cartpole", num_envs=N, seed=5, differentiable=True, episode_length=3)

    actions = _actions(8, seed=2)
    expected = build().rollout(8, _replay(actions), break_when_any_done=False)
    with torch.no_grad():
        env = build()
        got, _ = differentiable_rollout(env, _replay(actions), env.reset(), 8)
    for key in ("observation", ("next", "observation"), ("next", "reward"), ("next", "done")):
        torch.testing.assert_close(got[key], expected[key], msg=str(key))
    assert got["next", "truncated"][:, 2].all() and got["next", "truncated"][:, 5].all()


def test_reset_cuts_the_gradient_and_the_rest_keeps_it(env: CartPoleEnv) -> None:
    start = env.reset()
    env._step_count[:2] = env.episode_length - 1  # worlds 0 and 1 end after their first step
    actions = (0.5 * _actions(3, seed=4)).requires_grad_(True)
    traj, next_start = differentiable_rollout(env, _replay(actions), start, 3)
    assert traj["next", "truncated"][:2, 0].all() and not traj["next", "done"][2:].any()
    (grad,) = torch.autograd.grad(traj["next", "reward"][:, 2].sum(), actions)
    # Reset worlds: their third reward belongs to a new episode, untouched by the first action.
    assert (grad[0, :2] == 0).all()
    assert (grad[0, 2:].abs() > 0).all() and (grad[1].abs() > 0).all()
    assert next_start["joint_q"].requires_grad


def test_exact_gradient_needs_a_differentiable_env(cartpole_env: CartPoleEnv) -> None:
    with pytest.raises(TypeError, match="differentiable=True"):
        make_exact_real_gradient(cartpole_env, gamma=0.99)


def test_a_diverged_world_terminates_with_its_last_finite_state(
    env: CartPoleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = env.sim.step

    def diverging_step(q, qd, f):  # world 1 blows up in this step
        q, qd = step(q, qd, f)
        blown = torch.zeros_like(qd, dtype=torch.bool)
        blown[1] = True
        return q, torch.where(blown, torch.full_like(qd, float("nan")), qd)

    monkeypatch.setattr(env.sim, "step", diverging_step)
    td = env.reset()
    action = torch.full((N, 1), 0.5, requires_grad=True)
    out = env.step(td.set("action", action))["next"]
    assert out["terminated"].squeeze(-1).tolist() == [False, True, False, False]
    assert torch.isfinite(out["observation"]).all()
    torch.testing.assert_close(out["joint_qd"][1], td["joint_qd"][1])
    (grad,) = torch.autograd.grad(out["observation"].sum(), action)
    assert grad[1] == 0 and (grad[[0, 2, 3]].abs() > 0).all()
