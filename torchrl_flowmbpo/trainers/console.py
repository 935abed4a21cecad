"""A quiet console for the training scripts: no warnings a user cannot act on, no traceback on
Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

__all__ = ["init_warp_quietly", "interrupted", "plain_torchrl_console", "quiet_console"]


def plain_torchrl_console() -> None:
    """Drops the colour codes of TorchRL's console log lines when the output is not a terminal
    (a redirected log would hold raw escape sequences)."""
    if sys.stdout.isatty():
        return
    plain = logging.Formatter("%(asctime)s [%(name)s][%(levelname)s] %(message)s")
    for handler in logging.getLogger("torchrl").handlers:
        handler.setFormatter(plain)


def init_warp_quietly(device: str) -> None:
    """Initialises Warp without its "Could not find or load the NVIDIA CUDA driver" line on a CPU
    run, where no CUDA is wanted. Warp's native library prints it to file descriptor 2 while it
    initialises, so stderr is pointed at /dev/null for that call only; a failure still raises.
    Warp's start-up banner ("CUDA driver not available", the devices) is left out too; its
    kernel-build messages, the progress of a first run, are not. On a CUDA run nothing is
    hidden."""
    import warp as wp

    if not str(device).startswith("cpu"):
        wp.init()
        return
    sys.stderr.flush()
    saved, level = os.dup(2), wp.config.log_level
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            wp.config.log_level = max(level, wp.LOG_WARNING)  # the banner is info
            wp.init()
    finally:
        wp.config.log_level = level
        os.dup2(saved, 2)
        os.close(saved)


def quiet_console(device: str) -> None:
    """What every script calls first: :func:`plain_torchrl_console`, then
    :func:`init_warp_quietly` for ``device``."""
    plain_torchrl_console()
    init_warp_quietly(device)


@contextlib.contextmanager
def interrupted(script: str) -> Iterator[None]:
    """Turns Ctrl-C into a one-line message and exit status 130 instead of a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"\n{script}: interrupted (Ctrl-C).", file=sys.stderr)
        sys.exit(130)
