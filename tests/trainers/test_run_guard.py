"""trainers.run_guard: checkpoints on schedule, a signal checkpoints then stops, skipped updates
and non-finite weights stop the run naming the last good checkpoint; one line on each stop; a
start the lock refuses records no provenance."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from torchrl_flowmbpo.provenance import CONFIG_FILE, PROVENANCE_FILE
from torchrl_flowmbpo.trainers.run_checkpointer import RunCheckpointer
from torchrl_flowmbpo.trainers.run_guard import RunGuard, RunStopped
from torchrl_flowmbpo.trainers.stopping import StopSignals


def _guard(tmp_path, interval=100, skips=3):
    checkpoint = {"interval": interval, "every_minutes": 1e9, "keep_last": 3, "max_buffer_mb": 1}
    checkpoint["max_skipped_iterations"] = skips
    cfg = OmegaConf.create({"seed": 0, "variant": "t", "checkpoint": checkpoint})
    net = torch.nn.Linear(2, 1)
    counters = {"iteration": 0}
    checkpointer = RunCheckpointer(
        tmp_path / "checkpoints",
        cfg,
        {"net": net},
        {},
        counters=counters,
        history={},
        specs={},
        warn=lambda _: None,
    )
    stop = StopSignals()
    return RunGuard(checkpointer, stop), net, counters, stop


def test_a_signal_checkpoints_then_stops_with_its_status(tmp_path):
    guard, _, counters, stop = _guard(tmp_path)
    with stop.installed():
        counters["iteration"] = 1
        guard.after_iteration()
        assert not guard.checkpointer.checkpoints.candidates()  # not due
        os.kill(os.getpid(), signal.SIGTERM)
        counters["iteration"] = 2
        with pytest.raises(RunStopped) as stopped:
            guard.after_iteration()
    assert stopped.value.status == 143
    (path,) = guard.checkpointer.checkpoints.candidates()
    assert path.name == "checkpoint-000000000002.torchrl"
    assert "Stopped by SIGTERM at iteration 2" in str(stopped.value) and str(path) in str(
        stopped.value
    )


def test_skipped_updates_stop_the_run_naming_the_last_good_checkpoint(tmp_path):
    guard, _, counters, _ = _guard(tmp_path, interval=1, skips=2)
    for total in (0, 0, 1):
        counters["iteration"] += 1
        guard.after_iteration(skipped_total=total)
    last = guard.checkpointer.last_path
    counters["iteration"] += 1
    with pytest.raises(RunStopped) as stopped:
        guard.after_iteration(skipped_total=2)
    assert stopped.value.status == 1 and f"last good checkpoint: {last}" in str(stopped.value)


def test_non_finite_weights_stop_the_run_and_are_not_written(tmp_path):
    guard, net, counters, _ = _guard(tmp_path, interval=1)
    counters["iteration"] = 1
    guard.after_iteration()
    good = guard.checkpointer.last_path
    with torch.no_grad():
        net.weight.fill_(float("nan"))
    counters["iteration"] = 2
    with pytest.raises(RunStopped, match=f"last good checkpoint: {good}"):
        guard.after_iteration()
    assert guard.checkpointer.checkpoints.candidates() == [good]


_SCRIPT = """
import sys, time
from pathlib import Path
from torchrl_flowmbpo.trainers.run_guard import RunStopped, guarded_run
with guarded_run(Path(sys.argv[1]), "train.py", config={"seed": int(sys.argv[3])}) as stop:
    print("running", flush=True)
    if sys.argv[2] == "stop":
        raise RunStopped("Stopped by SIGTERM at iteration 3; checkpoint c.", 143)
    time.sleep(60)
"""


def test_a_second_start_is_refused_and_a_stop_is_one_line(tmp_path):
    first = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(tmp_path), "wait", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout.readline().strip() == "running"
        recorded = {name: (tmp_path / name).read_text() for name in (PROVENANCE_FILE, CONFIG_FILE)}
        assert [start["pid"] for start in json.loads(recorded[PROVENANCE_FILE])["starts"]] == [
            first.pid
        ]
        second = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(tmp_path), "wait", "2"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 75 and second.stdout == ""
        (line,) = second.stderr.strip().splitlines()
        assert line.startswith("train.py: ") and f"pid {first.pid}" in line
        # The refused start recorded nothing: the lock is taken before the provenance.
        assert recorded == {name: (tmp_path / name).read_text() for name in recorded}
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()
    stopped = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path), "stop", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stopped.returncode == 143
    assert stopped.stderr.strip() == "train.py: Stopped by SIGTERM at iteration 3; checkpoint c."


def test_an_unwritable_run_directory_is_refused_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(blocker / "run"), "wait", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith(f"train.py: cannot use the run directory {blocker}")
