"""A run's closing report: the learning-curve plot (real env returns vs env steps) with the
task's reference returns, and the summary lines."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from torchrl_flowmbpo.trainers.evaluation import format_return
from torchrl_flowmbpo.trainers.logs import report

__all__ = [
    "REFERENCES_CSV",
    "curve_title",
    "learning_curve_figure",
    "plot_learning_curve",
    "print_summary",
    "task_references",
]

#: Reference returns (zero action, uniform random actions, scripted controllers) per task and
#: keyword arguments, one full episode per world, written by
#: ``python studies/task_references.py --tasks cartpole --num-envs 32 --seed 0 --csv F`` (the
#: swing-up) and ``... --num-envs 64 --seed 0 --kwargs '{"start_angle": 0.0}' --csv F`` (balance).
REFERENCES_CSV = Path(__file__).resolve().parents[2] / "docs" / "data" / "task_references.csv"

#: Line styles of the reference behaviours (others: dotted grey).
REFERENCE_STYLES = {"zero": ("tab:red", "--"), "random": ("tab:grey", "--")}
REFERENCE_NAMES = {
    "zero": "zero action",
    "random": "uniform random actions",
    "pd": "scripted PD balancer",
    "trot": "scripted trot",
}


def plot_learning_curve(
    history: dict[str, list[list[float]]],
    path: Path,
    *,
    title: str,
    references: Mapping[str, float] | None = None,
) -> Path:
    """Plots training-episode and evaluation returns against env frames and saves a PNG (see
    :func:`learning_curve_figure`)."""
    fig = learning_curve_figure(history, title=title, references=references)
    fig.savefig(path, dpi=100)
    return path


def learning_curve_figure(
    history: dict[str, list[list[float]]],
    *,
    title: str,
    references: Mapping[str, float] | None = None,
) -> Figure:
    """The learning-curve figure: training-episode and evaluation returns against env frames.

    ``references`` (``{behaviour: return}``, e.g. zero action, uniform random actions and a
    scripted controller) become labelled horizontal lines: a curve below zero action's line has
    learned nothing.
    """
    # A Figure without pyplot: no global backend or figure registry is touched.
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for key, style in (("train/return", "-"), ("eval/return", "o-")):
        points = history.get(key, [])
        if points:
            frames, values = zip(*points, strict=True)
            ax.plot(frames, values, style, label=key)
    for behaviour, value in (references or {}).items():
        colour, line = REFERENCE_STYLES.get(behaviour, ("tab:green", ":"))
        name = REFERENCE_NAMES.get(behaviour, f"scripted {behaviour}")
        ax.axhline(value, color=colour, linestyle=line, linewidth=1, label=f"{name} ({value:,.0f})")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return (raw env reward)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def curve_title(variant: str, task: str, seed: int) -> str:
    """``"flow_wm on cartpole_balance, seed 0"``: what ran."""
    return f"{variant} on {task}, seed {seed}"


def task_references(
    name: str, kwargs: Mapping[str, Any] | None = None, path: Path = REFERENCES_CSV
) -> dict[str, float]:
    """``{behaviour: mean return}`` measured on exactly this task and keyword arguments (none
    when ``path`` has no such rows, e.g. for a changed ``episode_length``)."""
    if not path.is_file():
        return {}
    wanted = {k: float(v) if isinstance(v, int | float) else v for k, v in (kwargs or {}).items()}
    out = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            stored = {
                k: float(v) if isinstance(v, int | float) else v
                for k, v in json.loads(row["kwargs"]).items()
            }
            if row["task"] == name and stored == wanted:
                out[row["behaviour"]] = float(row["return_mean"])
    return out


def print_summary(eval_stats: dict[str, float], checkpoint: Path, curve: Path) -> None:
    """The closing lines (printed and written to the run log): evaluation result with its
    standard error, checkpoint and learning-curve paths."""
    velocity = eval_stats.get("forward_velocity")
    report(
        f"Evaluation ({int(eval_stats['episodes'])} episodes, deterministic): "
        f"{format_return(eval_stats)}, std {eval_stats['return_std']:.1f}, "
        f"length {eval_stats['length_mean']:.0f}, "
        f"return/step {eval_stats['return_per_step']:.2f}"
        + ("" if velocity is None else f", forward velocity {velocity:.2f} m/s")
    )
    report(f"Checkpoint: {checkpoint}")
    report(f"Learning curve: {curve}")
