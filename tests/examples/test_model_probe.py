"""examples/model_probe.py on hand-made tiny checkpoints (conftest ``make_checkpoint``): the real
sums against the simulator stepped by hand, the model sums against the world model's own calls,
and the report's rows."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from torchrl_flowmbpo.envs.controllers import cartpole_pd
from torchrl_flowmbpo.recipes import load_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "model_probe.py"
ENVS = 4


@pytest.fixture(scope="module")
def script(load_script):
    return load_script(SCRIPT, "model_probe")


def rebuild(script, path: Path):
    state = load_checkpoint(path)
    env = script.make_task_env(state["specs"]["env"], num_envs=ENVS, device="cpu", seed=7)
    return state, env, script.load_policy(state, env, "cpu")


def test_cartpole_pd_balancer_holds_the_pole_up(script):
    env = script.make_task_env(
        {"name": "cartpole", "kwargs": {"start_angle": 0.0}}, num_envs=ENVS, device="cpu", seed=3
    )
    _, _, rewards = script.real_rollout(env, cartpole_pd, 240)
    # A whole episode: about -1.2 (docs/tasks.md); zero action earns about -400.
    assert -5.0 < float(rewards.sum(1).mean()) <= 0.0


def test_model_sums_follow_the_world_model(script, make_checkpoint, tmp_path):
    state, _, policy = rebuild(script, make_checkpoint(tmp_path / "c.pt"))
    world_model = policy[0].module
    scale, loc = script.reward_units(state)
    torch.manual_seed(0)
    first, actions = torch.randn(ENVS, 5), torch.rand(ENVS, 3, 1) * 2 - 1
    got = script.model_rewards(world_model, first, actions, scale, loc)
    with torch.no_grad():
        z, survival, expected = world_model.encode(first), torch.ones(ENVS), []
        for t in range(3):
            a = actions[:, t]
            expected.append((world_model.reward(z, a).reshape(-1) * scale + loc) * survival)
            p_end = torch.sigmoid(world_model.termination_logit(z, a).reshape(-1))
            survival = survival * (1 - p_end)
            z = world_model.next(z, a)
    torch.testing.assert_close(got, torch.stack(expected, 1))


def test_report_rows(script, make_checkpoint, tmp_path, capsys):
    path = make_checkpoint(tmp_path / "run" / "checkpoints" / "checkpoint_7.pt")
    script.main([str(tmp_path / "run"), "--envs", str(ENVS), "--horizons", "2", "5"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Model probe of baseline on cartpole (560 frames)")
    rows = [line.split() for line in lines[2:]]
    behaviours = ["zero", "random", "policy", "pd"]
    assert [(row[0], int(row[1])) for row in rows] == [(b, h) for b in behaviours for h in (2, 5)]
    # The zero-action rows match the simulator stepped by hand from the same start states.
    _, env, _ = rebuild(script, path)
    env.set_seed(7)
    _, _, real = script.real_rollout(env, lambda obs: torch.zeros(ENVS, 1), 5)
    assert float(rows[0][2]) == pytest.approx(float(real[:, :2].sum(1).mean()), abs=1e-3)
    assert float(rows[1][2]) == pytest.approx(float(real.sum(1).mean()), abs=1e-3)
    assert all(math.isfinite(float(row[3])) for row in rows)


def test_bad_arguments_are_refused(script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "c.pt"), "--envs", "1"])
    assert "need --envs >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="does not exist"):
        script.main([str(tmp_path / "missing.pt")])
