"""trainers.run_lock: one process per run directory, no stale lock after a kill -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from torchrl_flowmbpo.trainers.run_lock import RunLock, RunLockedError

_HOLD = """
import sys, time
from torchrl_flowmbpo.trainers.run_lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "locked"
    yield process
    process.kill()
    process.wait()


def test_a_second_process_is_refused_with_one_line_naming_the_holder(tmp_path, holder):
    with pytest.raises(RunLockedError) as err:
        RunLock(tmp_path).acquire()
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message
    assert f"pid {holder.pid} on {socket.gethostname()}, started 20" in message
    assert holder.poll() is None  # the first process is unharmed
    assert RunLock(tmp_path).holder()["pid"] == holder.pid  # its record survives the refusal


def test_kill_9_leaves_no_stale_lock(tmp_path, holder):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with RunLock(tmp_path) as lock:
        assert lock.holder()["pid"] == os.getpid()


def test_release_lets_the_next_run_in(tmp_path):
    first = RunLock(tmp_path).acquire()
    first.release()
    start = time.monotonic()
    with RunLock(tmp_path):
        pass
    assert time.monotonic() - start < 5
