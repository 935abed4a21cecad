"""What a run directory records about where its numbers came from.

Every training run writes two files into its run directory when it starts, once it holds the
directory's lock (:func:`~torchrl_flowmbpo.trainers.run_guard.guarded_run`: a start the lock
refuses, because another process runs there, records nothing):

- ``config.yaml``: the resolved configuration (every key, interpolations resolved): the first
  start's until a start finishes, then the last finished start's (a start that is refused,
  e.g. for resuming with another configuration, never overwrites it);
- ``provenance.json``: the package versions, the host, and one entry per start of the run
  (a resumed run adds an entry): the commit of the source tree, whether that tree had
  uncommitted changes, the command line, and the start and end times (UTC, ISO 8601; the end
  is ``null`` until that start finishes, so a crashed or killed start is visible).

Both are plain text, so copies of a run's logs (e.g. under ``docs/data``) keep them and
:mod:`torchrl_flowmbpo.compare` reads them.

Examples:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> run = Path(tempfile.mkdtemp())
    >>> start_run(run, {"seed": 0, "algo": {"horizon": 16}}, argv=["pwm_flow.py", "seed=0"])
    >>> finish_run(run)
    >>> record = json.loads((run / PROVENANCE_FILE).read_text())
    >>> record["starts"][0]["argv"], record["starts"][0]["finished"] is not None
    (['pwm_flow.py', 'seed=0'], True)
    >>> print((run / CONFIG_FILE).read_text().strip())
    seed: 0
    algo:
      horizon: 16
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = [
    "CONFIG_FILE",
    "PROVENANCE_FILE",
    "finish_run",
    "git_state",
    "package_versions",
    "start_run",
]

CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
#: The distributions whose versions decide a run's numbers.
PACKAGES = ("torchrl_flowmbpo", "torch", "torchrl", "tensordict", "newton", "warp-lang", "mujoco")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (``None`` for a package that is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(source: str | os.PathLike | None = None) -> dict[str, Any]:
    """The commit of the git tree holding ``source`` and whether it has uncommitted changes.

    Args:
        source: a path inside the tree; default: this package's source (an editable install
            from a clone). Both values are ``None`` when it is not in a git tree or git is
            missing (e.g. a wheel install).
    """
    where = Path(source) if source is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_config(run_dir: Path, config: DictConfig | Mapping[str, Any]) -> None:
    resolved = config if isinstance(config, DictConfig) else OmegaConf.create(dict(config))
    _write_atomic(run_dir / CONFIG_FILE, OmegaConf.to_yaml(resolved, resolve=True))


def _read(run_dir: Path) -> dict[str, Any]:
    path = run_dir / PROVENANCE_FILE
    if not path.is_file():
        return {"starts": []}
    return json.loads(path.read_text())


def start_run(
    run_dir: str | os.PathLike,
    config: DictConfig | Mapping[str, Any],
    *,
    argv: Sequence[str] | None = None,
) -> None:
    """Appends this start to the run's provenance; writes ``config`` if the run has none yet.

    Args:
        run_dir: the run directory (created if missing).
        config: the run's configuration; written resolved.
        argv: the command line; default ``sys.argv``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / CONFIG_FILE).is_file():
        _write_config(run_dir, config)
    record = _read(run_dir)
    record.update(
        packages=package_versions(),
        host=socket.gethostname(),
        platform=platform.platform(),
        python=platform.python_version(),
    )
    record["starts"].append(
        {
            **git_state(),
            "argv": list(sys.argv if argv is None else argv),
            "pid": os.getpid(),
            "started": _now(),
            "finished": None,
        }
    )
    _write_atomic(run_dir / PROVENANCE_FILE, json.dumps(record, indent=2) + "\n")


def finish_run(
    run_dir: str | os.PathLike, config: DictConfig | Mapping[str, Any] | None = None
) -> None:
    """Stamps the end time on this process's latest start and writes ``config`` if given (the
    configuration the finished start ran); a no-op without such a start.

    Another process's start keeps its own entry: the stamp goes to this process's entry, found
    by its pid.
    """
    run_dir = Path(run_dir)
    record = _read(run_dir)
    mine = [start for start in record["starts"] if start.get("pid") == os.getpid()]
    if not mine:
        return
    if config is not None:
        _write_config(run_dir, config)
    mine[-1]["finished"] = _now()
    _write_atomic(run_dir / PROVENANCE_FILE, json.dumps(record, indent=2) + "\n")
