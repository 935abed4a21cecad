"""Why a run stops before its last frame: a signal, or updates that keep being skipped.

SIGTERM (what a cluster sends before preempting a job) and SIGINT (Ctrl-C) must not lose the
work since the last checkpoint. :class:`StopSignals` turns the first one into a flag that the
loop reads between iterations, so the run finishes the iteration in progress, checkpoints and
exits with a message; a second signal stops at once (the run resumes from its last checkpoint).

The updater skips a step whose gradient is not finite instead of corrupting the weights. One
such step is noise; a run that skips every step is going nowhere. :class:`SkipLimit` counts the
iterations in a row that skipped an update and stops the run after ``limit`` of them.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["SkipLimit", "StopSignals", "TooManySkippedUpdatesError"]

#: The line on stderr when the first signal comes.
ACKNOWLEDGEMENT = (
    "stopping after the iteration in progress, with a checkpoint (a second Ctrl-C stops at once; "
    "the run then resumes from its last checkpoint)"
)


class TooManySkippedUpdatesError(RuntimeError):
    """Updates were skipped (non-finite gradients) in too many iterations in a row."""


class StopSignals:
    """Records SIGTERM and SIGINT instead of dying at once, while :meth:`installed` is active.

    Examples:
        >>> import os, signal
        >>> stop = StopSignals()
        >>> with stop.installed():
        ...     os.kill(os.getpid(), signal.SIGTERM)
        ...     stop.requested
        'SIGTERM'
    """

    signals = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        #: The name of the first signal received, or None.
        self.requested: str | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        # Said at once (the iteration may take a minute); os.write, not print: the signal may
        # have come in the middle of a write to sys.stderr (a progress bar's).
        os.write(2, f"\n{self.requested}: {ACKNOWLEDGEMENT}\n".encode())

    @property
    def exit_status(self) -> int:
        """The shell's convention for a run ended by the signal: 128 + its number."""
        return 128 + int(signal.Signals[self.requested]) if self.requested else 0

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Installs the handlers; the previous ones come back on exit."""
        previous = {sig: signal.signal(sig, self._handle) for sig in self.signals}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class SkipLimit:
    """Stops a run after ``limit`` iterations in a row that skipped an update.

    Args:
        limit: iterations in a row with a skipped update before the run stops (>= 1).

    Examples:
        >>> guard = SkipLimit(2)
        >>> guard.observe(0); guard.observe(1)          # one iteration skipped
        >>> guard.observe(1)                            # none skipped: the count restarts
        >>> guard.observe(2)
        >>> try:
        ...     guard.observe(3)
        ... except TooManySkippedUpdatesError as err:
        ...     print(err)
        2 iterations in a row skipped an update (non-finite gradients)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0
        self._last_total: int | None = None

    def observe(self, skipped_total: int) -> None:
        """Reads the updater's total skipped steps after an iteration.

        Raises:
            TooManySkippedUpdatesError: the limit is reached.
        """
        skipped = self._last_total is not None and skipped_total > self._last_total
        self._last_total = skipped_total
        self.in_a_row = self.in_a_row + 1 if skipped else 0
        if self.in_a_row >= self.limit:
            raise TooManySkippedUpdatesError(
                f"{self.in_a_row} iterations in a row skipped an update (non-finite gradients)"
            )
