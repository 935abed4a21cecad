"""Plot a run's model-exploitation diagnostics next to its real returns, in one PNG.

    python examples/diagnostics_report.py <run dir> [--output PATH]

Reads the TorchRL CSV logs of the run (``<run dir>/logs/<exp>/scalars/<namespace>/<name>.csv``,
rows ``step,value``) and draws one panel per diagnostic group (``docs/metrics.md``,
"Diagnostics") plus ``train/return`` and ``eval/return``. Metrics the run did not log are skipped
and listed; panels left empty are dropped. Writes ``<run dir>/diagnostics.png`` by default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from torchrl_flowmbpo.diagnostics.report import make_report
from torchrl_flowmbpo.trainers.console import interrupted


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the run directory (holds logs/)")
    parser.add_argument("--output", type=Path, default=None, help="PNG path")
    args = parser.parse_args(argv)
    try:
        path, missing = make_report(args.run_dir, args.output)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if missing:
        print(f"Skipped (not logged): {', '.join(missing)}")
    print(f"Diagnostics report: {path}")
    return 0


if __name__ == "__main__":
    with interrupted("diagnostics_report.py"):
        sys.exit(main())
