"""Variants compared at equal wall-clock: the learning curves read at the frames each variant
reaches in the same time, from frame rates measured under one load.

Learning runs of a sweep run under whatever else shares the machine, so their own
``time/elapsed_s`` do not compare. Short **throughput runs** of each variant, made one after the
other under the same load, give each variant's rate: frames per second over the second half of
the run (``time/elapsed_s`` against frames; past the fixed start-up costs such as PWM's random
frames and world-model warm-up). The budget is the time the ``--reference`` variant needs for
its frames at its rate (or ``--seconds``). Each variant is then read at ``rate x budget``
frames, capped at the last frame its runs share: per seed, its evaluation return interpolated
at that frame, and the IQM over seeds with rliable's 95 % bootstrap CI. Runs are found as
``learning_report.py`` finds them (training logs or ``--copy-data`` copies).

Usage:
    python studies/equal_wallclock.py docs/data/learning_cartpole \\
        --throughput docs/data/benchmarks/cartpole_throughput --task swingup --reference flow_wm
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from learning_report import TIME_METRIC, find_runs, iqm_interval


@dataclass(frozen=True)
class WallclockRow:
    """One variant read at the shared time budget."""

    variant: str
    frames_per_s: float
    frames: float
    capped: bool
    per_seed: tuple[float, ...]
    iqm: float
    ci: tuple[float, float]


def frame_rate(steps: np.ndarray, seconds: np.ndarray) -> float:
    """Frames per second over the second half of a run's ``time/elapsed_s`` log."""
    half = len(steps) // 2
    if len(steps) < 2 or seconds[-1] <= seconds[half]:
        raise ValueError("a throughput run needs at least two timed points, increasing")
    return float((steps[-1] - steps[half]) / (seconds[-1] - seconds[half]))


def compare(
    learning: Sequence[Path],
    throughput: Sequence[Path],
    task: str,
    *,
    reference: str | None = None,
    seconds: float | None = None,
    metric: str = "eval/return",
    reps: int = 10_000,
    seed: int = 0,
) -> tuple[float, list[WallclockRow]]:
    """The budget in seconds and one row per variant with both learning and throughput runs.

    Raises:
        ValueError: neither or both of ``reference`` and ``seconds``, a reference without
            runs, or no variant with both kinds of runs.
    """
    if (reference is None) == (seconds is None):
        raise ValueError("give one of --reference VARIANT or --seconds S")
    rates = {}
    for run in find_runs(throughput):
        timed = run.read(TIME_METRIC)
        if run.task == task and timed is not None:
            rates[run.variant] = frame_rate(*timed)
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for run in find_runs(learning):
        read = run.read(metric)
        if run.task == task and read is not None and run.variant in rates:
            curves.setdefault(run.variant, []).append(read)
    if not curves:
        raise ValueError(f"no variant of task {task!r} has both learning and throughput runs")
    if reference is not None:
        if reference not in curves:
            raise ValueError(f"reference {reference!r} has no runs; have: {sorted(curves)}")
        budget = min(float(x[-1]) for x, _ in curves[reference]) / rates[reference]
    else:
        budget = float(seconds)
    rows = []
    for variant in sorted(curves):
        end = min(float(x[-1]) for x, _ in curves[variant])
        frames = min(rates[variant] * budget, end)
        values = np.array([np.interp(frames, x, y) for x, y in curves[variant]])
        iqm, low, high = iqm_interval(values, reps, seed)
        rows.append(
            WallclockRow(
                variant,
                rates[variant],
                frames,
                rates[variant] * budget > end,
                tuple(float(v) for v in values),
                iqm,
                (low, high),
            )
        )
    return budget, rows


def format_table(task: str, budget: float, rows: Sequence[WallclockRow]) -> str:
    """The rows as a Markdown table."""
    lines = [
        f"{task}, {budget / 60:.1f} min each:",
        "",
        "| variant | frames/s | frames read | per seed | IQM [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        frames = f"{r.frames:,.0f}" + (" (its last)" if r.capped else "")
        seeds = ", ".join(f"{v:,.0f}" for v in r.per_seed)
        lines.append(
            f"| {r.variant} | {r.frames_per_s:,.0f} | {frames} | {seeds} | "
            f"{r.iqm:,.0f} [{r.ci[0]:,.0f}, {r.ci[1]:,.0f}] |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> tuple[float, list[WallclockRow]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="folders of the learning runs")
    parser.add_argument("--throughput", nargs="+", type=Path, required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--reference", help="the budget: this variant's frames at its rate")
    parser.add_argument("--seconds", type=float, help="the budget in seconds")
    parser.add_argument("--metric", default="eval/return")
    args = parser.parse_args(argv)
    try:
        budget, rows = compare(
            args.run_dirs,
            args.throughput,
            args.task,
            reference=args.reference,
            seconds=args.seconds,
            metric=args.metric,
        )
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    print(format_table(args.task, budget, rows))
    return budget, rows


if __name__ == "__main__":
    main()
