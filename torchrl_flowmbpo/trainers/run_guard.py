"""A training loop's safety net: the run directory's lock, signals, checkpoints on schedule and
the early stops, each ending the process with one line instead of a traceback.

A script wraps its whole run in :func:`guarded_run` (the lock is taken before anything is built
or recorded, so a second start is refused at once and leaves no trace); the loop calls
:meth:`RunGuard.after_iteration` at the end of each iteration, which checkpoints when the
schedule or a signal asks, and stops the run when a signal came or updates keep being skipped.

Examples:
    >>> import tempfile
    >>> with guarded_run(Path(tempfile.mkdtemp()), "train.py") as stop:
    ...     stop.requested is None
    True
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from torchrl_flowmbpo.provenance import start_run
from torchrl_flowmbpo.trainers.checkpointing import NonFiniteStateError
from torchrl_flowmbpo.trainers.run_checkpointer import RunCheckpointer
from torchrl_flowmbpo.trainers.run_lock import RunLock, RunLockedError
from torchrl_flowmbpo.trainers.stopping import (
    SkipLimit,
    StopSignals,
    TooManySkippedUpdatesError,
)

__all__ = ["RunGuard", "RunStopped", "guarded_run"]


class RunStopped(Exception):  # noqa: N818 (a stop, not an error: a signal asked for it)
    """The run stopped before its end; ``status`` is the process's exit status.

    Args:
        message: one line for the user.
        status: the exit status (128 + signal number for a signal, 1 for a failure).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RunGuard:
    """Checkpoints a loop on schedule and stops it on a signal or skipped updates.

    Args:
        checkpointer: the run's checkpoints.
        stop: the signals the script installed (:func:`guarded_run`).

    Keyword Args:
        max_skipped_iterations: iterations in a row with a skipped update before the run stops
            (default: the run config's ``checkpoint.max_skipped_iterations``).
    """

    def __init__(
        self,
        checkpointer: RunCheckpointer,
        stop: StopSignals,
        *,
        max_skipped_iterations: int | None = None,
    ) -> None:
        self.checkpointer, self.stop = checkpointer, stop
        if max_skipped_iterations is None:
            max_skipped_iterations = checkpointer.cfg.checkpoint.max_skipped_iterations
        self.skips = SkipLimit(max_skipped_iterations)

    def _last_good(self) -> str:
        path = self.checkpointer.last_path
        return f"last good checkpoint: {path}" if path else "no checkpoint was written"

    def save(self, *, finished: bool = False) -> Path:
        """Checkpoints now.

        Raises:
            RunStopped: the weights are not finite (nothing written; the last good checkpoint
                is named).
        """
        try:
            return self.checkpointer.save(finished=finished)
        except NonFiniteStateError as err:
            raise RunStopped(f"Stopped: {err}; {self._last_good()}.", 1) from err

    def after_iteration(self, *, skipped_total: int | None = None) -> None:
        """Ends an iteration: checks skipped updates, checkpoints if due, stops on a signal.

        Args:
            skipped_total: the updater's skipped steps so far (None: not tracked).

        Raises:
            RunStopped: a signal came (after the checkpoint), updates were skipped in too many
                iterations in a row, or the weights are not finite.
        """
        if skipped_total is not None:
            try:
                self.skips.observe(skipped_total)
            except TooManySkippedUpdatesError as err:
                raise RunStopped(f"Stopped: {err}; {self._last_good()}.", 1) from err
        if self.stop.requested or self.checkpointer.due():
            path = self.save()
            if self.stop.requested:
                counter = self.checkpointer.counter
                raise RunStopped(
                    f"Stopped by {self.stop.requested} at {counter} "
                    f"{self.checkpointer.counters[counter]}; checkpoint {path}. "
                    "Rerun the same command to continue.",
                    self.stop.exit_status,
                )


@contextmanager
def guarded_run(
    run_dir: Path, script: str, *, config: DictConfig | Mapping[str, Any] | None = None
) -> Iterator[StopSignals]:
    """Holds ``run_dir``'s lock and the signal handlers for a run; one line on any stop.

    Exits the process with one line on stderr when the directory is in use (status 75), cannot
    be written (status 1) or the run stopped early (:class:`RunStopped`'s status).

    Args:
        run_dir: the run directory.
        script: the script's name, which starts each line.

    Keyword Args:
        config: the run's config: once the lock is held, this start is recorded in the run's
            provenance (:func:`~torchrl_flowmbpo.provenance.start_run`); None: not recorded.

    Yields:
        The installed :class:`StopSignals` (for :class:`RunGuard`).
    """
    try:
        lock = RunLock(run_dir).acquire()
    except RunLockedError as err:
        print(f"{script}: {err}", file=sys.stderr, flush=True)
        sys.exit(75)  # EX_TEMPFAIL: try again once the other run has ended
    except OSError as err:  # a run directory that cannot be created or written
        sys.exit(f"{script}: cannot use the run directory {run_dir}: {err.strerror or err}.")
    stop = StopSignals()
    try:
        if config is not None:  # after the lock: a refused start leaves the provenance alone
            start_run(run_dir, config)
        with stop.installed():
            yield stop
    except RunStopped as stopped:
        print(f"{script}: {stopped}", file=sys.stderr, flush=True)
        sys.exit(stopped.status)
    finally:
        lock.release()
