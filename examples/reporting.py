"""Learning-curve plot of a run (real env returns vs env steps)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_learning_curve(history: dict[str, list[list[float]]], path: Path, *, title: str) -> Path:
    """Plots training-episode and evaluation returns against env frames and saves a PNG."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("train/return", "-"), ("eval/return", "o-")):
        points = history.get(key, [])
        if points:
            frames, values = zip(*points, strict=True)
            ax.plot(frames, values, style, label=key)
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return (raw env reward)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
