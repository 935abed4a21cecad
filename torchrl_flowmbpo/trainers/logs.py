"""A run's logs: the TorchRL logger, the run's log file, episode statistics, the training clock
and the metrics CSV of pretraining; a resumed run drops the rows it will log again."""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from torchrl.record.loggers import get_logger

from torchrl_flowmbpo.trainers.tasks import task_label

__all__ = [
    "MetricsCSV",
    "RunClock",
    "drop_logged_after",
    "episode_metrics",
    "log_to_file",
    "make_logger",
    "report",
]

_LOG = logging.getLogger("torchrl_flowmbpo.run")


def log_to_file(message: str) -> None:
    """Writes ``message`` to the run's log files only (Hydra's ``<job>.log``), not the console."""
    record = _LOG.makeRecord(_LOG.name, logging.INFO, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def report(message: str) -> None:
    """Prints ``message`` and writes it to the run's log file too."""
    print(message, flush=True)
    log_to_file(message)


def episode_metrics(data: TensorDictBase) -> dict[str, float]:
    """``train/*`` statistics of the episodes that ended in a collected batch (raw rewards)."""
    done = data.get(("next", "done")).squeeze(-1)
    if not done.any():
        return {}
    returns = data.get(("next", "episode_reward"))[done]
    lengths = data.get(("next", "step_count"))[done].float()
    return {
        "train/return": float(returns.mean()),
        "train/episode_length": float(lengths.mean()),
        "train/return_per_step": float(returns.sum() / lengths.sum()),
        "train/episodes": float(done.sum()),
    }


def make_logger(cfg: DictConfig, run_dir: str):
    """TorchRL logger (CSV by default; wandb offline unless asked), created once per run."""
    if cfg.logger.backend == "none":
        return None
    exp_name = f"{cfg.variant}_{task_label(cfg.env.name, cfg.env.kwargs)}_seed{cfg.seed}"
    kwargs = {}
    if cfg.logger.backend == "wandb":
        kwargs["wandb_kwargs"] = {
            "mode": cfg.logger.mode,
            "project": cfg.logger.project,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "dir": run_dir,
        }
    return get_logger(
        cfg.logger.backend, logger_name=f"{run_dir}/logs", experiment_name=exp_name, **kwargs
    )


def drop_logged_after(log_dir: str | os.PathLike, step: int) -> int:
    """Removes the CSV scalar rows logged after ``step`` under ``log_dir``; returns how many.

    A run stopped between two checkpoints has logged rows that its resume, which restarts
    from the last checkpoint, logs again; kept, the curves would hold both (out of step
    order). TorchRL's CSV logger writes ``<experiment>/scalars/<name>.csv`` files of
    ``step,value`` lines; each changed file is replaced atomically. A line cut short by the stop
    (no newline, or no number) goes too: the next row would be appended to it. Other files are
    left.
    """

    def logged_step(line: str) -> float:
        try:
            return float(line.split(",", 1)[0]) if line.endswith("\n") else math.inf
        except ValueError:
            return math.inf

    dropped = 0
    for path in Path(log_dir).rglob("*.csv"):
        if "scalars" not in path.parts:
            continue
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if logged_step(line) <= step]
        if len(kept) < len(lines):
            partial = path.with_name(path.name + ".partial")
            partial.write_text("".join(kept))
            os.replace(partial, path)
            dropped += len(lines) - len(kept)
    return dropped


class RunClock:
    """Training wall-clock of a run in ``counters["elapsed_s"]``, continued across resumes.

    Starts when built (set-up excluded). Call :meth:`tick` before logging and before every
    checkpoint, so a resumed run starts from the time of its checkpoint, evaluations included,
    and its logged clock never steps back.

    Examples:
        >>> counters = {"elapsed_s": 12.0}
        >>> clock = RunClock(counters)
        >>> clock.tick() >= 12.0 and counters["elapsed_s"] >= 12.0
        True
    """

    def __init__(self, counters: dict[str, Any]) -> None:
        self.counters = counters
        self.before = counters["elapsed_s"]  # wall-clock of earlier sessions of a resumed run
        self.start = time.perf_counter()

    def session_s(self) -> float:
        """Seconds since this session's clock started."""
        return time.perf_counter() - self.start

    def tick(self) -> float:
        """Updates and returns the run's total training seconds."""
        self.counters["elapsed_s"] = self.before + self.session_s()
        return self.counters["elapsed_s"]


class MetricsCSV:
    """``step``-keyed rows appended to a CSV; a resume drops the rows after its step.

    The columns are the first row's; later rows leave out keys they lack (empty cells).

    Examples:
        >>> import tempfile
        >>> log = MetricsCSV(Path(tempfile.mkdtemp()) / "metrics.csv")
        >>> log.append({"step": 0, "loss": 1.0}); log.append({"step": 10, "loss": 0.5})
        >>> log.drop_after(5); [row["step"] for row in log.rows()]
        ['0']
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def rows(self) -> list[dict[str, str]]:
        """The rows written so far."""
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as file:
            return list(csv.DictReader(file))

    def drop_after(self, step: int) -> None:
        """Removes the rows logged after ``step`` (atomically)."""
        rows = self.rows()
        kept = [row for row in rows if float(row["step"]) <= step]
        if len(kept) == len(rows):
            return
        partial = self.path.with_name(self.path.name + ".partial")
        with partial.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(kept)
        os.replace(partial, self.path)

    def append(self, row: dict[str, float]) -> None:
        """Appends one row (a header first when the file is new)."""
        new = not self.path.is_file()
        if new:
            fields = list(row)
        else:
            with self.path.open(newline="") as file:
                fields = next(csv.reader(file))
        clean = {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        with self.path.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(clean)
