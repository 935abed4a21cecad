"""The evaluation CSV of ``examples/evaluate.py``: one row per evaluated checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from torchrl_flowmbpo.trainers.tasks import task_label

__all__ = ["COLUMNS", "EVAL_SEED_OFFSET", "REQUIRED", "append_row", "check_csv", "make_row"]

#: Columns of the evaluation CSV, in order.
COLUMNS = (
    "task",
    "variant",
    "seed",
    "actor_type",
    "world_model_type",
    "integrator",
    "flow_steps",
    "episodes",
    "return_mean",
    "return_std",
    "length_mean",
    "length_std",
    "return_per_step",
    "forward_velocity",
    "time_limit_fraction",
    "stands_still",
    "falls",
    "checkpoint",
    "iteration",
    "frames",
)
#: Offset between the training seed and the eval env's seed (as in examples/pwm_flow.py).
EVAL_SEED_OFFSET = 1000
#: Entries the checkpoint must hold to be evaluated.
REQUIRED = ("modules", "specs", "counters", "variant", "seed")


def make_row(state: dict[str, Any], stats: dict[str, float], checkpoint: Path) -> dict[str, Any]:
    """One CSV row: run identity, model types and the evaluation statistics."""
    specs = state["specs"]
    wm_spec = specs["world_model"]
    is_flow_wm = wm_spec["type"] == "flow"
    # Walking-task labels: empty for a task without a forward velocity (the cartpole).
    walking = "forward_velocity" in stats
    return {
        "task": task_label(specs["env"]["name"], specs["env"].get("kwargs")),
        "variant": state["variant"],
        "seed": state["seed"],
        "actor_type": specs["actor"]["type"],
        "world_model_type": wm_spec["type"],
        "integrator": wm_spec["integrator"] if is_flow_wm else "",
        "flow_steps": wm_spec["flow_steps"] if is_flow_wm else "",
        "episodes": int(stats["episodes"]),
        "return_mean": stats["return_mean"],
        "return_std": stats["return_std"],
        "length_mean": stats["length_mean"],
        "length_std": stats["length_std"],
        "return_per_step": stats["return_per_step"],
        # Locomotion tasks only (m/s); empty for a task without one (the cartpole).
        "forward_velocity": stats.get("forward_velocity", ""),
        "time_limit_fraction": stats["time_limit_fraction"],
        "stands_still": int(stats["stands_still"]) if walking else "",
        "falls": int(stats["falls"]) if walking else "",
        "checkpoint": str(checkpoint),
        "iteration": state["counters"]["iteration"],
        "frames": state["counters"]["frames"],
    }


def check_csv(path: Path) -> None:
    """Raises ``ValueError`` when ``path`` holds rows of other columns (e.g. an older version's)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open(newline="") as f:
        header = next(csv.reader(f), [])
    if tuple(header) != COLUMNS:
        raise ValueError(
            f"{path} has the columns {','.join(header)}, not those of an evaluation CSV "
            f"({','.join(COLUMNS)}): pass --csv with a new file"
        )


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Appends ``row``; writes the header first when the file is new or empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)
