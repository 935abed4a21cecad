"""benchmarks/profile_update_step.py: the Python-call count it reports, and one small run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def profiler(load_script):
    return load_script(BENCHMARKS / "profile_update_step.py", "profile_update_step_bench")


def _helper() -> None:
    """A function whose calls are counted."""


def _calls_helper(n: int) -> None:
    for _ in range(n):
        _helper()


def test_python_calls_counts_each_function_call(profiler):
    # The difference cancels the fixed calls (the lambda, range, the tracer's removal).
    five = profiler.python_calls(lambda: _calls_helper(5))
    two = profiler.python_calls(lambda: _calls_helper(2))
    assert five - two == 3
    assert profiler.python_calls(lambda: None) >= 1
    assert sys.getprofile() is None  # the tracer is removed


def test_small_profile_reports_both_paths():
    command = ["profile_update_step.py", "--config", "mlp", "--size", "small", "--rows", "2"]
    result = subprocess.run(
        [sys.executable, *command],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    headers = [line for line in result.stdout.splitlines() if line.startswith("===")]
    assert [line.split(" — ")[1].split(":")[0] for line in headers] == ["ours", "plain"]
    for line in headers:
        calls = int(line.rsplit(", ", 1)[1].split(" Python")[0].replace(",", ""))
        assert calls > 10_000, line  # a whole iteration: forwards, backwards, optimiser steps
