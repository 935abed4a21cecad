"""examples/model_probe.py on hand-made tiny checkpoints (conftest ``make_checkpoint``): the
report's rows against the simulator stepped by hand, and bad arguments. The probe itself is
tested in tests/diagnostics/test_behaviours.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from torchrl_flowmbpo.diagnostics import real_rollout
from torchrl_flowmbpo.trainers import load_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "model_probe.py"
ENVS = 4


@pytest.fixture(scope="module")
def script(load_script):
    return load_script(SCRIPT, "model_probe")


def rebuild(script, path: Path):
    state = load_checkpoint(path)
    env = script.make_task_env(state["specs"]["env"], num_envs=ENVS, device="cpu", seed=7)
    return state, env, script.load_policy(state, env, "cpu")


def test_report_rows(script, make_checkpoint, tmp_path, capsys):
    path = make_checkpoint(tmp_path / "run" / "checkpoints")
    script.main([str(tmp_path / "run"), "--envs", str(ENVS), "--horizons", "2", "5"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Model probe of baseline on cartpole (560 frames)")
    rows = [line.split() for line in lines[2:]]
    behaviours = ["zero", "random", "policy", "pd"]
    assert [(row[0], int(row[1])) for row in rows] == [(b, h) for b in behaviours for h in (2, 5)]
    # The zero-action rows match the simulator stepped by hand from the same start states.
    _, env, _ = rebuild(script, path)
    env.set_seed(7)
    _, _, real = real_rollout(env, lambda obs: torch.zeros(ENVS, 1), 5)
    assert float(rows[0][2]) == pytest.approx(float(real[:, :2].sum(1).mean()), abs=1e-3)
    assert float(rows[1][2]) == pytest.approx(float(real.sum(1).mean()), abs=1e-3)
    assert all(math.isfinite(float(row[3])) for row in rows)


def test_bad_arguments_are_refused(script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "c.pt"), "--envs", "1"])
    assert "need --envs >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="does not exist"):
        script.main([str(tmp_path / "missing.pt")])


def make_sac_checkpoint(directory: Path, obs_dim: int = 5) -> Path:
    """A SAC run's checkpoint (actor only matters) for the cartpole, hidden width 16."""
    from torchrl.data import Bounded

    from torchrl_flowmbpo.trainers.checkpointing import RunCheckpoints
    from torchrl_flowmbpo.trainers.sac_factories import make_actor

    torch.manual_seed(1)
    actor = make_actor(obs_dim, Bounded(-1.0, 1.0, shape=(1,)), hidden_sizes=[16])
    state = {
        "modules": {"actor": actor.state_dict()},
        "specs": {"env": {"name": "cartpole", "kwargs": {}}, "sac": {"hidden_sizes": [16]}},
    }
    return RunCheckpoints(directory, keep_last=1, keep_best=False).save({"run": state}, step=1)


def test_a_sac_policy_is_probed_as_behaviour_sac(script, make_checkpoint, tmp_path, capsys):
    make_checkpoint(tmp_path / "run" / "checkpoints")
    sac = make_sac_checkpoint(tmp_path / "sac" / "checkpoints")
    args = [str(tmp_path / "run"), "--envs", str(ENVS), "--horizons", "3", "--sac", str(sac)]
    script.main(args)
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[0] for row in rows] == ["zero", "random", "policy", "pd", "sac"]
    # Its real sum is the simulator's under the SAC actor's deterministic actions.
    _, env, _ = rebuild(script, tmp_path / "run")
    env.set_seed(7)
    _, actions, real = real_rollout(env, script.sac_behaviour(sac, env), 3)
    assert float(rows[-1][2]) == pytest.approx(float(real.sum(1).mean()), abs=1e-3)
    assert actions.abs().max() <= 1.0


def test_sac_needs_a_sac_checkpoint(script, make_checkpoint, tmp_path):
    path = make_checkpoint(tmp_path / "run" / "checkpoints")
    with pytest.raises(SystemExit, match="is not a SAC run"):
        script.main([str(tmp_path / "run"), "--envs", str(ENVS), "--sac", str(path)])
    sac = make_sac_checkpoint(tmp_path / "sac" / "checkpoints", obs_dim=7)
    with pytest.raises(SystemExit, match="does not fit this task"):
        script.main([str(tmp_path / "run"), "--envs", str(ENVS), "--sac", str(sac)])
