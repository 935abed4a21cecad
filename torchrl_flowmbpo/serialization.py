"""Weights-only loading of ``.pt`` files with a one-line reason when a file is refused.

Files are only ever loaded with ``torch.load(..., weights_only=True)``: tensors and plain
containers, never code. When torch refuses a file, its message spans several lines and advises
loading it unsafely; :func:`load_weights_only` raises :class:`UnreadableFileError` with one line
instead, naming the file and what was wrong (for a file holding code or objects, the global
that weights-only loading blocked).

Examples:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "x.pt"
    >>> _ = path.write_text("hello")
    >>> try:
    ...     load_weights_only(path)
    ... except UnreadableFileError as err:
    ...     print(str(err).replace(str(path), "x.pt"))
    x.pt is not a torch file (its bytes are not a torch.save archive or pickle).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["UnreadableFileError", "blocked_global_reason", "load_weights_only"]

#: Both of torch's phrasings: "Unsupported global: GLOBAL x", "unsupported GLOBAL x whose ...".
_BLOCKED_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL (\S+)", re.IGNORECASE)
#: What ``torch.save`` files start with: a zip archive, or a pickle's protocol opcode.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = 0x80


class UnreadableFileError(ValueError):
    """A file that weights-only loading cannot read; the message is one line."""


def blocked_global_reason(err: BaseException) -> str | None:
    """The one-line reason for a weights-only load that refused a global, else None.

    Examples:
        >>> blocked_global_reason(RuntimeError("Unsupported global: GLOBAL posix.system was"))
        'holds code or objects that weights-only loading refuses (blocked global: posix.system)'
        >>> blocked_global_reason(RuntimeError("truncated")) is None
        True
    """
    blocked = _BLOCKED_GLOBAL.search(str(err))
    if blocked is None:
        return None
    return (
        "holds code or objects that weights-only loading refuses "
        f"(blocked global: {blocked.group(1)})"
    )


def _reason(path: Path, err: BaseException) -> str:
    blocked = blocked_global_reason(err)
    if blocked:
        return f"{blocked}; it is not loaded"
    with path.open("rb") as file:
        head = file.read(4)
    if not head:
        return "is empty"
    if head.startswith(_ZIP_MAGIC):
        return "is truncated or corrupt (a torch.save archive that cannot be read)"
    if head[0] != _PICKLE_PROTOCOL:
        return "is not a torch file (its bytes are not a torch.save archive or pickle)"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"cannot be read: {first}"


def load_weights_only(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, refusals as :class:`UnreadableFileError`.

    Args:
        path: the file.
        map_location: passed to :func:`torch.load`.

    Raises:
        UnreadableFileError: the file is missing, empty, truncated, not a torch file, or holds
            objects that weights-only loading refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(f"{path} does not exist or is not a file.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise UnreadableFileError(f"{path} {_reason(path, err)}.") from err
