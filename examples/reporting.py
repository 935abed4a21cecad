"""Learning-curve plot of a run (real env returns vs env steps)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

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
    plt.close(fig)
    return path


def learning_curve_figure(
    history: dict[str, list[list[float]]],
    *,
    title: str,
    references: Mapping[str, float] | None = None,
) -> plt.Figure:
    """The learning-curve figure: training-episode and evaluation returns against env frames.

    ``references`` (``{behaviour: return}``, e.g. zero action, uniform random actions and a
    scripted controller) become labelled horizontal lines: a curve below zero action's line has
    learned nothing.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
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
