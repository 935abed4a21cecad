"""Fixtures of the benchmark-script tests (test files cannot import helpers under importlib)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def _write_metric(root: Path, task: str, variant: str, seed: int, metric: str, rows) -> None:
    path = root / task / variant / f"seed{seed}" / f"{metric}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{step},{value}\n" for step, value in rows))


@pytest.fixture
def write_metric() -> Callable[..., None]:
    """``write_metric(root, task, variant, seed, metric, rows)``: one metric CSV of ``(step,
    value)`` rows in the ``--copy-data`` layout ``<task>/<variant>/seed<k>/<metric>.csv``."""
    return _write_metric
