"""The Hydra entry points refuse a bad config before Hydra starts: one line, status 1, no run
directory, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("script", "override", "message"),
    [
        (
            "pwm_flow.py",
            "env.num_envs=0",
            "env.num_envs=0 is not allowed; allowed: an integer >= 1.",
        ),
        (
            "pwm_flow.py",
            "algo.horizon=1.5",
            "algo.horizon=1.5 is not allowed; allowed: an integer.",
        ),
        ("sac_baseline.py", "seed=abc", "seed='abc' is not allowed; allowed: an integer."),
        (
            "pretrain_world_model.py",
            "threads=two",
            "threads='two' is not allowed; allowed: an integer.",
        ),
    ],
)
def test_bad_config_exits_with_one_line_before_a_run_directory_exists(
    tmp_path, script, override, message
):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), override, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr == f"Invalid configuration: {message}\n"
    assert not run_dir.exists()


def test_a_sweep_validates_each_run_in_the_task(tmp_path):
    # -m skips the check before Hydra starts (a sweep is many configs): each job checks its own.
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "pwm_flow.py"),
            "-m",
            "env.num_envs=0",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Invalid configuration: env.num_envs=0 is not allowed; allowed: an integer >= 1."
    )
