"""examples/pwm_flow.py killed (SIGKILL) after a checkpoint taken with episodes in progress, and
rerun, ends with the weights of the uninterrupted run, bit for bit.

A tiny cartpole run: 3 envs, H = 16 steps per batch, 20-step episodes with reset noise, so the
batch boundaries cut episodes (a checkpoint between batches holds worlds mid-episode and the
resume must continue them, not reset them); 7 batches of 48 frames, the first 2 random.
"""

from __future__ import annotations

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

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "pwm_flow.py"
OVERRIDES = """
    env=cartpole env.num_envs=3 +env.kwargs.episode_length=20 collector.total_frames=336
    collector.init_random_frames=96 algo.wm_warmup_steps=2 algo.wm_batch_slices=8
    eval.episodes=1 eval.num_envs=1 eval.interval=2 logger=csv seed=3 device=cpu threads=1
    checkpoint.interval=1 checkpoint.every_minutes=1000
"""
TIMEOUT_S = 400


def _start(run_dir: Path) -> subprocess.Popen:
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *OVERRIDES.split(), f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err[-3000:]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    _finish(_start(run_dir))
    return run_dir


def test_kill_9_with_episodes_in_progress_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, straight: Path
) -> None:
    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    checkpoint = run_dir / "checkpoints" / f"checkpoint-{2:012d}.torchrl"
    deadline = time.monotonic() + TIMEOUT_S
    while not checkpoint.exists():
        assert proc.poll() is None, f"exited before checkpoint 2: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "timed out waiting for checkpoint 2"
        time.sleep(0.2)
    proc.kill()
    proc.wait()

    _, states, _ = RunCheckpoints(run_dir / "checkpoints").load_newest_valid()
    carrier = TensorDict(states["collector"]["carrier"], batch_size=[3])
    steps = carrier["step_count"].squeeze(-1)
    assert ((steps > 0) & (steps < 20)).any(), f"no episode in progress: {steps.tolist()}"

    _finish(_start(run_dir))
    expected, resumed = load_checkpoint(straight), load_checkpoint(run_dir)
    assert resumed["counters"]["frames"] == expected["counters"]["frames"] == 336
    for module, state in expected["modules"].items():
        for name, value in state.items():
            assert torch.equal(value, resumed["modules"][module][name]), f"{module}.{name}"
