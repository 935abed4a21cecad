"""examples/gradient_check.py on hand-made tiny checkpoints (conftest ``make_checkpoint``;
untrained networks: the script's plumbing, not a model's quality), in-process."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from torchrl_flowmbpo.diagnostics.controllers import REFERENCE_CONTROLLERS
from torchrl_flowmbpo.trainers import load_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "gradient_check.py"
HORIZON, STATES = 3, 4


@pytest.fixture(scope="module")
def script(load_script):
    return load_script(SCRIPT, "gradient_check")


def test_report_on_a_tiny_checkpoint(script, make_checkpoint, tmp_path, capsys):
    path = make_checkpoint(tmp_path / "run" / "checkpoints")
    script.main([str(tmp_path / "run"), "--horizon", str(HORIZON), "--states", str(STATES)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Gradient check of baseline on cartpole (seed 3, iteration 7")
    assert f"{STATES} start states" in lines[0] and "γ = 0.9," in lines[0]
    # The cartpole has a differentiable simulator: the real gradient is exact.
    assert "exact real gradient (differentiable simulator)" in lines[0]
    assert lines[1].startswith("values:") and lines[2].startswith("gradients:")
    rows = [line.split() for line in lines[4:]]
    assert [int(t) for t, _, _ in rows] == list(range(HORIZON))
    assert all(math.isfinite(float(cos)) and float(ratio) > 0 for _, cos, ratio in rows)
    assert path.is_file()


def test_finite_differences_on_request(script, make_checkpoint, tmp_path, capsys):
    make_checkpoint(tmp_path / "run" / "checkpoints")
    args = [str(tmp_path / "run"), "--horizon", str(HORIZON), "--states", str(STATES)]
    script.main([*args, "--finite-differences", "--eps", "0.01"])
    fd = capsys.readouterr().out.splitlines()
    assert "eps = 0.01," in fd[0]
    script.main(args)
    exact = capsys.readouterr().out.splitlines()
    # Differences of a smooth return and the exact gradient give the same cosines.
    for fd_row, exact_row in zip(fd[4:], exact[4:], strict=True):
        assert float(fd_row.split()[1]) == pytest.approx(float(exact_row.split()[1]), abs=0.02)


def test_report_on_a_locomotion_task(script, make_checkpoint, tmp_path, capsys):
    path = make_checkpoint(tmp_path / "ant", task="ant")
    args = ["--horizon", "2", "--states", "2", "--seed", "1", "--reference-eps", "0.01"]
    script.main([str(path), *args])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Gradient check of baseline on ant (seed 3, iteration 7")
    values = lines[1].replace(";", "").replace(",", "").split()
    # Two states, two steps of the Ant's reward (~1 per step while upright) in raw units.
    assert 0.5 < float(values[values.index("real") + 1]) < 5.0
    self_cos = lines[3].replace(",", "").split()
    assert lines[3].startswith("real:") and -1 <= float(self_cos[self_cos.index("mean") + 1]) <= 1
    cosines = [float(row.split()[1]) for row in lines[5:]]
    # The Ant's reward reads the pre-step observation only: the last action reaches no reward
    # within the horizon, its real gradient is 0 and its cosine undefined.
    assert math.isfinite(cosines[0]) and math.isnan(cosines[1])


def test_reward_units_are_the_normalisers(script, make_checkpoint, tmp_path):
    state = load_checkpoint(make_checkpoint(tmp_path))
    scale, loc = script.reward_units(state)
    # RunningMeanStd of [-3, -1, 0, -2] (plus its tiny prior): mean -1.5, variance 1.25.
    assert loc == pytest.approx(-1.5, rel=1e-3) and scale == pytest.approx(1.25**0.5, rel=1e-3)


def test_task_without_a_state_setter_fails_clearly(script, make_checkpoint, tmp_path, monkeypatch):
    class Frozen:
        """A task class that cannot be restarted from an observation."""

    monkeypatch.setitem(script.TASKS, "frozen", Frozen)
    path = make_checkpoint(tmp_path / "frozen", task="frozen")
    with pytest.raises(SystemExit, match=r"task 'frozen' cannot be restarted.*no set_state_from"):
        script.main([str(path)])
    with pytest.raises(SystemExit, match="does not exist"):
        script.main([str(tmp_path / "missing.pt")])


def test_bad_reference_eps_is_refused(script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "c.pt"), "--reference-eps", "0"])
    assert "need --reference-eps > 0, got 0.0" in capsys.readouterr().err


def test_start_states_of_a_reference_controller(
    script, make_checkpoint, tmp_path, capsys, monkeypatch
):
    calls = []

    def pushing(obs: torch.Tensor) -> torch.Tensor:
        """Full force to the right, counting its calls."""
        calls.append(obs.shape[0])
        return torch.ones(obs.shape[0], 1)

    monkeypatch.setitem(REFERENCE_CONTROLLERS, "cartpole", {"push": lambda: pushing})
    path = make_checkpoint(tmp_path)
    script.main([str(path), "--horizon", "2", "--states", str(STATES), "--start", "push"])
    first = capsys.readouterr().out.splitlines()[0]
    assert f"{STATES} start states of the push controller, H = 2" in first
    env = script.make_task_env(
        load_checkpoint(path)["specs"]["env"], num_envs=STATES, device="cpu", seed=0
    )
    # The start rollout (one episode) ran on it, one call per step on all the worlds at once.
    assert calls == [STATES] * env.base_env.episode_length


def test_unknown_start_is_refused_before_the_simulator(script, make_checkpoint, tmp_path):
    path = make_checkpoint(tmp_path)
    with pytest.raises(SystemExit, match=r"--start 'trot' is not one of: policy, pd \(cartpole\)"):
        script.main([str(path), "--start", "trot"])
    assert script.start_controller("policy", "cartpole") is None


def test_smoothed_slopes_report_the_split_halves(script, make_checkpoint, tmp_path, capsys):
    path = make_checkpoint(tmp_path)
    args = ["--horizon", "2", "--states", str(STATES), "--smooth", "0.3", "--smooth-samples", "4"]
    script.main([str(path), *args])
    lines = capsys.readouterr().out.splitlines()
    assert "slopes smoothed by σ = 0.3 (4 antithetic pairs)" in lines[0]
    assert lines[3].startswith("real:      cos(real half the pairs, the other half) per state")
    assert lines[4].startswith("zeroth:    cos(model from its returns at half the pairs, real")
    assert len(lines) == 5 + 1 + 2  # three scalar lines, the real and zeroth lines, header, steps


def test_bad_smoothing_is_refused(script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "c.pt"), "--smooth", "0"])
    assert "need --smooth > 0 and --smooth-samples >= 2, got 0.0 and 128" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "c.pt"), "--smooth", "0.3", "--reference-eps", "0.01"])
    assert "--reference-eps applies to finite differences" in capsys.readouterr().err
