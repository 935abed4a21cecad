"""The training scripts killed (SIGKILL) after a checkpoint taken with episodes in progress, and
rerun, end with the weights of the uninterrupted run, bit for bit: examples/pwm_flow.py (PWM and
``experiment=shac``) and examples/sac_baseline.py.

Tiny cartpole runs whose batches cut episodes, so a checkpoint between batches holds worlds
mid-episode and the resume must continue them, not reset them. PWM: 3 envs, H = 16 steps per
batch, 20-step episodes with reset noise, 7 batches of 48 frames, the first 2 random. SAC: 4
envs, 16 steps per batch, 50-step episodes, 10 batches, the first 2 random. SHAC: 4 envs, H = 8,
20-step episodes, 6 iterations.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from torchrl_flowmbpo.trainers import load_checkpoint
from torchrl_flowmbpo.trainers.checkpointing import RunCheckpoints

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OVERRIDES = """
    env=cartpole env.num_envs=3 +env.kwargs.episode_length=20 collector.total_frames=336
    collector.init_random_frames=96 algo.wm_warmup_steps=2 algo.wm_batch_slices=8
    eval.episodes=1 eval.num_envs=1 eval.interval=2 logger=csv seed=3 device=cpu threads=1
    checkpoint.interval=1 checkpoint.every_minutes=1000
"""
COMMON = "env=cartpole env.num_envs=4 logger=csv seed=1 device=cpu threads=1 "
COMMON += "checkpoint.interval=1 checkpoint.every_minutes=1000"
#: SAC and SHAC: the script, its overrides, the checkpoint a run is killed after, the episode
#: length, and where the checkpoint keeps the step the episodes in progress go on from.
RUNS = {
    "sac": (
        "sac_baseline.py",
        COMMON + " +env.kwargs.episode_length=50 collector.frames_per_batch=64 "
        "collector.total_frames=640 sac.init_random_frames=128 sac.batch_size=32 "
        "sac.utd_ratio=0.25 sac.hidden_sizes=[32,32] sac.buffer_size=10000 eval.episodes=2 "
        "eval.num_envs=2 eval.interval=4",
        4,
        50,
        ("collector", "carrier"),
    ),
    "shac": (
        "pwm_flow.py",
        COMMON + " experiment=shac +env.kwargs.episode_length=20 algo.horizon=8 "
        "collector.total_frames=192 algo.critic_iterations=2 eval.episodes=2 eval.num_envs=2 "
        "eval.interval=3",
        2,
        20,
        ("loop", "rollout", "start"),
    ),
}
TIMEOUT_S = 400


def _start(run_dir: Path, script: str = "pwm_flow.py", overrides: str = OVERRIDES):
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *overrides.split(), f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err[-3000:]


def _kill_after_checkpoint(proc: subprocess.Popen, run_dir: Path, step: int) -> dict:
    """SIGKILLs ``proc`` once checkpoint ``step`` is written; returns the newest sound one."""
    checkpoint = run_dir / "checkpoints" / f"checkpoint-{step:012d}.torchrl"
    deadline = time.monotonic() + TIMEOUT_S
    while not checkpoint.exists():
        assert proc.poll() is None, f"exited before checkpoint {step}: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for checkpoint {step}"
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    _, states, _ = RunCheckpoints(run_dir / "checkpoints").load_newest_valid()
    return states


def _assert_same_weights(expected_dir: Path, run_dir: Path) -> None:
    expected, resumed = load_checkpoint(expected_dir), load_checkpoint(run_dir)
    assert resumed["counters"]["frames"] == expected["counters"]["frames"]
    for module, state in expected["modules"].items():
        for name, value in state.items():
            assert torch.equal(value, resumed["modules"][module][name]), f"{module}.{name}"


def _scalars(run_dir: Path) -> dict[str, list[str]]:
    """Every logged CSV but the wall-clock ones, by path under the log directory."""
    files = (run_dir / "logs").glob("*/scalars/**/*.csv")
    return {
        str(path.relative_to(run_dir / "logs")): path.read_text().splitlines()
        for path in files
        if "/time/" not in str(path)
    }


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted PWM run."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    _finish(_start(run_dir))
    return run_dir


@pytest.fixture(scope="module", params=sorted(RUNS))
def straight_run(request, tmp_path_factory) -> tuple[str, Path]:
    """The uninterrupted SAC and SHAC runs."""
    script, overrides, *_ = RUNS[request.param]
    run_dir = tmp_path_factory.mktemp(f"straight_{request.param}") / "run"
    _finish(_start(run_dir, script, overrides))
    return request.param, run_dir


def test_kill_9_with_episodes_in_progress_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, straight: Path
) -> None:
    run_dir = tmp_path / "run"
    states = _kill_after_checkpoint(_start(run_dir), run_dir, 2)
    carrier = TensorDict(states["collector"]["carrier"], batch_size=[3])
    steps = carrier["step_count"].squeeze(-1)
    assert ((steps > 0) & (steps < 20)).any(), f"no episode in progress: {steps.tolist()}"

    _finish(_start(run_dir))
    _assert_same_weights(straight, run_dir)
    assert load_checkpoint(run_dir)["counters"]["frames"] == 336


def test_sac_and_shac_killed_with_episodes_in_progress_resume_to_the_uninterrupted_run(
    tmp_path: Path, straight_run: tuple[str, Path]
) -> None:
    algo, expected_dir = straight_run
    script, overrides, kill_after, episode_length, carried = RUNS[algo]
    run_dir = tmp_path / "run"
    states = _kill_after_checkpoint(_start(run_dir, script, overrides), run_dir, kill_after)
    for key in carried:
        states = states[key]
    steps = TensorDict(states, batch_size=[4])["step_count"].squeeze(-1)
    assert ((steps > 0) & (steps < episode_length)).any(), f"none in progress: {steps.tolist()}"

    _finish(_start(run_dir, script, overrides))
    _assert_same_weights(expected_dir, run_dir)
    logged = _scalars(run_dir)
    for name, rows in logged.items():
        steps = [float(row.split(",")[0]) for row in rows]
        assert all(b > a for a, b in itertools.pairwise(steps)), (name, steps)
    assert logged == _scalars(expected_dir)
