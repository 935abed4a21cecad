"""trainers.stopping: signals become a flag (a second one stops at once); skipped updates in a
row stop the run."""

from __future__ import annotations

import os
import signal

import pytest

from torchrl_flowmbpo.trainers.stopping import SkipLimit, StopSignals, TooManySkippedUpdatesError


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_first_signal_is_recorded_and_a_second_stops_at_once(sig, status):
    previous = signal.getsignal(sig)
    stop = StopSignals()
    with stop.installed():
        os.kill(os.getpid(), sig)
        assert stop.requested == sig.name and stop.exit_status == status
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
    assert signal.getsignal(sig) is previous  # the handlers are put back


def test_skipped_updates_in_a_row_stop_the_run_and_a_good_one_resets_the_count():
    guard = SkipLimit(3)
    guard.observe(5)  # a resumed run's total so far
    for total in (6, 7, 7, 8, 9):
        guard.observe(total)
    assert guard.in_a_row == 2
    with pytest.raises(TooManySkippedUpdatesError, match="3 iterations in a row"):
        guard.observe(10)
