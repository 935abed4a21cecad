"""Learning results of many training runs: curves and a final-return table, with rliable.

Reads the TorchRL CSV logs of ``examples/pwm_flow.py`` / ``examples/sac_baseline.py``
(``<run dir>/logs/<variant>_<task>_seed<k>/scalars/<namespace>/<metric>.csv``, rows
``step,value``, step = env frames), groups the runs by (task, variant) from that folder name,
and writes into ``--out``: ``<task>_steps.png`` and ``<task>_wallclock.png`` (the metric against
env frames and ``time/elapsed_s``, one line per variant: the mean over seeds with a 95 %
bootstrap CI band; no wall-clock figure, with a warning, when no run of the task logs the time),
and ``learning_table.csv`` / ``.md`` (the definitions are in the Markdown file). A group's
seeds stop at its shortest run, with a warning. ``--copy-data DIR`` copies each run's few metric
CSVs to ``DIR/<task>/<variant>/seed<k>/<namespace>/<metric>.csv`` for committing; that layout is
read back too, so the report can be rebuilt from committed data.

Usage:
    python studies/learning_report.py runs/learning --out docs/results_generated
    python studies/learning_report.py runs/learning/ant --copy-data docs/data
    python studies/learning_report.py docs/data --metric train/return --last-k 5
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from rliable import library as rly
from rliable import metrics as rly_metrics

from torchrl_flowmbpo.compare import ConfigSourceError, differing_across, load_config
from torchrl_flowmbpo.provenance import CONFIG_FILE, PROVENANCE_FILE

# A task has no "_" except the configured ones of torchrl_flowmbpo.trainers.tasks.TASK_VARIANTS
# ("cartpole_balance"); the variant ("flow_wm", "full_flow") may have several.
LOG_NAME = re.compile(r"^(?P<variant>.+?)_(?P<task>cartpole_balance|[^_]+)_seed(?P<seed>\d+)$")
SEED_DIR = re.compile(r"^seed(?P<seed>\d+)$")
TIME_METRIC = "time/elapsed_s"
# The model-exploitation diagnostics summarised by diagnostics_table.py (docs/metrics.md).
DIAGNOSTIC_METRICS = {
    "diagnostics/reward_corr_mean": "reward corr over H",
    "diagnostics/horizon_corr": "H-step return corr",
    "diagnostics/latent_error_last": "latent error at H",
    "diagnostics/termination_ratio": "termination pred / obs (teacher-forced)",
    "diagnostics/horizon_imagined_survival": "survival over H, imagined",
    "diagnostics/horizon_real_survival": "survival over H, real",
    "diagnostics/critic_corr": "critic corr",
    "diagnostics/critic_bias": "critic bias",
    "diagnostics/exploitation_gap_per_step": "exploitation gap / step",
    "diagnostics/exact_gradient_grad_cos_mean": "grad cos vs exact",
    "diagnostics/exact_gradient_grad_norm_ratio": "grad norm / exact",
}
# What --copy-data keeps besides the reported metric and its episode length (the forward
# velocity tells walking from standing on the locomotion tasks).
COPIED_METRICS = [
    TIME_METRIC,
    *(f"{ns}/{name}" for ns in ("train", "eval") for name in ("return", "episode_length")),
    "eval/forward_velocity",
    *DIAGNOSTIC_METRICS,
]
COLLAPSE_RULE = (
    "a seed is **collapsed** when final_s < base + f · (best − base), with base = min over the "
    "group's seeds of the initial value (first logged point), best = max over the seeds of the "
    "final value and f = {fraction} (`--collapse-fraction`); measuring from base rather than 0 "
    "keeps the rule meaningful for negative returns. No seed is collapsed when best ≤ base "
    "(nothing was learnt to collapse from)"
)


@dataclass(frozen=True)
class Run:
    """One training run: task, variant, seed and the folder of its ``<namespace>/<metric>.csv``."""

    task: str
    variant: str
    seed: int
    scalars: Path

    def read(self, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Steps and values of ``metric``, or None when the run has not logged it."""
        path = self.scalars / f"{metric}.csv"
        if not path.is_file():
            return None
        steps, values = read_scalar(path)
        return (steps, values) if steps.size else None


@dataclass(frozen=True)
class Curve:
    """Mean over ``seeds`` aligned curves with its 95 % bootstrap CI band, each ``[P]``."""

    seeds: int
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass(frozen=True)
class GroupResult:
    """Statistics of one (task, variant) group: the table's columns, then the curves."""

    task: str
    variant: str
    seeds: int
    frames: int
    final_iqm: float
    ci_low: float
    ci_high: float
    final_episode_length: float
    collapsed: int
    steps: Curve
    wallclock: Curve | None


def episode_length_metric(metric: str) -> str:
    """The episode-length metric logged next to ``metric`` (``eval/return`` -> ``eval/...``)."""
    return f"{metric.rsplit('/', 1)[0]}/episode_length"


def read_scalar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads a TorchRL CSV scalar file (rows ``step,value``, no header) as float arrays.

    A resumed run logs again the steps done after its last checkpoint: a row whose step is not
    above the previous one replaces every earlier row from that step on.
    """
    if path.stat().st_size == 0:  # created, nothing logged yet
        return np.empty(0), np.empty(0)
    steps, values = np.loadtxt(path, delimiter=",", ndmin=2).T
    # A row survives when every later row has a larger step.
    later_min = np.minimum.accumulate(steps[::-1])[::-1]
    keep = np.append(steps[:-1] < later_min[1:], True)
    return steps[keep], values[keep]


def find_runs(roots: Sequence[Path]) -> list[Run]:
    """Finds every run below the given folders, sorted by (task, variant, seed).

    Two layouts are recognised: ``.../logs/<variant>_<task>_seed<k>/scalars/`` as training
    writes it and ``.../<task>/<variant>/seed<k>/<namespace>/*.csv`` as :func:`copy_run_data`
    writes it. The same run reached through two roots counts once.

    Raises:
        FileNotFoundError: a root does not exist.
        ValueError: two different folders hold the same (task, variant, seed).
    """
    found: dict[tuple[str, str, int], Run] = {}

    def add(task: str, variant: str, seed: str, scalars: Path) -> None:
        run = Run(task, variant, int(seed), scalars.resolve())
        known = found.setdefault((task, variant, run.seed), run)
        if known.scalars != run.scalars:
            raise ValueError(
                f"two runs for task {task!r}, variant {variant!r}, seed {seed}: "
                f"{known.scalars} and {run.scalars}; pass only one of them"
            )

    for root in map(Path, roots):
        if not root.is_dir():
            raise FileNotFoundError(f"run directory {root} does not exist")
        for scalars in root.rglob("scalars"):
            match = LOG_NAME.match(scalars.parent.name)
            if match and scalars.parent.parent.name == "logs":
                add(match["task"], match["variant"], match["seed"], scalars)
            elif scalars.parent.parent.name == "logs":
                warnings.warn(f"{scalars.parent}: not <variant>_<task>_seed<k>", stacklevel=2)
        for folder in (path.resolve() for path in [root, *root.rglob("seed*")]):
            match = SEED_DIR.match(folder.name)
            if match and any(folder.glob("*/*.csv")):
                add(folder.parent.parent.name, folder.parent.name, match["seed"], folder)
    return sorted(found.values(), key=lambda run: (run.task, run.variant, run.seed))


def run_dir_of(run: Run) -> Path:
    """The folder holding a run's configuration: its run directory, or its copied seed folder."""
    return run.scalars.parents[2] if run.scalars.name == "scalars" else run.scalars


def config_differences(group: Sequence[Run]) -> dict[str, dict[str, object]]:
    """Resolved config keys other than the seed that differ among a group's runs
    (``{key: {"seed<k>": value}}``); runs without a recorded config are not compared."""
    configs = {}
    for run in group:
        try:
            configs[f"seed{run.seed}"] = load_config(str(run_dir_of(run)))
        except ConfigSourceError:
            continue
    return differing_across(configs)


def copy_run_data(runs: Sequence[Run], dest: Path, metrics: Sequence[str]) -> list[Path]:
    """Copies the runs' CSVs of ``metrics`` to ``dest/<task>/<variant>/seed<k>/<metric>.csv``,
    with the run's ``config.yaml`` (or Hydra's) and ``provenance.json`` beside them.

    Metrics a run has not logged are left out. Returns the written paths.
    """
    written = []
    for run in runs:
        folder = dest / run.task / run.variant / f"seed{run.seed}"
        origin = run_dir_of(run)
        for name, source in (
            (CONFIG_FILE, origin / CONFIG_FILE),
            (CONFIG_FILE, origin / ".hydra" / "config.yaml"),
            (PROVENANCE_FILE, origin / PROVENANCE_FILE),
        ):
            target = folder / name
            if source.is_file() and not target.exists() and source.resolve() != target.resolve():
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                written.append(target)
        for metric in dict.fromkeys(metrics):
            source = run.scalars / f"{metric}.csv"
            target = dest / run.task / run.variant / f"seed{run.seed}" / f"{metric}.csv"
            if not source.is_file() or source.resolve() == target.resolve():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(target)
    return written


def align(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Puts N curves ``(x, y)`` (x increasing) on one grid ``[P]`` by linear interpolation.

    The grid is the union of the curves' x values from the latest start to the earliest end:
    x values shared by all curves (the usual evaluation steps) are kept exactly, and no curve
    is extrapolated. Returns the grid and the values ``[N, P]``; raises ValueError when the
    curves do not overlap.
    """
    start = max(x[0] for x, _ in curves)
    end = min(x[-1] for x, _ in curves)
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    grid = grid[(grid >= start) & (grid <= end)]
    if grid.size == 0:
        raise ValueError(f"the curves do not overlap (latest start {start}, earliest end {end})")
    return grid, np.stack([np.interp(grid, x, y) for x, y in curves])


def final_value(x: np.ndarray, y: np.ndarray, end: float, last_k: int) -> float:
    """Mean of the last ``last_k`` points of ``y`` at or before ``x = end``."""
    return float(y[x <= end][-last_k:].mean())


def count_collapsed(initial: np.ndarray, final: np.ndarray, fraction: float) -> int:
    """Counts the seeds whose final value fell below ``fraction`` of the best seed's progress.

    With ``base = min(initial)`` (the group's worst initial value) and ``best = max(final)``,
    seed s is collapsed when ``final[s] < base + fraction * (best - base)``. Measuring from
    ``base`` rather than 0 keeps the rule meaningful for negative returns. When
    ``best <= base`` nothing was learnt to collapse from and the count is 0. ``initial``
    (first logged value) and ``final`` are ``[seeds]``.
    """
    base, best = float(initial.min()), float(final.max())
    if best <= base:
        return 0
    return int((final < base + fraction * (best - base)).sum())


def bootstrap(
    scores: np.ndarray, func: Callable[[np.ndarray], np.ndarray], reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """rliable's point estimate ``[K]`` and 95 % percentile CI ``[2, K]`` of ``func``.

    ``scores`` is ``[seeds, M]``; ``func`` maps it to ``[K]``; each column is resampled over
    seeds independently (``reps`` resamples, seeded by ``seed``).
    """
    # rliable's StratifiedBootstrap draws its run indices from NumPy's global generator (its
    # random_state argument does not reach them): seed that one and restore it afterwards.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        point, interval = rly.get_interval_estimates({"runs": scores}, func, reps=reps)
    finally:
        np.random.set_state(state)
    return point["runs"], interval["runs"]


def iqm_interval(values: np.ndarray, reps: int, seed: int) -> tuple[float, float, float]:
    """rliable's IQM of per-seed ``values`` ``[seeds]`` and its 95 % bootstrap CI bounds."""
    (iqm,), ((low,), (high,)) = bootstrap(
        values[:, None], lambda s: np.array([rly_metrics.aggregate_iqm(s)]), reps, seed
    )
    return float(iqm), float(low), float(high)


def mean_curve(curves: Sequence[tuple[np.ndarray, np.ndarray]], reps: int, seed: int) -> Curve:
    """Aligned mean of per-seed curves with a pointwise bootstrap CI of the mean."""
    grid, values = align(curves)
    mean, interval = bootstrap(values, lambda s: s.mean(axis=0), reps, seed)
    return Curve(len(curves), grid, mean, interval[0], interval[1])


def wallclock_curves(
    runs: Sequence[Run], curves: Sequence[tuple[np.ndarray, np.ndarray]], label: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The curves against ``time/elapsed_s`` (interpolated at their steps) of the runs with it.

    Runs resumed before the scripts counted the evaluation of the checkpointed iteration in the
    checkpoint's clock step back by that evaluation's seconds at each resume: the clock is made
    monotone (running maximum), with a warning that names the largest step back.
    """
    timed = []
    for run, (x, y) in zip(runs, curves, strict=True):
        time = run.read(TIME_METRIC)
        if time is None:
            warnings.warn(f"{label} seed{run.seed}: {TIME_METRIC} missing", stacklevel=2)
            continue
        steps, seconds = time
        monotone = np.maximum.accumulate(seconds)
        step_back = float((monotone - seconds).max())
        if step_back > 0:
            warnings.warn(
                f"{label} seed{run.seed}: {TIME_METRIC} steps back by up to {step_back:.1f} s "
                "(a resume); using its running maximum",
                stacklevel=2,
            )
        timed.append((np.interp(x, steps, monotone), y))
    return timed


def analyse_group(
    runs: Sequence[Run], metric: str, *, last_k: int, collapse_fraction: float, reps: int, seed: int
) -> GroupResult | None:
    """Aligned curves and final statistics of one (task, variant); None when none has ``metric``."""
    label = f"{runs[0].task}/{runs[0].variant}"
    logged = [(run, run.read(metric)) for run in runs]
    for run, curve in logged:
        if curve is None:
            warnings.warn(f"{label} seed{run.seed}: no {metric}; left out", stacklevel=2)
    runs = [run for run, curve in logged if curve is not None]
    curves = [curve for _, curve in logged if curve is not None]
    if not runs:
        return None
    ends, starts = [x[-1] for x, _ in curves], [x[0] for x, _ in curves]
    end, shortest = min(ends), runs[int(np.argmin(ends))].seed
    if max(starts) > end:
        raise ValueError(
            f"{label}: seed{runs[int(np.argmax(starts))].seed} starts at {max(starts):,.0f} "
            f"frames, after seed{shortest} ends ({end:,.0f}); pass only runs of one sweep"
        )
    if max(ends) > end:
        warnings.warn(
            f"{label}: seeds run to {max(ends):,.0f} frames but seed{shortest} only to "
            f"{end:,.0f}; curves and final values stop there",
            stacklevel=2,
        )
    steps = mean_curve(curves, reps, seed)
    curves = [(x[x <= end], y[x <= end]) for x, y in curves]
    final = np.array([final_value(x, y, end, last_k) for x, y in curves])
    initial = np.array([y[0] for _, y in curves])
    iqm, low, high = iqm_interval(final, reps, seed)
    length_metric = episode_length_metric(metric)
    lengths = [run.read(length_metric) for run in runs]
    if any(length is None for length in lengths):
        warnings.warn(f"{label}: {length_metric} missing; its column is NaN", stacklevel=2)
    lengths = [final_value(*length, end, last_k) if length else np.nan for length in lengths]
    timed = wallclock_curves(runs, curves, label)
    try:
        wallclock = mean_curve(timed, reps, seed) if timed else None
    except ValueError as err:  # seeds run on a busy machine may not overlap in time
        warnings.warn(f"{label}: no wall-clock mean: {err}", stacklevel=2)
        wallclock = None
    return GroupResult(
        task=runs[0].task,
        variant=runs[0].variant,
        seeds=len(runs),
        frames=int(end),
        final_iqm=iqm,
        ci_low=low,
        ci_high=high,
        final_episode_length=float(np.mean(lengths)),
        collapsed=count_collapsed(initial, final, collapse_fraction),
        steps=steps,
        wallclock=wallclock,
    )


def series_label(variant: str, seeds: int) -> str:
    """Legend entry of one variant's curve, e.g. ``"sac (1 seed)"``, ``"baseline (3 seeds)"``."""
    return f"{variant} ({seeds} seed{'' if seeds == 1 else 's'})"


def plot_task(
    results: Sequence[GroupResult], path: Path, metric: str, *, wallclock: bool
) -> Path | None:
    """One line per variant (mean over seeds, 95 % CI band) against env frames or hours.

    Returns the written PNG, or None (with a warning) for a wall-clock plot without time data.
    """
    if wallclock and all(result.wallclock is None for result in results):
        warnings.warn(f"{results[0].task}: no {TIME_METRIC}; wall-clock plot skipped", stacklevel=2)
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for result in results:
        curve = result.wallclock if wallclock else result.steps
        if curve is None:
            continue
        x = curve.x / 3600 if wallclock else curve.x
        (line,) = ax.plot(x, curve.mean, label=series_label(result.variant, curve.seeds))
        ax.fill_between(x, curve.low, curve.high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("wall-clock (h)" if wallclock else "env steps")
    ax.set_ylabel(metric)
    ax.set_title(f"{results[0].task}: mean over seeds, 95 % bootstrap CI")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_table(
    results: Sequence[GroupResult],
    out: Path,
    *,
    metric: str,
    last_k: int,
    collapse_fraction: float,
    reps: int,
    seed: int,
    command: str,
) -> tuple[Path, Path]:
    """Writes ``learning_table.csv`` and ``learning_table.md`` (with the definitions) to ``out``."""
    columns = [field.name for field in fields(GroupResult) if "Curve" not in field.type]
    csv_path, md_path = out / "learning_table.csv", out / "learning_table.md"
    with csv_path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows([getattr(result, column) for column in columns] for result in results)
    lines = [
        "# Learning results",
        "",
        f"Generated by `{command}`.",
        "",
        f"- Metric `{metric}`. Each (task, variant) stops at its shortest seed (**frames**); a "
        f"seed's **final** value is the mean of its last {last_k} points at or before that.",
        "- **Final IQM**: interquartile mean over seeds (rliable `metrics.aggregate_iqm`, the "
        "25 % trimmed mean; the plain mean below 4 seeds), with its 95 % percentile bootstrap "
        f"CI over seeds (rliable `get_interval_estimates`, {reps:,} resamples, seed {seed}).",
        "- **Episode length**: mean over seeds of the final value of the matching "
        "`episode_length` metric.",
        f"- **Collapsed**: {COLLAPSE_RULE.format(fraction=collapse_fraction)}.",
        "",
        "| task | variant | seeds | frames | final IQM [95 % CI] | episode length | collapsed |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.task} | {r.variant} | {r.seeds} | {r.frames:,.0f} | {r.final_iqm:.1f} "
        f"[{r.ci_low:.1f}, {r.ci_high:.1f}] | {r.final_episode_length:.0f} | {r.collapsed} |"
        for r in results
    ]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="folders searched for runs")
    parser.add_argument("--out", type=Path, default=Path("docs/results_generated"))
    parser.add_argument("--metric", default="eval/return", help="<namespace>/<name> to report")
    parser.add_argument("--collapse-fraction", type=float, default=0.1, help="f of the rule")
    parser.add_argument("--last-k", type=int, default=3, help="points averaged as final")
    parser.add_argument("--reps", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--copy-data", type=Path, help="also copy the metric CSVs here")
    args = parser.parse_args(argv)
    if not 0 <= args.collapse_fraction <= 1:
        parser.error(f"--collapse-fraction {args.collapse_fraction}: must be in [0, 1]")
    if args.last_k < 1 or args.reps < 1:
        parser.error(f"--last-k {args.last_k} and --reps {args.reps}: must both be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> list[GroupResult]:
    """Runs the report; returns the per-group results (for tests and notebooks)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        runs = find_runs(args.run_dirs)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"Cannot report: {err}")
    if not runs:
        sys.exit("No runs: expected .../logs/<variant>_<task>_seed<k>/scalars/ folders.")
    if args.copy_data:
        metrics = [*COPIED_METRICS, args.metric, episode_length_metric(args.metric)]
        copied = copy_run_data(runs, args.copy_data, metrics)
        print(f"Copied {len(copied)} metric files to {args.copy_data}")
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.task, run.variant].append(run)
    for (task, variant), group in groups.items():
        if differing := config_differences(group):
            keys = "; ".join(f"{key} {values}" for key, values in differing.items())
            sys.exit(
                f"Cannot report: the {variant!r} runs on {task!r} differ beyond the seed: {keys}"
            )
    options = {"last_k": args.last_k, "collapse_fraction": args.collapse_fraction}
    options.update(reps=args.reps, seed=args.seed)
    try:
        results = [analyse_group(group, args.metric, **options) for group in groups.values()]
    except ValueError as err:
        sys.exit(f"Cannot report: {err}")
    results = [result for result in results if result is not None]
    if not results:
        sys.exit(f"No run logged {args.metric}.")
    args.out.mkdir(parents=True, exist_ok=True)
    for task in sorted({r.task for r in results}):
        task_results = [r for r in results if r.task == task]
        for name in ("steps", "wallclock"):
            path = args.out / f"{task}_{name}.png"
            if plot_task(task_results, path, args.metric, wallclock=name == "wallclock"):
                print(path)
    command = " ".join(["python studies/learning_report.py", *argv])
    _, md_path = write_table(results, args.out, metric=args.metric, command=command, **options)
    print(md_path.read_text())
    return results


if __name__ == "__main__":
    main()
