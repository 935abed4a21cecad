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
