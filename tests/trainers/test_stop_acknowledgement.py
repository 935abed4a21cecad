"""Issue 27: the first Ctrl-C (or SIGTERM) is answered at once with one line on stderr, though
the run only stops after the iteration in progress (which may take a minute)."""

from __future__ import annotations

import subprocess
import sys

from torchrl_flowmbpo.trainers.stopping import ACKNOWLEDGEMENT

_SCRIPT = """
import os, signal
from torchrl_flowmbpo.trainers.stopping import StopSignals
stop = StopSignals()
with stop.installed():
    os.kill(os.getpid(), signal.SIGINT)
    print(stop.requested)
"""


def test_the_first_signal_is_acknowledged_on_stderr_at_once():
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "SIGINT\n"  # recorded, not raised: the loop stops between iterations
    assert run.stderr == f"\nSIGINT: {ACKNOWLEDGEMENT}\n"
    assert "Ctrl-C" in ACKNOWLEDGEMENT and "checkpoint" in ACKNOWLEDGEMENT
