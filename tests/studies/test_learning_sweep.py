"""studies/learning.sh: a tiny cartpole sweep (one seed, baseline PWM and SAC) trains into the
documented run layout, passes PWM_ARGS / SAC_ARGS through, skips finished runs on a rerun and
writes the report; an unknown variant fails before anything runs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchrl_flowmbpo.trainers import load_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "learning.sh"
FRAMES = 320  # 4 envs x 16 steps per PWM iteration, 64 frames per SAC batch: 5 batches each
PWM_ARGS = (
    "env.num_envs=4 +env.kwargs.episode_length=50 collector.init_random_frames=128 "
    "algo.wm_warmup_steps=2 algo.wm_batch_slices=8 algo.wm_updates_per_iter=1 "
    "eval.episodes=1 eval.num_envs=1 logger=csv"
)
SAC_ARGS = (
    "env.num_envs=4 +env.kwargs.episode_length=50 collector.frames_per_batch=64 "
    "sac.init_random_frames=128 sac.batch_size=32 sac.utd_ratio=0.25 sac.hidden_sizes=[32,32] "
    "sac.buffer_size=10000 eval.episodes=1 eval.num_envs=1 logger=csv"
)


def run_sweep(root: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {
        **os.environ,
        "FRAMES": str(FRAMES),
        "SEEDS": "0",
        "VARIANTS": "baseline sac",
        "PWM_ARGS": PWM_ARGS,
        "SAC_ARGS": SAC_ARGS,
        "RUNS": str(root / "runs"),
        "OUT": str(root / "report"),
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
        **env,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), "cartpole"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    first = run_sweep(root)
    assert first.returncode == 0, first.stderr[-4000:]
    again = run_sweep(root)
    assert again.returncode == 0, again.stderr[-4000:]
    return root, first, again


@pytest.mark.parametrize("variant", ["baseline", "sac"])
def test_each_run_lands_in_its_documented_folder(sweep, variant):
    root, _, _ = sweep
    run_dir = root / "runs" / "cartpole" / variant / "seed0"
    assert (run_dir / "learning_curve.png").is_file()
    state = load_checkpoint(run_dir)
    assert state["counters"]["frames"] == FRAMES
    assert state["config"]["seed"] == 0 and state["config"]["threads"] == 1


def test_pwm_args_reach_the_pwm_runs(sweep):
    root, _, _ = sweep
    config = load_checkpoint(root / "runs" / "cartpole" / "baseline" / "seed0")["config"]
    assert config["variant"] == "baseline"
    assert config["algo"]["wm_updates_per_iter"] == 1
    assert config["env"]["num_envs"] == 4


def test_rerun_skips_finished_runs(sweep):
    _, first, again = sweep
    assert first.stdout.count("== skip") == 0
    assert again.stdout.count("== skip") == 2


def test_report_has_both_variants(sweep):
    root, _, _ = sweep
    with (root / "report" / "learning_table.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((row["task"], row["variant"]) for row in rows) == [
        ("cartpole", "baseline"),
        ("cartpole", "sac"),
    ]
    assert (root / "report" / "cartpole_steps.png").is_file()


def test_unknown_variant_fails_before_any_run(tmp_path):
    result = run_sweep(tmp_path, VARIANTS="baseline flow")
    assert result.returncode == 2
    assert "unknown variant 'flow'" in result.stderr
    assert not (tmp_path / "runs").exists()
