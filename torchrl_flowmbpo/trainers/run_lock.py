"""One process per run directory: an OS lock held for the run's life.

Two processes writing one run directory interleave their log rows and overwrite each other's
checkpoints. :class:`RunLock` takes an exclusive ``fcntl.flock`` on ``<run dir>/.run.lock`` and
writes who holds it (pid, host, start time) into the file. The kernel releases the lock when the
process ends, however it ends, so a ``kill -9`` leaves no stale lock: the next start takes it.
A second start while the first runs is refused with one line naming the holder.

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> run_dir = Path(tempfile.mkdtemp())
    >>> with RunLock(run_dir) as lock:
    ...     lock.holder()["pid"] == os.getpid()
    True
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError"]

#: The lock file's name in the run directory.
LOCK_NAME = ".run.lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run directory; the message is one line."""


class RunLock:
    """An exclusive, process-lifetime lock on a run directory.

    Args:
        run_dir: the run directory (created if missing).
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Takes the lock and records this process as its holder.

        Raises:
            RunLockedError: another process holds it (named in the message).
            OSError: the run directory cannot be created or written.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # O_CREAT without O_TRUNC: the holder's record must survive a refused start.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                f"{self.run_dir} is in use by another run ({self._describe(self.holder())}); "
                "wait for it to end or choose another hydra.run.dir."
            ) from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Releases the lock (the kernel does it too when the process ends)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> dict[str, Any]:
        """The holder's record (``pid``, ``host``, ``started``); empty if none was written."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _describe(holder: dict[str, Any]) -> str:
        if not holder:
            return "holder unknown"
        return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
