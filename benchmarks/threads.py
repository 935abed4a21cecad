"""Wall time of the default training run with 1 or 2 torch threads, alone and beside a twin.

Runs ``examples/pwm_flow.py`` (its default config: flow world model, cartpole balance) for
``--frames`` frames once per thread count, then again with a second identical run started at the
same moment in another directory (two seeds at once, what a researcher does), and prints, per
case, the wall time of the first run's process and its training frames per second after the
random frames (the logged ``time/fps`` of its last iteration), so start-up and the first Warp
build do not count. Runs write to a temporary directory and go when the script ends.

Usage:
    python benchmarks/threads.py                           # threads 1 and 2, alone and beside
    python benchmarks/threads.py --frames 16384 --threads 1 2 --repeats 2
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start(run_dir: Path, threads: int, frames: int, seed: int) -> subprocess.Popen:
    """``pwm_flow.py`` on its defaults, with ``threads`` and ``frames``, logging CSV scalars."""
    args = [
        sys.executable,
        str(ROOT / "examples" / "pwm_flow.py"),
        f"threads={threads}",
        f"collector.total_frames={frames}",
        f"seed={seed}",
        "logger=csv",
        "eval.interval=0",
        f"hydra.run.dir={run_dir}",
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def last_fps(run_dir: Path) -> float:
    """The run's training frames/s at its last logged iteration (``time/fps``)."""
    (path,) = run_dir.glob("logs/*/scalars/time/fps.csv")
    with path.open() as handle:
        rows = list(csv.reader(handle))
    return float(rows[-1][1])


def measure(root: Path, threads: int, frames: int, beside: bool, tag: str) -> tuple[float, float]:
    """Wall seconds and training frames/s of one run (with a twin beside it if ``beside``)."""
    main_dir = root / f"{tag}-main"
    began = time.perf_counter()
    runs = [start(main_dir, threads, frames, seed=0)]
    if beside:
        runs.append(start(root / f"{tag}-twin", threads, frames, seed=1))
    _, err = runs[0].communicate()
    wall = time.perf_counter() - began
    for run in runs[1:]:
        run.communicate()
    if runs[0].returncode:
        raise SystemExit(f"pwm_flow.py failed (exit {runs[0].returncode}):\n{err[-2000:]}")
    return wall, last_fps(main_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12_288, help="frames per run")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1, help="runs per case")
    args = parser.parse_args()
    print(f"| threads | beside a twin | wall (s) | training frames/s | ({args.frames:,} frames)")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for beside in (False, True):
            for threads in args.threads:
                for repeat in range(args.repeats):
                    tag = f"t{threads}-{'beside' if beside else 'alone'}-{repeat}"
                    wall, fps = measure(Path(tmp), threads, args.frames, beside, tag)
                    print(f"| {threads} | {'yes' if beside else 'no'} | {wall:.0f} | {fps:.0f} |")


if __name__ == "__main__":
    main()
