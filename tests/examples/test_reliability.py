"""examples/pwm_flow.py under kills, signals, concurrent starts and bad checkpoints (issue: one
run per directory, nothing lost on any kill, exact resume).

Every run is a tiny cartpole run: 4 envs, H = 16, 16-step episodes without reset noise (so every
episode ends with a batch and restarts the same way: a resume reproduces the uninterrupted run
bit for bit), 7 batches of 64 frames, the first 2 random.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from torchrl_flowmbpo.trainers import load_checkpoint
from torchrl_flowmbpo.trainers.checkpointing import RunCheckpoints

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "pwm_flow.py"
COMMAND = (
    "env=cartpole env.num_envs=4 +env.kwargs.episode_length=16 +env.kwargs.reset_noise=0.0 "
    "collector.total_frames=448 collector.init_random_frames=128 algo.wm_warmup_steps=2 "
    "algo.wm_batch_slices=8 eval.episodes=1 eval.num_envs=1 eval.interval=2 logger=csv seed=2 "
    "device=cpu threads=1 checkpoint.interval={interval} checkpoint.every_minutes=1000"
)
TIMEOUT_S = 400


class Run:
    """``pwm_flow.py`` in ``run_dir`` as a subprocess that a test can signal."""

    def __init__(self, run_dir: Path, interval: int = 1) -> None:
        self.run_dir = run_dir
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        args = [*COMMAND.format(interval=interval).split(), f"hydra.run.dir={run_dir}"]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), *args],
            cwd=run_dir.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not ready():
            assert self.proc.poll() is None, f"exited before {what}: {self.proc.stderr.read()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=TIMEOUT_S)
        return self.proc.returncode, out, err


def _logged(run_dir: Path) -> bool:
    return any(p.stat().st_size for p in run_dir.glob("logs/*/scalars/loss/world_model.csv"))


def _checkpoint(run_dir: Path, step: int):
    return lambda: (run_dir / "checkpoints" / f"checkpoint-{step:012d}.torchrl").exists()


def _assert_logs_once(run_dir: Path) -> None:
    files = list(run_dir.glob("logs/*/scalars/**/*.csv"))
    assert files
    for path in files:
        steps = [float(line.split(",")[0]) for line in path.read_text().splitlines() if line]
        assert all(b > a for a, b in itertools.pairwise(steps)), (path.name, steps)
    (loss,) = run_dir.glob("logs/*/scalars/loss/world_model.csv")
    assert loss.read_text().splitlines()[-1].startswith("448,")  # the run reached its end


def _finished(run: Run) -> str:
    code, out, err = run.finish()
    assert code == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run (a checkpoint every iteration)."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    _finished(Run(run_dir))
    return run_dir


def test_kill_9_before_the_first_checkpoint_leaves_logs_a_rerun_does_not_duplicate(tmp_path):
    run = Run(tmp_path / "run", interval=1000)
    run.wait_for(lambda: _logged(run.run_dir), "the first logged row")
    run.proc.kill()
    run.proc.wait()
    assert not RunCheckpoints(run.run_dir / "checkpoints").candidates()
    _finished(Run(run.run_dir, interval=1000))
    _assert_logs_once(run.run_dir)


def test_kill_9_mid_run_resumes_to_the_weights_of_the_uninterrupted_run(tmp_path, straight):
    run = Run(tmp_path / "run")
    run.wait_for(_checkpoint(run.run_dir, 2), "checkpoint 2")
    run.proc.kill()
    run.proc.wait()
    out = _finished(Run(run.run_dir))
    assert "Resumed from" in out
    _assert_logs_once(run.run_dir)
    expected = load_checkpoint(straight)["modules"]
    resumed = load_checkpoint(run.run_dir)["modules"]
    for module, state in expected.items():
        for name, value in state.items():
            assert torch.equal(value, resumed[module][name]), f"{module}.{name}"


def test_a_second_start_is_refused_and_the_first_run_is_unharmed(tmp_path):
    first = Run(tmp_path / "run")
    first.wait_for(lambda: (first.run_dir / ".run.lock").exists(), "the lock")
    code, _, err = Run(first.run_dir).finish()
    assert code == 75 and "Traceback" not in err
    (line,) = [s for s in err.splitlines() if s.startswith("pwm_flow.py")]
    assert f"pid {first.proc.pid} on " in line and "in use by another run" in line
    _finished(first)
    _assert_logs_once(first.run_dir)
    # The refused start recorded nothing: the lock comes before the provenance.
    starts = json.loads((first.run_dir / "provenance.json").read_text())["starts"]
    assert [start["pid"] for start in starts] == [first.proc.pid]


def test_sigterm_checkpoints_and_exits_with_a_message(tmp_path):
    run = Run(tmp_path / "run", interval=1000)
    run.wait_for(lambda: _logged(run.run_dir), "the first logged row")
    run.proc.send_signal(signal.SIGTERM)
    code, _, err = run.finish()
    assert code == 143 and "Traceback" not in err
    assert "Stopped by SIGTERM at iteration" in err
    assert RunCheckpoints(run.run_dir / "checkpoints").candidates()
    _finished(Run(run.run_dir, interval=1000))
    _assert_logs_once(run.run_dir)


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file a run writes, less the records of each start: Hydra's, the log file, the
    lock's holder and provenance.json's list of starts."""
    starts = (".log", ".lock")
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in run_dir.rglob("*")
        if p.is_file()
        and ".hydra" not in p.parts
        and p.suffix not in starts
        and p.name != "provenance.json"
    }


def test_a_finished_run_rerun_changes_nothing_even_with_a_stray_copy(tmp_path, straight):
    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    checkpoints = run_dir / "checkpoints"
    oldest = RunCheckpoints(checkpoints).candidates()[-1]
    (checkpoints / "backup").mkdir()
    shutil.copy(oldest, checkpoints / "backup" / "checkpoint-000000000999.torchrl")
    before = _snapshot(run_dir)
    out = _finished(Run(run_dir))
    assert "holds a finished run (448 frames): nothing to do" in out
    assert _snapshot(run_dir) == before


def test_a_truncated_newest_checkpoint_is_set_aside_and_the_run_finishes(tmp_path, straight):
    run_dir = tmp_path / "run"
    shutil.copytree(straight, run_dir)
    newest = RunCheckpoints(run_dir / "checkpoints").candidates()[0]
    newest.write_bytes(newest.read_bytes()[:1000])
    code, out, err = Run(run_dir).finish()
    assert code == 0, err[-3000:]
    (warning,) = [s for s in (out + err).splitlines() if "set aside" in s]
    assert newest.name in warning
    assert (run_dir / "checkpoints" / "set_aside" / newest.name).is_file()
    assert "Resumed from" in out
    _assert_logs_once(run_dir)
