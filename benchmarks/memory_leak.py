"""Resident memory of a long CPU training run of ``examples/pwm_flow.py``: flat after warm-up?

Launches the training script in its own run directory under ``--out`` and every ``--interval``
seconds samples ``VmRSS`` summed over its process tree (``/proc/<pid>/status``) and the
iteration count (rows of the run's ``loss/world_model.csv``; its step column is the frame
count). Writes ``memory.csv`` and ``memory.png`` and prints a least-squares fit of RSS vs
iteration over the samples after the first ``--warmup`` fraction of the iterations and before the
last one (the final evaluation and checkpoint run once). PASS: slope < ``--max-slope`` MB per 100
iterations, growth < ``--max-growth-pct`` %, and the replay buffer (``LazyTensorStorage``, whose
``torch.empty`` pages become resident as it fills) full by the end of warm-up. Bound, fairness
and results: docs/benchmarks.md, "Memory (leak check)".

Usage:
    python benchmarks/memory_leak.py --out /tmp/memleak                 # full_flow, cartpole
    python benchmarks/memory_leak.py --out /tmp/memleak --experiment flow_wm --frames 40000
    python benchmarks/memory_leak.py --out /tmp/memleak world_model.preset=small seed=1
    python benchmarks/memory_leak.py --out /tmp/memleak --from-csv /tmp/memleak/memory.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "pwm_flow.py"
FIELDS = ("elapsed_s", "iteration", "frames", "rss_mb", "processes")
# What CSVExperiment.scalars holds per logged scalar: a list slot, a (step, value) tuple and a
# float (the step int is shared by all metrics of an iteration).
SCALAR_BYTES = 8 + sys.getsizeof((0, 0.0)) + sys.getsizeof(0.0)


@dataclass(frozen=True)
class Sample:
    """One memory sample of the training process tree."""

    elapsed_s: float
    iteration: int
    frames: int
    rss_mb: float
    processes: int


@dataclass(frozen=True)
class Summary:
    """Post-warm-up RSS statistics and the verdict."""

    warmup_iteration: int
    last_iteration: int
    samples: int
    frames_warmup: int
    rss_warmup_mb: float
    rss_end_mb: float
    rss_peak_mb: float
    fit_intercept_mb: float
    slope_mb_per_100: float
    slope_se_mb_per_100: float
    growth_mb: float
    growth_pct: float
    buffer_full: bool
    passed: bool


def read_rss_mb(pid: int) -> float:
    """``VmRSS`` of one process in MiB (0 for a zombie); FileNotFoundError once it is gone."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants, found through the parent ids in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # The command name in parentheses may contain spaces: parse after its last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_rss_mb(root: int) -> tuple[float, int]:
    """Summed ``VmRSS`` (MiB) of ``root``'s process tree and the number of processes in it."""
    total, count = 0.0, 0
    for pid in process_tree(root):
        try:
            total += read_rss_mb(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended between the listing and the read
        count += 1
    return total, count


def training_progress(run_dir: Path) -> tuple[int, int]:
    """(iterations, frames) done so far, from the world-model loss CSV of ``run_dir``."""
    files = sorted(run_dir.glob("logs/*/scalars/loss/world_model.csv"))
    if not files:
        return 0, 0
    rows = [line for line in files[0].read_text().splitlines() if line.strip()]
    if not rows:
        return 0, 0
    return len(rows), int(float(rows[-1].split(",")[0]))


def logged_scalars(run_dir: Path) -> int:
    """Rows written to all scalar CSVs of the run: the entries TorchRL's CSVLogger keeps."""
    return sum(
        sum(1 for line in path.read_text().splitlines() if line.strip())
        for path in run_dir.glob("logs/*/scalars/**/*.csv")
    )


def summarize(
    samples: list[Sample],
    *,
    warmup: float,
    max_slope: float,
    max_growth_pct: float,
    buffer_size: int | None = None,
) -> Summary:
    """Least-squares fit of RSS vs iteration after warm-up, and the PASS/FAIL verdict.

    Args:
        samples: the samples of one run, in time order.
        warmup: fraction of the final iteration count treated as warm-up.
        max_slope: bound on the fitted slope, MiB per 100 iterations.
        max_growth_pct: bound on the fitted post-warm-up growth, % of the RSS at warm-up end.
        buffer_size: replay-buffer capacity that must be filled by the end of warm-up, so that
            its legitimate growth is not fitted (None: not checked).

    Raises:
        ValueError: fewer than 3 post-warm-up samples at 2 distinct iterations.
    """
    last = max((s.iteration for s in samples), default=0)
    start = math.ceil(warmup * last)
    post = [s for s in samples if start <= s.iteration < last and s.iteration > 0]
    if len(post) < 3 or len({s.iteration for s in post}) < 2:
        raise ValueError(
            f"need >= 3 post-warm-up samples at distinct iterations, got {len(post)} "
            f"(iterations {start}..{last - 1}): run longer or sample more often"
        )
    n = len(post)
    mean_x = sum(s.iteration for s in post) / n
    mean_y = sum(s.rss_mb for s in post) / n
    sxx = sum((s.iteration - mean_x) ** 2 for s in post)
    sxy = sum((s.iteration - mean_x) * (s.rss_mb - mean_y) for s in post)
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    residuals = sum((s.rss_mb - intercept - slope * s.iteration) ** 2 for s in post)
    # Textbook standard error; optimistic, since samples of the same iteration correlate.
    slope_se = math.sqrt(residuals / max(n - 2, 1) / sxx)
    growth = slope * (last - start)
    at_warmup = intercept + slope * start
    growth_pct = 100 * growth / at_warmup
    full = buffer_size is None or post[0].frames >= buffer_size
    return Summary(
        warmup_iteration=start,
        last_iteration=last,
        samples=n,
        frames_warmup=post[0].frames,
        rss_warmup_mb=post[0].rss_mb,
        rss_end_mb=post[-1].rss_mb,
        rss_peak_mb=max(s.rss_mb for s in post),
        fit_intercept_mb=intercept,
        slope_mb_per_100=100 * slope,
        slope_se_mb_per_100=100 * slope_se,
        growth_mb=growth,
        growth_pct=growth_pct,
        buffer_full=full,
        passed=100 * slope < max_slope and growth_pct < max_growth_pct and full,
    )


def run_and_sample(cmd: list[str], run_dir: Path, csv_path: Path, interval: float) -> int:
    """Runs ``cmd`` and appends a sample to ``csv_path`` every ``interval`` s; returns its rc."""
    with open(run_dir / "train.log", "w") as log, open(csv_path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(FIELDS)
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        while child.poll() is None:
            rss, processes = tree_rss_mb(child.pid)
            iteration, frames = training_progress(run_dir)
            elapsed = time.perf_counter() - start
            writer.writerow([f"{elapsed:.1f}", iteration, frames, f"{rss:.1f}", processes])
            out.flush()  # a killed benchmark still leaves its samples
            time.sleep(interval)
    return child.returncode


def load_samples(csv_path: Path) -> list[Sample]:
    """Samples from a CSV written by :func:`run_and_sample`."""
    types = (float, int, int, float, int)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [Sample(*(t(r[k]) for t, k in zip(types, FIELDS, strict=True))) for r in rows]


def plot(samples: list[Sample], summary: Summary, path: Path, title: str) -> None:
    """RSS vs iteration (whole run, and the fitted samples zoomed) with warm-up end and fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [summary.warmup_iteration, summary.last_iteration]
    ys = [summary.fit_intercept_mb + summary.slope_mb_per_100 / 100 * x for x in xs]
    fitted = [
        s for s in samples if summary.warmup_iteration <= s.iteration < summary.last_iteration
    ]
    for ax, shown in zip(axes, (samples, fitted), strict=True):
        ax.plot([s.iteration for s in shown], [s.rss_mb for s in shown], ".", ms=3, label="RSS")
        ax.axvline(summary.warmup_iteration, color="gray", ls=":", label="end of warm-up")
        ax.plot(xs, ys, "r--", label=f"fit: {summary.slope_mb_per_100:+.2f} MB / 100 it")
        ax.set_xlabel("training iteration")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(bottom=0)  # from zero: growth in proportion to the whole footprint
    axes[0].set_ylabel("resident memory, process tree (MiB)")
    axes[0].set_title("whole run")
    axes[1].set_title("fitted samples: after warm-up, before the end (zoomed)")
    axes[1].legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(summary: Summary, args: argparse.Namespace, scalars_per_iteration: float) -> str:
    """The printed summary, one figure per line."""
    span = summary.last_iteration - summary.warmup_iteration
    raw = summary.rss_end_mb - summary.rss_warmup_mb
    logger_mb = scalars_per_iteration * span * SCALAR_BYTES / 2**20
    return "\n".join(
        [
            f"iterations: {summary.last_iteration}, warm-up: first {summary.warmup_iteration} "
            f"({args.warmup:.0%}), post-warm-up samples: {summary.samples}",
            f"RSS at end of warm-up: {summary.rss_warmup_mb:.1f} MB, at end: "
            f"{summary.rss_end_mb:.1f} MB (raw change {raw:+.1f} MB), "
            f"post-warm-up peak {summary.rss_peak_mb:.1f} MB",
            f"fit: {summary.slope_mb_per_100:+.3f} ± {summary.slope_se_mb_per_100:.3f} (s.e.) "
            f"MB / 100 iterations, growth over {span} iterations {summary.growth_mb:+.1f} MB "
            f"({summary.growth_pct:+.2f} %)",
            f"replay buffer: {args.buffer_size} transitions, frames at end of warm-up: "
            f"{summary.frames_warmup} ({'full' if summary.buffer_full else 'NOT full'})",
            f"expected from CSVLogger's in-memory scalars: {scalars_per_iteration:.1f} per "
            f"iteration x {SCALAR_BYTES} B = {logger_mb:+.2f} MB over the post-warm-up span",
            f"{'PASS' if summary.passed else 'FAIL'}: slope < {args.max_slope} MB / 100 "
            f"iterations, growth < {args.max_growth_pct} %, buffer full by end of warm-up",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for CSV, PNG and run")
    parser.add_argument("--experiment", default="full_flow", help="configs/experiment bundle")
    parser.add_argument("--env", default="cartpole", help="configs/env option")
    parser.add_argument("--frames", type=int, default=157_696, help="301 iterations")
    parser.add_argument("--buffer-size", type=int, default=16_384, help="0: config's size")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=0.2, help="warm-up fraction")
    parser.add_argument("--max-slope", type=float, default=1.0, help="MB per 100 iterations")
    parser.add_argument("--max-growth-pct", type=float, default=5.0, help="post-warm-up growth")
    parser.add_argument("--from-csv", type=Path, help="summarise an existing CSV, no run")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to pwm_flow.py")
    args = parser.parse_args(argv)
    if not 0 <= args.warmup < 1:
        parser.error(f"--warmup must be in [0, 1), got {args.warmup}")
    args.buffer_size = args.buffer_size or None
    return args


def launch(args: argparse.Namespace, run_dir: Path, csv_path: Path) -> int:
    """Runs pwm_flow.py with the benchmark's settings and the user's overrides, sampling it."""
    if run_dir.exists():
        # pwm_flow.py would resume from the old checkpoints and continue the old CSVs.
        sys.exit(f"{run_dir} exists: pick a fresh --out")
    run_dir.mkdir()
    settings = {
        "experiment": args.experiment,
        "env": args.env,
        "threads": "1",
        "logger": "csv",
        "collector.total_frames": str(args.frames),
        "hydra.run.dir": str(run_dir),
    }
    if args.buffer_size is not None:
        settings["replay_buffer.size"] = str(args.buffer_size)
    # Hydra rejects a key given twice: the user's overrides replace ours.
    for override in args.overrides:
        settings.pop(override.split("=", 1)[0].lstrip("+~"), None)
    cmd = [sys.executable, str(SCRIPT), *(f"{k}={v}" for k, v in settings.items())]
    cmd += args.overrides
    print(" ".join(cmd), flush=True)
    return run_and_sample(cmd, run_dir, csv_path, args.interval)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, run_dir = args.from_csv or args.out / "memory.csv", args.out / "run"
    if args.from_csv is None and (rc := launch(args, run_dir, csv_path)) != 0:
        print(f"training exited with {rc}: see {run_dir / 'train.log'}")
        return rc
    samples = load_samples(csv_path)
    summary = summarize(
        samples,
        warmup=args.warmup,
        max_slope=args.max_slope,
        max_growth_pct=args.max_growth_pct,
        buffer_size=args.buffer_size,
    )
    per_iteration = logged_scalars(run_dir) / summary.last_iteration
    print(report(summary, args, per_iteration))
    png = args.out / "memory.png"
    verdict = "PASS" if summary.passed else "FAIL"
    plot(samples, summary, png, f"{args.experiment} on {args.env}: {verdict}")
    print(f"CSV: {csv_path}\nPlot: {png}")
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
